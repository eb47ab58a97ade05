//! WAL segment arithmetic: the segment size (`wal_segment_size`), segment numbers
//! (`XLogSegNo`), and the conversions between LSNs and (segment, offset).
//!
//! Mirrors the macros of `src/include/access/xlog_internal.h` (`XLByteToSeg`,
//! `XLByteToPrevSeg`, `XLogSegmentOffset`, `XLogSegNoOffsetToRecPtr`,
//! `XLogSegmentsPerXLogId`, `IsValidWalSegSize`). The segment size is chosen at `initdb`
//! time, so every function here takes it as a parameter: nothing assumes 16 MiB.

use std::fmt;

use crate::lsn::Lsn;

/// The size of one WAL segment file, `wal_segment_size`: a power of two from 1 MiB to
/// 1 GiB (`IsValidWalSegSize` in `src/include/access/xlog_internal.h`).
///
/// The only way to get one is [`WalSegSize::new`] (or deserialising, which validates), so a
/// `WalSegSize` in hand is always valid. Serialises as the number of bytes.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct WalSegSize(u32);

/// Why a number is not a valid WAL segment size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid WAL segment size {bytes} bytes: must be a power of two from 1 MiB (1048576) to 1 GiB (1073741824)"
)]
pub struct WalSegSizeError {
    /// The rejected size, in bytes.
    pub bytes: u64,
}

impl WalSegSize {
    /// `WalSegMinSize`: 1 MiB.
    pub const MIN_BYTES: u32 = 1 << 20;
    /// `WalSegMaxSize`: 1 GiB.
    pub const MAX_BYTES: u32 = 1 << 30;
    /// `DEFAULT_XLOG_SEG_SIZE`: 16 MiB, what `initdb` picks without `--wal-segsize`.
    pub const DEFAULT: WalSegSize = WalSegSize(16 << 20);

    /// Validates a size in bytes (`IsValidWalSegSize`).
    pub fn new(bytes: u64) -> Result<WalSegSize, WalSegSizeError> {
        let valid = bytes.is_power_of_two()
            && bytes >= u64::from(Self::MIN_BYTES)
            && bytes <= u64::from(Self::MAX_BYTES);
        match u32::try_from(bytes) {
            Ok(b) if valid => Ok(WalSegSize(b)),
            _ => Err(WalSegSizeError { bytes }),
        }
    }

    /// Validates a size given in MiB, as `initdb --wal-segsize` takes it.
    pub fn from_mib(mib: u64) -> Result<WalSegSize, WalSegSizeError> {
        WalSegSize::new(mib.saturating_mul(1 << 20))
    }

    /// Every valid segment size, smallest first (1, 2, 4 ... 1024 MiB).
    pub fn all() -> impl Iterator<Item = WalSegSize> {
        (20..=30).map(|shift| WalSegSize(1 << shift))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u32 {
        self.0
    }

    /// The size in bytes, widened for LSN arithmetic.
    pub fn as_u64(self) -> u64 {
        u64::from(self.0)
    }

    /// `XLogSegmentsPerXLogId`: how many segments share one value of the middle eight hex
    /// digits of a WAL file name (`0x100000000 / wal_segment_size`).
    pub fn segs_per_xlogid(self) -> u64 {
        0x1_0000_0000 / self.as_u64()
    }

    /// The highest segment number whose start LSN fits in 64 bits.
    pub fn max_segno(self) -> SegNo {
        SegNo(u64::MAX / self.as_u64())
    }
}

impl fmt::Display for WalSegSize {
    /// Prints as Postgres's `SHOW wal_segment_size` does: `16MB`, `1GB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Self::MAX_BYTES {
            write!(f, "1GB")
        } else {
            write!(f, "{}MB", self.0 >> 20)
        }
    }
}

impl fmt::Debug for WalSegSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalSegSize({self})")
    }
}

impl TryFrom<u64> for WalSegSize {
    type Error = WalSegSizeError;
    fn try_from(bytes: u64) -> Result<Self, Self::Error> {
        WalSegSize::new(bytes)
    }
}

impl From<WalSegSize> for u64 {
    fn from(size: WalSegSize) -> u64 {
        size.as_u64()
    }
}

