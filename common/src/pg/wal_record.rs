//! One WAL record: the `XLogRecord` header, its CRC-32C, where its main data lies, and the
//! few record kinds walship acts on (transaction commit/abort with its timestamp, restore
//! points, segment switches).
//!
//! Mirrors `src/include/access/xlogrecord.h` (`XLogRecord`, block ids, `XLR_BLOCK_ID_*`,
//! `BKPBLOCK_*`, `BKPIMAGE_*`), `src/backend/access/transam/xlogreader.c`
//! (`ValidXLogRecord`, `DecodeXLogRecord`), `src/include/access/xact.h` and
//! `src/backend/access/rmgrdesc/xactdesc.c` (`ParseCommitRecord`, `ParseAbortRecord`), and
//! `src/include/access/xlog_internal.h` (`xl_restore_point`). Byte order is little-endian,
//! as for page headers.

use crate::lsn::Lsn;

/// `SizeOfXLogRecord`: the fixed record header.
pub const SIZE_OF_XLOG_RECORD: usize = 24;
/// `RM_XLOG_ID`: the resource manager of checkpoints, switches, restore points.
pub const RM_XLOG_ID: u8 = 0;
/// `RM_XACT_ID`: the transaction resource manager.
pub const RM_XACT_ID: u8 = 1;
/// `XLOG_SWITCH`: the rest of the segment is unused.
pub const XLOG_SWITCH: u8 = 0x40;
/// `XLOG_RESTORE_POINT`: `pg_create_restore_point()`.
pub const XLOG_RESTORE_POINT: u8 = 0x70;
/// `XLOG_XACT_OPMASK`: the operation bits of an `RM_XACT_ID` record's `xl_info`.
pub const XLOG_XACT_OPMASK: u8 = 0x70;
/// `XLOG_XACT_COMMIT`.
pub const XLOG_XACT_COMMIT: u8 = 0x00;
/// `XLOG_XACT_ABORT`.
pub const XLOG_XACT_ABORT: u8 = 0x20;
/// `XLOG_XACT_COMMIT_PREPARED`.
pub const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
/// `XLOG_XACT_ABORT_PREPARED`.
pub const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
/// `XLOG_XACT_HAS_INFO`: an `xl_xact_xinfo` follows the timestamp.
pub const XLOG_XACT_HAS_INFO: u8 = 0x80;

/// `XLogRecord`: the 24-byte header of every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XLogRecordHeader {
    /// `xl_tot_len`: total record length, header included.
    pub xl_tot_len: u32,
    /// `xl_xid`: the transaction that wrote it (0 for none).
    pub xl_xid: u32,
    /// `xl_prev`: the start of the previous record.
    pub xl_prev: Lsn,
    /// `xl_info`: resource-manager-specific flag bits (the high four) plus `XLR_*` bits.
    pub xl_info: u8,
    /// `xl_rmid`: the resource manager.
    pub xl_rmid: u8,
    /// `xl_crc`: CRC-32C of the record (see [`record_crc`]).
    pub xl_crc: u32,
}

impl XLogRecordHeader {
    /// Decodes the header at the start of `bytes`; `None` when fewer than 24 bytes.
    pub fn decode(bytes: &[u8]) -> Option<XLogRecordHeader> {
        let b = bytes.get(..SIZE_OF_XLOG_RECORD)?;
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Some(XLogRecordHeader {
            xl_tot_len: u32_at(0),
            xl_xid: u32_at(4),
            xl_prev: Lsn(u64::from(u32_at(8)) | (u64::from(u32_at(12)) << 32)),
            xl_info: b[16],
            xl_rmid: b[17],
            xl_crc: u32_at(20),
        })
    }
}

/// The CRC `ValidXLogRecord` expects in `xl_crc`: CRC-32C over the bytes after the header,
/// then over the header up to `xl_crc`. `record` is the whole record (`xl_tot_len` bytes).
pub fn record_crc(record: &[u8]) -> u32 {
    let body = record.get(SIZE_OF_XLOG_RECORD..).unwrap_or_default();
    crate::crc::crc32c_append(crate::crc::crc32c(body), &record[..20.min(record.len())])
}

/// A Postgres `TimestampTz`: microseconds since 2000-01-01 00:00:00 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// Seconds from the Unix epoch to the Postgres epoch (`POSTGRES_EPOCH_JDATE`).
    pub const POSTGRES_EPOCH_UNIX_SECS: i64 = 946_684_800;

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0
            .saturating_add(Self::POSTGRES_EPOCH_UNIX_SECS * 1_000_000)
    }

    /// As a UTC date and time (`None` for values outside chrono's range).
    pub fn to_utc(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_micros(self.unix_micros())
    }

    /// From a UTC date and time.
    pub fn from_utc(time: chrono::DateTime<chrono::Utc>) -> PgTimestamp {
        PgTimestamp(
            time.timestamp_micros()
                .saturating_sub(Self::POSTGRES_EPOCH_UNIX_SECS * 1_000_000),
        )
    }
}

