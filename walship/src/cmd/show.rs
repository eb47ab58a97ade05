//! Formatting shared by `list`, `info`, `backup` and `restore`: sizes (the one byte
//! formatter), durations, and the summary of a manifest that `list --json` prints.

use walship_common::catalog::BackupManifest;

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One progress line: `1.2 GiB of ~2.9 GiB at 310.5 MiB/s, ETA 5s`; the total and the ETA
/// only when `total` (an estimate; 0: unknown) is above what is done.
pub fn progress_line(done: u64, total: u64, elapsed: std::time::Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let mut line = size(done);
    if total > done {
        line.push_str(&format!(" of ~{}", size(total)));
    }
    line.push_str(&format!(" at {}/s", size(rate as u64)));
    if total > done && rate > 0.0 {
        let left = std::time::Duration::from_secs(((total - done) as f64 / rate) as u64);
        line.push_str(&format!(", ETA {}", humantime::format_duration(left)));
    }
    line
}

/// `1m 5s`, `850ms`.
pub fn duration_ms(ms: u64) -> String {
    let rounded = if ms >= 1000 { ms / 1000 * 1000 } else { ms };
    humantime::format_duration(std::time::Duration::from_millis(rounded)).to_string()
}

/// A manifest without its per-file and per-bundle lists and Postgres's own manifest (which
/// `info --json` shows), plus their counts: one line of `list --json`.
pub fn summary_json(m: &BackupManifest) -> serde_json::Value {
    let mut value = serde_json::to_value(m).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.remove("files");
        obj.remove("bundles");
        obj.remove("pg_backup_manifest");
        obj.insert("file_count".into(), m.files.len().into());
        obj.insert("bundle_count".into(), m.bundles.len().into());
    }
    value
}

/// The table row of `list` and the header of `info`.
pub const TABLE_HEADER: [&str; 9] = [
    "ID",
    "START (UTC)",
    "STOP (UTC)",
    "LSN RANGE",
    "TLI",
    "RAW",
    "STORED",
    "DURATION",
    "LABEL",
];

/// One table row.
pub fn table_row(m: &BackupManifest) -> [String; 9] {
    let tli = if m.start_timeline == m.stop_timeline {
        m.start_timeline.to_string()
    } else {
        format!("{}-{}", m.start_timeline, m.stop_timeline)
    };
    [
        m.id.to_string(),
        m.start_time.format("%Y-%m-%d %H:%M:%S").to_string(),
        m.stop_time.format("%Y-%m-%d %H:%M:%S").to_string(),
        format!("{}-{}", m.start_lsn, m.stop_lsn),
        tli,
        size(m.bytes_raw),
        size(m.bytes_stored),
        duration_ms(m.duration_ms),
        match m.parent {
            // The chain, where the operator reads the backup's name.
            Some(parent) => format!(
                "{} [incremental of {parent}, depth {}]",
                m.label, m.chain_depth
            ),
            None => m.label.clone(),
        },
    ]
}

/// Prints rows as a table with aligned columns.
pub fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn progress_lines_say_total_and_eta_only_when_known() {
        let secs = std::time::Duration::from_secs;
        assert_eq!(
            progress_line(1 << 30, 3 << 30, secs(2)),
            "1.0 GiB of ~3.0 GiB at 512.0 MiB/s, ETA 4s"
        );
        assert_eq!(
            progress_line(10 << 20, 0, secs(1)),
            "10.0 MiB at 10.0 MiB/s"
        );
        assert_eq!(
            progress_line(4 << 20, 2 << 20, secs(1)),
            "4.0 MiB at 4.0 MiB/s"
        );
    }
}