/// A WAL segment number (`XLogSegNo` in `src/include/access/xlogdefs.h`): the segment's start
/// LSN divided by the segment size. The same number names a different LSN range under a
/// different segment size, so it means nothing without one.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct SegNo(pub u64);

impl SegNo {
    /// `XLByteToSeg`: the segment that holds the byte at `lsn`.
    pub fn containing(lsn: Lsn, size: WalSegSize) -> SegNo {
        SegNo(lsn.0 / size.as_u64())
    }

    /// `XLByteToPrevSeg`: the segment that holds the byte just before `end`, i.e. the last
    /// segment needed for WAL that ends (exclusively) at `end`. For `end` = 0/0 this is
    /// segment 0.
    pub fn containing_end(end: Lsn, size: WalSegSize) -> SegNo {
        SegNo(end.0.saturating_sub(1) / size.as_u64())
    }

    /// `XLogSegNoOffsetToRecPtr(segno, offset)`: the LSN at `offset` bytes into this segment.
    /// Saturates at `u64::MAX` for a segment number beyond [`WalSegSize::max_segno`], which
    /// no valid LSN or file name produces.
    pub fn lsn_at(self, offset: u32, size: WalSegSize) -> Lsn {
        Lsn(self
            .0
            .saturating_mul(size.as_u64())
            .saturating_add(u64::from(offset)))
    }

    /// The LSN of this segment's first byte.
    pub fn start_lsn(self, size: WalSegSize) -> Lsn {
        self.lsn_at(0, size)
    }

    /// The LSN just past this segment's last byte (the next segment's start): the exclusive end.
    pub fn end_lsn(self, size: WalSegSize) -> Lsn {
        Lsn(self.0.saturating_add(1).saturating_mul(size.as_u64()))
    }

    /// The next segment, or `None` past [`WalSegSize::max_segno`].
    pub fn next(self, size: WalSegSize) -> Option<SegNo> {
        let next = self.0.checked_add(1)?;
        (next <= size.max_segno().0).then_some(SegNo(next))
    }

    /// The previous segment, or `None` for segment 0.
    pub fn prev(self) -> Option<SegNo> {
        self.0.checked_sub(1).map(SegNo)
    }

    /// The (`log`, `seg`) pair that `XLogFileName` prints as the middle and last eight hex
    /// digits: `segno / XLogSegmentsPerXLogId` and `segno % XLogSegmentsPerXLogId`.
    pub fn xlogid_parts(self, size: WalSegSize) -> (u64, u64) {
        let per = size.segs_per_xlogid();
        (self.0 / per, self.0 % per)
    }

    /// The segments holding the bytes `[start, end)`, first to last; empty when
    /// `end <= start`.
    pub fn covering(start: Lsn, end: Lsn, size: WalSegSize) -> SegRange {
        if end <= start {
            let first = SegNo::containing(start, size);
            return SegRange {
                next: first,
                end: first,
            };
        }
        SegRange {
            next: SegNo::containing(start, size),
            end: SegNo(SegNo::containing_end(end, size).0 + 1),
        }
    }
}

