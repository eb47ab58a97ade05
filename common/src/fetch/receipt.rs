//! The receipt of a prefetch spool entry (`<name>.ok`): the size and crc32c of the bytes the
//! worker decoded and checked page by page, bound to the version of the file it wrote them
//! to.
//!
//! The version (device, inode, modification and change times, as `stat` gives them after
//! the worker's rename) is what lets a `fetch` call deliver an entry without reading it
//! whole: the worker flushed the bytes before it wrote the receipt, only the worker writes
//! the spool (it holds the lock), and any later change to the file (a write, a truncation,
//! a replacement, a `chmod`) gives it another change time or inode. A call that finds the
//! file at the recorded version reads only its first page (checked against the name and
//! cluster by the caller); any other version, or a receipt without one (walship before
//! 0.1's block-by-block worker), is read whole and its crc32c compared, as before.
//! Reading every entry whole cost replay 3-5 ms per segment on the 2-core bench machine
//! (BENCHMARKS.md, "Replay through fetch").

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// What the worker checked: a segment's size and crc32c, and the file version holding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub size: u64,
    pub crc32c: u32,
    /// `None` in receipts written before versions were recorded.
    pub version: Option<FileVersion>,
}

/// The identity and change times of one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileVersion {
    /// The version `meta` describes.
    pub fn of(meta: &Metadata) -> FileVersion {
        FileVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl Receipt {
    /// The receipt's one line: `<size> <crc32c hex>`, then, with a version,
    /// ` <dev> <ino> <mtime s> <mtime ns> <ctime s> <ctime ns>`.
    pub fn encode(&self) -> String {
        let mut line = format!("{} {:08x}", self.size, self.crc32c);
        if let Some(v) = self.version {
            line.push_str(&format!(
                " {} {} {} {} {} {}",
                v.dev, v.ino, v.mtime.0, v.mtime.1, v.ctime.0, v.ctime.1
            ));
        }
        line.push('\n');
        line
    }

    /// Reads a receipt [`Receipt::encode`] wrote (with or without a version); `None` for
    /// anything else.
    pub fn parse(text: &str) -> Option<Receipt> {
        let mut words = text.trim().split(' ');
        let size = words.next()?.parse().ok()?;
        let crc32c = u32::from_str_radix(words.next()?, 16).ok()?;
        let rest: Vec<&str> = words.collect();
        let version = match rest.as_slice() {
            [] => None,
            [dev, ino, ms, mns, cs, cns] => Some(FileVersion {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
                mtime: (ms.parse().ok()?, mns.parse().ok()?),
                ctime: (cs.parse().ok()?, cns.parse().ok()?),
            }),
            _ => return None,
        };
        Some(Receipt {
            size,
            crc32c,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_with_and_without_a_version() {
        let meta = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        for version in [None, Some(FileVersion::of(&meta))] {
            let receipt = Receipt {
                size: 16 << 20,
                crc32c: 0x0012_abcd,
                version,
            };
            assert_eq!(Receipt::parse(&receipt.encode()), Some(receipt));
        }
        assert_eq!(
            Receipt::parse("16777216 72e544a2\n").map(|r| (r.size, r.crc32c, r.version)),
            Some((16 << 20, 0x72e5_44a2, None))
        );
        for junk in [
            "",
            "1",
            "x 0",
            "1 zz",
            "1 0 2 3",
            "1 0 1 2 3 4 5 6 7",
            "1 0 a b c d e f",
        ] {
            assert_eq!(Receipt::parse(junk), None, "{junk:?}");
        }
    }
}
