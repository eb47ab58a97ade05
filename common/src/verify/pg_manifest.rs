//! Does Postgres's own `backup_manifest` (kept verbatim in the manifest) agree with walship's
//! file list? Every file Postgres listed must be in walship's manifest with the same size and,
//! when Postgres used CRC32C, the same checksum. Pure, on the two documents.

use std::collections::BTreeMap;

use crate::catalog::{BackupManifest, FileKind};

/// Files Postgres lists that walship keeps apart from the file list (written verbatim from
/// the manifest's own fields at restore).
const KEPT_APART: &[&str] = &["backup_label", "tablespace_map"];

/// The disagreements, as `(path, what)`; an unreadable `backup_manifest` is one entry with an
/// empty path.
pub fn compare(manifest: &BackupManifest) -> Vec<(String, String)> {
    let Some(text) = &manifest.pg_backup_manifest else {
        return Vec::new();
    };
    let doc: serde_json::Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => return vec![(String::new(), format!("backup_manifest is not JSON: {e}"))],
    };
    let Some(files) = doc.get("Files").and_then(|f| f.as_array()) else {
        return vec![(String::new(), "backup_manifest has no Files array".into())];
    };
    let ours: BTreeMap<&str, _> = manifest
        .files
        .iter()
        .filter(|f| f.kind == FileKind::File)
        .map(|f| (f.path.as_str(), f))
        .collect();
    let mut out = Vec::new();
    for file in files {
        // Paths that are not UTF-8 come as Encoded-Path (hex); compare only the plain ones.
        let Some(path) = file.get("Path").and_then(|p| p.as_str()) else {
            continue;
        };
        if KEPT_APART.contains(&path) {
            continue;
        }
        let Some(entry) = ours.get(path) else {
            out.push((
                path.to_string(),
                "listed by Postgres but not in the backup".into(),
            ));
            continue;
        };
        let size = file.get("Size").and_then(|s| s.as_u64());
        if size != Some(entry.size) {
            out.push((
                path.to_string(),
                format!(
                    "Postgres says {size:?} bytes, the backup holds {}",
                    entry.size
                ),
            ));
            continue;
        }
        let algorithm = file.get("Checksum-Algorithm").and_then(|a| a.as_str());
        let checksum = file.get("Checksum").and_then(|c| c.as_str());
        if let (Some("CRC32C"), Some(theirs), Some(crc)) = (algorithm, checksum, entry.crc32c) {
            // pg_checksum_final copies the uint32 in memory order: little-endian hex.
            let ours_hex: String = crc
                .to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if !theirs.eq_ignore_ascii_case(&ours_hex) {
                out.push((
                    path.to_string(),
                    format!("Postgres's CRC32C is {theirs}, the backup's is {ours_hex}"),
                ));
            }
        }
    }
    out
}
