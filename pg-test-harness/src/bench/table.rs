//! [`BenchTable`]: walship's figure next to a peer tool's figure on the same work, and their ratio.

use std::fmt::Write;

/// One measured quantity for one case.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// What was run, e.g. `push 64 segments`.
    pub case: String,
    /// What was measured, with its unit, e.g. `wall s` or `peak RSS MiB`.
    pub metric: String,
    /// walship's figure.
    pub walship: f64,
    /// The peer tool's figure on the same work; None when the peer is not installed.
    pub peer: Option<f64>,
}

impl BenchRow {
    /// walship / peer; None without a peer figure or when the peer's figure is zero.
    pub fn ratio(&self) -> Option<f64> {
        self.peer.filter(|p| *p != 0.0).map(|p| self.walship / p)
    }
}

/// A table of benchmark results printed as aligned columns:
/// `case | metric | walship | <peer> | ratio` (ratio = walship / peer; for times and memory,
/// below 1 means walship used less).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchTable {
    title: String,
    peer_name: String,
    rows: Vec<BenchRow>,
}

impl BenchTable {
    /// An empty table; `peer_name` heads the peer column (e.g. `pgbackrest`).
    pub fn new(title: &str, peer_name: &str) -> Self {
        BenchTable {
            title: title.to_owned(),
            peer_name: peer_name.to_owned(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, case: &str, metric: &str, walship: f64, peer: Option<f64>) {
        self.rows.push(BenchRow {
            case: case.to_owned(),
            metric: metric.to_owned(),
            walship,
            peer,
        });
    }

    /// The rows so far.
    pub fn rows(&self) -> &[BenchRow] {
        &self.rows
    }

    /// The table as text, one line per row after a title and a header.
    pub fn render(&self) -> String {
        let mut cells = vec![[
            "case".to_owned(),
            "metric".to_owned(),
            "walship".to_owned(),
            self.peer_name.clone(),
            "ratio".to_owned(),
        ]];
        for r in &self.rows {
            cells.push([
                r.case.clone(),
                r.metric.clone(),
                format_value(r.walship),
                r.peer.map_or_else(|| "-".to_owned(), format_value),
                r.ratio()
                    .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x")),
            ]);
        }
        let mut widths = [0usize; 5];
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!("== {} ==\n", self.title);
        for row in &cells {
            let line = format!(
                "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    /// Prints [`render`](Self::render) to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// The verdict on an aim: "met" or "NOT met".
pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// A figure with about three significant digits.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ratio_and_missing_peer() {
        let mut t = BenchTable::new("archive", "pgbackrest");
        t.row("push 16 segments", "wall s", 1.5, Some(3.0));
        t.row("push 16 segments", "peak RSS MiB", 12.26, None);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "== archive ==");
        assert!(lines[1].starts_with("case") && lines[1].contains("pgbackrest"));
        assert!(lines[2].ends_with("0.50x"), "{text}");
        assert!(
            lines[3].contains("12.3") && lines[3].ends_with('-'),
            "{text}"
        );
        assert_eq!(t.rows()[0].ratio(), Some(0.5));
    }

    #[test]
    fn formats_three_significant_digits() {
        assert_eq!(format_value(1234.4), "1234");
        assert_eq!(format_value(12.34), "12.3");
        assert_eq!(format_value(1.234), "1.23");
        assert_eq!(format_value(0.01234), "0.012");
    }
}