impl fmt::Display for SegNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A half-open run of segment numbers, iterated in order; see [`SegNo::covering`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegRange {
    next: SegNo,
    end: SegNo,
}

impl SegRange {
    /// The first segment not yet yielded.
    pub fn start(&self) -> SegNo {
        self.next
    }

    /// The first segment after the range.
    pub fn end(&self) -> SegNo {
        self.end
    }
}

impl Iterator for SegRange {
    type Item = SegNo;

    fn next(&mut self) -> Option<SegNo> {
        if self.next >= self.end {
            return None;
        }
        let current = self.next;
        self.next = SegNo(current.0 + 1);
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end.0.saturating_sub(self.next.0)).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for SegRange {}

impl Lsn {
    /// `XLByteToSeg`: the segment that holds the byte at this LSN.
    pub fn segno(self, size: WalSegSize) -> SegNo {
        SegNo::containing(self, size)
    }

    /// `XLogSegmentOffset`: how far into its segment this LSN is.
    pub fn segment_offset(self, size: WalSegSize) -> u32 {
        // The remainder is below the segment size, which is a u32.
        (self.0 % size.as_u64()) as u32
    }

    /// True when this LSN is the first byte of a segment.
    pub fn is_segment_start(self, size: WalSegSize) -> bool {
        self.segment_offset(size) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_validate() {
        assert_eq!(WalSegSize::all().count(), 11);
        for size in WalSegSize::all() {
            assert_eq!(WalSegSize::new(size.as_u64()), Ok(size));
        }
        for bad in [
            0u64,
            1,
            512 * 1024,
            (1 << 20) + 1,
            3 << 20,
            2 << 30,
            u64::MAX,
            1 << 40,
        ] {
            let err = WalSegSize::new(bad).unwrap_err();
            assert_eq!(err.bytes, bad);
            assert!(err.to_string().contains(&bad.to_string()), "{err}");
        }
        assert_eq!(WalSegSize::from_mib(64).unwrap().bytes(), 64 << 20);
        assert!(WalSegSize::from_mib(3).is_err());
        assert!(WalSegSize::from_mib(u64::MAX).is_err());
        assert_eq!(WalSegSize::DEFAULT.to_string(), "16MB");
        assert_eq!(WalSegSize::new(1 << 30).unwrap().to_string(), "1GB");
    }

    #[test]
    fn serde_validates() {
        let size: WalSegSize = serde_json::from_str("16777216").unwrap();
        assert_eq!(size, WalSegSize::DEFAULT);
        assert_eq!(serde_json::to_string(&size).unwrap(), "16777216");
        assert!(serde_json::from_str::<WalSegSize>("16777217").is_err());
    }

    #[test]
    fn segs_per_xlogid_per_size() {
        let mib = |m| WalSegSize::from_mib(m).unwrap();
        assert_eq!(mib(1).segs_per_xlogid(), 0x1000);
        assert_eq!(mib(16).segs_per_xlogid(), 0x100);
        assert_eq!(mib(1024).segs_per_xlogid(), 4);
    }

    #[test]
    fn lsn_segment_conversions() {
        let size = WalSegSize::DEFAULT;
        let lsn = Lsn(0x1_0300_0028);
        assert_eq!(lsn.segno(size), SegNo(0x103));
        assert_eq!(lsn.segment_offset(size), 0x28);
        assert_eq!(SegNo(0x103).start_lsn(size), Lsn(0x1_0300_0000));
        assert_eq!(SegNo(0x103).end_lsn(size), Lsn(0x1_0400_0000));
        assert_eq!(SegNo(0x103).lsn_at(0x28, size), lsn);
        assert_eq!(SegNo(0x103).xlogid_parts(size), (1, 3));
        assert!(Lsn(0x1_0400_0000).is_segment_start(size));
        assert_eq!(
            SegNo::containing_end(Lsn(0x1_0400_0000), size),
            SegNo(0x103)
        );
        assert_eq!(SegNo::containing_end(Lsn(0), size), SegNo(0));
    }

    #[test]
    fn next_prev_and_limits() {
        for size in WalSegSize::all() {
            let max = size.max_segno();
            assert_eq!(max.end_lsn(size), Lsn(u64::MAX), "{size}");
            assert_eq!(max.next(size), None);
            assert_eq!(max.prev().unwrap().next(size), Some(max));
            assert_eq!(Lsn(u64::MAX).segno(size), max);
        }
        assert_eq!(SegNo(0).prev(), None);
    }

    #[test]
    fn covering_ranges() {
        let size = WalSegSize::DEFAULT;
        let seg = |n| SegNo(n);
        let range = |a, b| SegNo::covering(Lsn(a), Lsn(b), size).collect::<Vec<_>>();
        assert_eq!(range(0x100_0000, 0x100_0000), vec![]);
        assert_eq!(range(0x100_0000, 0x100_0001), vec![seg(1)]);
        assert_eq!(range(0x100_0000, 0x200_0000), vec![seg(1)]);
        assert_eq!(range(0x1FF_FFFF, 0x200_0001), vec![seg(1), seg(2)]);
        assert_eq!(range(0x300_0000, 0x100_0000), vec![]);
        let all = SegNo::covering(Lsn(0), Lsn(u64::MAX), WalSegSize::new(1 << 30).unwrap());
        assert_eq!(all.end(), SegNo(u64::MAX / (1 << 30) + 1));
        assert_eq!(SegNo::covering(Lsn(5), Lsn(0x500_0000), size).len(), 5);
    }
}