/// What a record means, for the records walship looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A transaction commit (`XLOG_XACT_COMMIT`, or `COMMIT_PREPARED` when `prepared`).
    Commit {
        /// The committed transaction.
        xid: u32,
        /// `xact_time`, what `recovery_target_time` compares.
        time: PgTimestamp,
        /// A `COMMIT PREPARED` of a two-phase transaction.
        prepared: bool,
    },
    /// A transaction abort (`XLOG_XACT_ABORT`, or `ABORT_PREPARED` when `prepared`).
    Abort {
        /// The aborted transaction.
        xid: u32,
        /// `xact_time`.
        time: PgTimestamp,
        /// A `ROLLBACK PREPARED` of a two-phase transaction.
        prepared: bool,
    },
    /// `XLOG_RESTORE_POINT`, what `recovery_target_name` matches.
    RestorePoint {
        /// `rp_name`.
        name: String,
        /// `rp_time`.
        time: PgTimestamp,
    },
    /// `XLOG_SWITCH`: the next record starts in the next segment.
    Switch,
    /// Anything else.
    Other,
}

/// Why a record's body could not be decoded (the reader treats it as the end of valid WAL,
/// as recovery does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed WAL record: {0}")]
pub struct RecordError(pub &'static str);

/// `XLR_MAX_BLOCK_ID`.
const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;

/// `BKPIMAGE_COMPRESSED()` for a major: `BKPIMAGE_IS_COMPRESSED` 0x02 up to 14, the
/// pglz/lz4/zstd bits 0x04|0x08|0x10 from 15.
fn bkpimage_compressed_mask(major: u32) -> u8 {
    if major <= 14 {
        0x02
    } else {
        0x04 | 0x08 | 0x10
    }
}

/// A little cursor over record bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let out = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or(RecordError("field runs past the end of the record"))?;
        self.at += n;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }
}

/// The record's main data (`DecodeXLogRecord`): walks the block headers to the
/// `XLR_BLOCK_ID_DATA_*` marker; the main data is the record's last bytes.
pub fn main_data(record: &[u8], major: u32) -> Result<&[u8], RecordError> {
    let mut c = Cursor {
        bytes: record,
        at: SIZE_OF_XLOG_RECORD,
    };
    while c.at < record.len() {
        let block_id = c.u8()?;
        let len = match block_id {
            XLR_BLOCK_ID_DATA_SHORT => usize::from(c.u8()?),
            XLR_BLOCK_ID_DATA_LONG => c.u32()? as usize,
            XLR_BLOCK_ID_ORIGIN => {
                c.take(2)?;
                continue;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                c.take(4)?;
                continue;
            }
            id if id <= XLR_MAX_BLOCK_ID => {
                skip_block_header(&mut c, major)?;
                continue;
            }
            _ => return Err(RecordError("invalid block_id")),
        };
        let start = record
            .len()
            .checked_sub(len)
            .ok_or(RecordError("main data longer than the record"))?;
        return Ok(&record[start..]);
    }
    Ok(&[])
}

/// Skips one `XLogRecordBlockHeader` and what optionally follows it.
fn skip_block_header(c: &mut Cursor<'_>, major: u32) -> Result<(), RecordError> {
    let fork_flags = c.u8()?;
    c.u16()?; // data_length
    if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
        c.u16()?; // bimg_len
        c.u16()?; // hole_offset
        let bimg_info = c.u8()?;
        if bimg_info & BKPIMAGE_HAS_HOLE != 0 && bimg_info & bkpimage_compressed_mask(major) != 0 {
            c.u16()?; // hole_length
        }
    }
    if fork_flags & BKPBLOCK_SAME_REL == 0 {
        c.take(12)?; // RelFileLocator
    }
    c.u32()?; // BlockNumber
    Ok(())
}

const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
const XACT_XINFO_HAS_RELFILELOCATORS: u32 = 1 << 2;
const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;

/// The two-phase xid of a commit/abort (`ParseCommitRecord` / `ParseAbortRecord`), walking
/// the optional parts in their on-disk order.
fn twophase_xid(
    c: &mut Cursor<'_>,
    info: u8,
    is_commit: bool,
    major: u32,
) -> Result<Option<u32>, RecordError> {
    if info & XLOG_XACT_HAS_INFO == 0 {
        return Ok(None);
    }
    let xinfo = c.u32()?;
    let counted = |c: &mut Cursor<'_>, item: usize| -> Result<(), RecordError> {
        let n = c.u32()? as usize;
        c.take(n.checked_mul(item).ok_or(RecordError("count overflows"))?)
            .map(drop)
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        c.take(8)?;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        counted(c, 4)?;
    }
    if xinfo & XACT_XINFO_HAS_RELFILELOCATORS != 0 {
        counted(c, 12)?;
    }
    if major >= 15 && xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        // xl_xact_stats_item: kind, dboid, objoid (12 bytes); objid became 64-bit in 18.
        counted(c, if major >= 18 { 16 } else { 12 })?;
    }
    if is_commit && xinfo & XACT_XINFO_HAS_INVALS != 0 {
        counted(c, 16)?;
    }
    if xinfo & XACT_XINFO_HAS_TWOPHASE != 0 {
        return Ok(Some(c.u32()?));
    }
    Ok(None)
}

