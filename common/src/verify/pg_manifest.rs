//! Does Postgres's own `backup_manifest` (kept verbatim in the manifest) agree with walship's
//! file list? Every file Postgres listed must be in walship's manifest with the same size and,
//! when Postgres used CRC32C, the same checksum. Pure, on the two documents.

use std::collections::BTreeMap;

use crate::catalog::{BackupManifest, FileKind};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(pg: &str) -> BackupManifest {
        let file = |path: &str, size: u64, crc: u32| {
            serde_json::json!({"path": path, "kind": "file", "size": size, "mode": 384, "mtime": 0,
                "crc32c": crc, "bundle": 0, "offset": 0, "link_target": null})
        };
        serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "20261122T140300Z", "label": "x",
            "system_identifier": "1", "pg_major": 15, "pg_version_num": 150000,
            "wal_segment_size": 16777216, "start_timeline": 1, "stop_timeline": 1,
            "start_lsn": "0/2000028", "stop_lsn": "0/2000100",
            "start_time": "2026-11-22T14:03:00Z", "stop_time": "2026-11-22T14:03:01Z",
            "duration_ms": 1000, "backup_label": "", "tablespace_map": null, "tablespaces": [],
            "pg_backup_manifest": pg, "bytes_raw": 0, "bytes_stored": 0, "walship_version": "t",
            "bundles": [],
            "files": [file("PG_VERSION", 3, 0x1234_5678), file("global/pg_control", 8192, 7)],
        }))
        .unwrap()
    }

    #[test]
    fn checksums_sizes_and_missing_files_are_compared() {
        // 0x12345678 in memory order (little-endian) is 78563412.
        let good = r#"{"Files": [
            {"Path": "PG_VERSION", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "78563412"},
            {"Path": "global/pg_control", "Size": 8192, "Checksum-Algorithm": "CRC32C", "Checksum": "07000000"}]}"#;
        assert_eq!(compare(&manifest(good)), vec![]);
        let bad = r#"{"Files": [
            {"Path": "PG_VERSION", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "12345678"},
            {"Path": "global/pg_control", "Size": 8000},
            {"Path": "base/1/1259", "Size": 1}]}"#;
        let found: Vec<String> = compare(&manifest(bad))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(found, ["PG_VERSION", "global/pg_control", "base/1/1259"]);
    }
}
