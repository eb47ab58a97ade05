//! How far a copy's target is behind its source: the newest WAL each side holds, compared
//! in bytes of WAL and in seconds (when the source stored its newest WAL versus when it
//! stored the newest WAL the target has).

use crate::pg::{ArchiveFileName, WalSegSize};
use crate::storage::ObjectMeta;

/// The copy lag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyLag {
    /// WAL bytes between the end of the newest segment at the source and at the target
    /// (0 when the target has it; the whole source range when the target has none).
    pub bytes: u64,
    /// Seconds between the source storing its newest segment and the source storing the
    /// newest segment the target has; `None` when the target has no segment the source
    /// lists (or the storage gives no times).
    pub seconds: Option<u64>,
}

/// The newest complete segment in a WAL listing: its end position and its listing entry.
fn newest(seg_size: WalSegSize, wal: &[ObjectMeta]) -> Option<(u64, &ObjectMeta)> {
    wal.iter()
        .filter_map(|m| {
            let name = m.key.as_str().rsplit('/').next()?;
            match ArchiveFileName::parse(name, seg_size).ok()? {
                ArchiveFileName::Segment(w) => Some((w.end_lsn().0, m)),
                _ => None,
            }
        })
        .max_by_key(|(end, m)| (*end, m.key.clone()))
}

/// The lag of `target_wal` behind `source_wal` (both listings of `wal/`).
pub(crate) fn lag(
    seg_size: WalSegSize,
    source_wal: &[ObjectMeta],
    target_wal: &[ObjectMeta],
) -> CopyLag {
    let Some((source_end, source_meta)) = newest(seg_size, source_wal) else {
        return CopyLag::default();
    };
    let Some((target_end, target_meta)) = newest(seg_size, target_wal) else {
        let oldest = source_wal
            .iter()
            .filter_map(|m| {
                let name = m.key.as_str().rsplit('/').next()?;
                ArchiveFileName::parse(name, seg_size)
                    .ok()?
                    .segment()
                    .map(|w| w.start_lsn().0)
            })
            .min()
            .unwrap_or(source_end);
        return CopyLag {
            bytes: source_end - oldest,
            seconds: None,
        };
    };
    let at_source = |key| {
        source_wal
            .iter()
            .find(|m| &m.key == key)
            .and_then(|m| m.last_modified)
    };
    let seconds = match (source_meta.last_modified, at_source(&target_meta.key)) {
        (Some(newest), Some(theirs)) => {
            Some(newest.duration_since(theirs).unwrap_or_default().as_secs())
        }
        _ => None,
    };
    CopyLag {
        bytes: source_end.saturating_sub(target_end),
        seconds: if source_end <= target_end {
            Some(0)
        } else {
            seconds
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ObjectKey;
    use std::time::{Duration, SystemTime};

    fn seg(n: u32, at: u64) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::new(format!("wal/0000000100000000/0000000100000000{n:08X}")).unwrap(),
            size: 1,
            crc32c: None,
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(at)),
        }
    }

    #[test]
    fn lag_in_bytes_and_seconds() {
        let size = WalSegSize::new(16 << 20).unwrap();
        let source = vec![seg(1, 100), seg(2, 160), seg(3, 400)];
        let target = vec![seg(1, 900)];
        assert_eq!(
            lag(size, &source, &target),
            CopyLag {
                bytes: 2 * (16 << 20),
                seconds: Some(300)
            }
        );
        assert_eq!(
            lag(size, &source, &source),
            CopyLag {
                bytes: 0,
                seconds: Some(0)
            }
        );
        assert_eq!(
            lag(size, &source, &[]),
            CopyLag {
                bytes: 3 * (16 << 20),
                seconds: None
            }
        );
    }
}