/// Decodes the kind of a complete, CRC-checked record written by `major`.
pub fn decode_kind(
    header: &XLogRecordHeader,
    record: &[u8],
    major: u32,
) -> Result<RecordKind, RecordError> {
    match header.xl_rmid {
        RM_XLOG_ID if header.xl_info & 0xF0 == XLOG_SWITCH => Ok(RecordKind::Switch),
        RM_XLOG_ID if header.xl_info & 0xF0 == XLOG_RESTORE_POINT => {
            let mut c = Cursor {
                bytes: main_data(record, major)?,
                at: 0,
            };
            let time = PgTimestamp(c.i64()?);
            let raw = c.take(64)?;
            let name = raw.split(|&b| b == 0).next().unwrap_or_default();
            Ok(RecordKind::RestorePoint {
                name: String::from_utf8_lossy(name).into_owned(),
                time,
            })
        }
        RM_XACT_ID => {
            let op = header.xl_info & XLOG_XACT_OPMASK;
            let (is_commit, prepared) = match op {
                XLOG_XACT_COMMIT => (true, false),
                XLOG_XACT_COMMIT_PREPARED => (true, true),
                XLOG_XACT_ABORT => (false, false),
                XLOG_XACT_ABORT_PREPARED => (false, true),
                _ => return Ok(RecordKind::Other),
            };
            let mut c = Cursor {
                bytes: main_data(record, major)?,
                at: 0,
            };
            let time = PgTimestamp(c.i64()?);
            let xid =
                twophase_xid(&mut c, header.xl_info, is_commit, major)?.unwrap_or(header.xl_xid);
            Ok(if is_commit {
                RecordKind::Commit {
                    xid,
                    time,
                    prepared,
                }
            } else {
                RecordKind::Abort {
                    xid,
                    time,
                    prepared,
                }
            })
        }
        _ => Ok(RecordKind::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rmid: u8, info: u8, xid: u32, main: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; SIZE_OF_XLOG_RECORD];
        r.push(XLR_BLOCK_ID_DATA_SHORT);
        r.push(main.len() as u8);
        r.extend_from_slice(main);
        let len = r.len() as u32;
        r[0..4].copy_from_slice(&len.to_le_bytes());
        r[4..8].copy_from_slice(&xid.to_le_bytes());
        r[16] = info;
        r[17] = rmid;
        let crc = record_crc(&r);
        r[20..24].copy_from_slice(&crc.to_le_bytes());
        r
    }

    #[test]
    fn crc_and_commit() {
        let time = PgTimestamp::from_utc("2026-11-20T14:03:00Z".parse().unwrap());
        let r = record(RM_XACT_ID, XLOG_XACT_COMMIT, 735, &time.0.to_le_bytes());
        let header = XLogRecordHeader::decode(&r).unwrap();
        assert_eq!(header.xl_crc, record_crc(&r));
        assert_eq!(
            decode_kind(&header, &r, 15),
            Ok(RecordKind::Commit {
                xid: 735,
                time,
                prepared: false
            })
        );
        assert_eq!(
            time.to_utc().unwrap().to_rfc3339(),
            "2026-11-20T14:03:00+00:00"
        );
        let mut bad = r.clone();
        bad[30] ^= 1;
        assert_ne!(record_crc(&bad), header.xl_crc);
    }

    #[test]
    fn restore_point_and_commit_prepared() {
        let mut main = 7i64.to_le_bytes().to_vec();
        let mut name = [0u8; 64];
        name[..6].copy_from_slice(b"before");
        main.extend_from_slice(&name);
        let r = record(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, &main);
        let header = XLogRecordHeader::decode(&r).unwrap();
        assert_eq!(
            decode_kind(&header, &r, 16),
            Ok(RecordKind::RestorePoint {
                name: "before".into(),
                time: PgTimestamp(7)
            })
        );

        // COMMIT PREPARED with dbinfo and two-phase info: the xid comes from xl_xact_twophase.
        let mut main = 9i64.to_le_bytes().to_vec();
        main.extend_from_slice(&(XACT_XINFO_HAS_DBINFO | XACT_XINFO_HAS_TWOPHASE).to_le_bytes());
        main.extend_from_slice(&[0; 8]);
        main.extend_from_slice(&4242u32.to_le_bytes());
        let r = record(
            RM_XACT_ID,
            XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO,
            0,
            &main,
        );
        let header = XLogRecordHeader::decode(&r).unwrap();
        assert_eq!(
            decode_kind(&header, &r, 15),
            Ok(RecordKind::Commit {
                xid: 4242,
                time: PgTimestamp(9),
                prepared: true
            })
        );
        let short = record(RM_XACT_ID, XLOG_XACT_COMMIT, 1, &[0; 4]);
        let header = XLogRecordHeader::decode(&short).unwrap();
        assert_eq!(
            decode_kind(&header, &short, 15),
            Err(RecordError("field runs past the end of the record"))
        );
    }
}
