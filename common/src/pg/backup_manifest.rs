//! Rewriting PostgreSQL's `backup_manifest` (backup_manifest.c writes it; pg_verifybackup's
//! parse_manifest.c reads it) for a directory rebuilt from an incremental chain, as
//! pg_combinebackup does: each `INCREMENTAL.<name>` entry becomes `<name>` with the
//! reconstructed file's size and CRC-32C, `backup_label` gets the label written, and the
//! `Manifest-Checksum` (SHA-256 of every byte up to and including the newline before its
//! line) is computed again.
//!
//! The server writes one file entry per line (`{ "Path": ..., "Size": ..., ... }`, a comma
//! ending all but the last); only such lines are touched, everything else is kept byte for
//! byte.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// A file's new entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Its path in the rebuilt directory.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// CRC-32C of its bytes.
    pub crc32c: u32,
}

/// Why a manifest cannot be rewritten.
#[derive(Debug, thiserror::Error)]
#[error("backup_manifest cannot be rewritten: {0}")]
pub struct RewriteError(String);

/// The checksum text Postgres writes for a CRC-32C: the final value's bytes in memory order.
pub fn crc32c_hex(crc: u32) -> String {
    crc.to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites `text`: the entry of each key of `changes` (a path in the manifest) becomes its
/// [`NewEntry`]. Every key must be found exactly once.
pub fn rewrite(text: &str, changes: &BTreeMap<String, NewEntry>) -> Result<String, RewriteError> {
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .ok_or_else(|| RewriteError("fewer than two lines".into()))?;
    let (body, last) = text.split_at(body_end + 1);
    if !last.trim_start().starts_with("\"Manifest-Checksum\"") {
        return Err(RewriteError(format!(
            "the last line is not the Manifest-Checksum: {last:?}"
        )));
    }
    let mut done = 0usize;
    let mut out = String::with_capacity(text.len());
    for line in body.split_inclusive('\n') {
        let content = line.trim_end_matches('\n');
        let (entry, comma) = match content.strip_suffix(',') {
            Some(e) => (e, ","),
            None => (content, ""),
        };
        if !entry.starts_with("{ \"Path\": ") {
            out.push_str(line);
            continue;
        }
        let parsed: serde_json::Value = serde_json::from_str(entry)
            .map_err(|e| RewriteError(format!("file entry {entry:?}: {e}")))?;
        let Some(path) = parsed.get("Path").and_then(|p| p.as_str()) else {
            out.push_str(line);
            continue;
        };
        let Some(new) = changes.get(path) else {
            out.push_str(line);
            continue;
        };
        done += 1;
        let modified = parsed
            .get("Last-Modified")
            .cloned()
            .unwrap_or(serde_json::Value::String(String::new()));
        out.push_str(&format!(
            "{{ \"Path\": {}, \"Size\": {}, \"Last-Modified\": {}, \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{}\" }}{comma}\n",
            serde_json::Value::String(new.path.clone()),
            new.size,
            modified,
            crc32c_hex(new.crc32c)
        ));
    }
    if done != changes.len() {
        let missing: Vec<&String> = changes.keys().take(3).collect();
        return Err(RewriteError(format!(
            "{} of {} entries found (looking for {missing:?}, ...)",
            done,
            changes.len()
        )));
    }
    let digest = Sha256::digest(out.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    out.push_str(&format!("\"Manifest-Checksum\": \"{hex}\"}}\n"));
    Ok(out)
}

/// True when `text`'s Manifest-Checksum matches its content (as pg_verifybackup checks it).
pub fn checksum_matches(text: &str) -> bool {
    let Some(end) = text.trim_end_matches('\n').rfind('\n') else {
        return false;
    };
    let (body, last) = text.split_at(end + 1);
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    last.contains(&format!("\"Manifest-Checksum\": \"{hex}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let body = "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": 1,\n\"Files\": [\n\
{ \"Path\": \"backup_label\", \"Size\": 3, \"Last-Modified\": \"2026-01-01 00:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"00000000\" },\n\
{ \"Path\": \"base/5/INCREMENTAL.16384\", \"Size\": 12, \"Last-Modified\": \"2026-01-01 00:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"11111111\" }\n\
],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n";
        let hex: String = Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{body}\"Manifest-Checksum\": \"{hex}\"}}\n")
    }

    #[test]
    fn rewrites_entries_and_the_checksum() {
        let text = sample();
        assert!(checksum_matches(&text));
        let changes = BTreeMap::from([(
            "base/5/INCREMENTAL.16384".to_string(),
            NewEntry {
                path: "base/5/16384".into(),
                size: 16384,
                crc32c: 0x0102_0304,
            },
        )]);
        let out = rewrite(&text, &changes).unwrap();
        assert!(checksum_matches(&out), "{out}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let files = doc["Files"].as_array().unwrap();
        assert_eq!(files[1]["Path"], "base/5/16384");
        assert_eq!(files[1]["Size"], 16384);
        assert_eq!(files[1]["Checksum"], "04030201");
        assert_eq!(files[0]["Checksum"], "00000000", "others untouched");
        assert!(!out.contains("INCREMENTAL"));
    }

    #[test]
    fn a_change_not_found_is_an_error() {
        let changes = BTreeMap::from([(
            "base/5/INCREMENTAL.99".to_string(),
            NewEntry {
                path: "base/5/99".into(),
                size: 0,
                crc32c: 0,
            },
        )]);
        assert!(rewrite(&sample(), &changes).is_err());
    }
}
