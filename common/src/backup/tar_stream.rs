//! [`TarStream`]: a push parser for the ustar archives a base backup streams, fed the
//! archive's data events as they arrive and handing file data on as zero-copy slices of
//! them ([`Bytes::split_to`]), never through an intermediate buffer.
//!
//! What Postgres writes (`src/port/tar.c` `tarCreateHeader`, `src/backend/backup/basebackup.c`):
//! 512-byte ustar headers, names of at most 99 bytes, numeric fields in octal or, when too
//! large, base-256 (first byte `0x80`), a checksum over the header with its own field read
//! as spaces; entry types `'0'` file, `'5'` directory, `'2'` symbolic link; file data padded
//! to 512 bytes. Postgres 13-14 end an archive after the last entry, 15+ add two zero
//! blocks: both are accepted, and nothing but zeros may follow the first zero block.
//!
//! The parser knows the tar format only; which paths and entry kinds a backup may hold is
//! decided by its caller ([`super::tar`], with [`super::entry_path`]). Header faults and
//! truncation are [`TarError`]s, which the caller reports naming the archive.

use bytes::Bytes;

/// Size of a tar block (header, data padding).
pub const BLOCK: usize = 512;

/// The kind of a tar entry, from its type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `'0'` (or the pre-POSIX `'\0'`, or `'7'` contiguous file): a regular file.
    File,
    /// `'5'`: a directory.
    Dir,
    /// `'2'`: a symbolic link.
    Symlink,
    /// Any other type flag (hard link `'1'`, devices `'3'`/`'4'`, FIFO `'6'`, extension
    /// headers): never in a base backup.
    Other(u8),
}

/// One parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarHeader {
    /// The entry's name as stored (the ustar prefix joined with `/` when there is one).
    pub name: Vec<u8>,
    /// The link target of a symbolic link (empty otherwise).
    pub link_name: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Bytes of data following the header.
    pub size: u64,
    /// What the entry is.
    pub kind: EntryKind,
}

/// What the parser found next in its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarItem {
    /// An entry begins; its `size` bytes of data follow as [`TarItem::Data`], then
    /// [`TarItem::EntryEnd`] (also for an entry of size 0).
    Entry(TarHeader),
    /// The next bytes of the current entry's data: a slice of the input, not a copy.
    Data(Bytes),
    /// The current entry's data is complete.
    EntryEnd,
}

/// Why the bytes are not a well-formed archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    /// A header's checksum does not match its bytes.
    #[error(
        "header at byte {offset}: checksum field says {recorded}, the header sums to {computed}"
    )]
    BadChecksum {
        /// Offset of the header in the archive.
        offset: u64,
        /// The checksum field.
        recorded: u64,
        /// The sum of the header's bytes.
        computed: u64,
    },
    /// A numeric header field is neither octal nor base-256, or out of range.
    #[error("header at byte {offset}: field {field} is malformed ({found:02x?})")]
    BadNumber {
        /// Offset of the header in the archive.
        offset: u64,
        /// The field's name.
        field: &'static str,
        /// Its bytes.
        found: Vec<u8>,
    },
    /// The archive ended inside a header or an entry's data or padding.
    #[error("truncated: the archive ends at byte {offset}, inside {inside}")]
    Truncated {
        /// Bytes the archive held.
        offset: u64,
        /// What was being read.
        inside: String,
    },
    /// Something other than zeros follows the end-of-archive block.
    #[error("non-zero bytes at byte {offset}, after the end-of-archive block")]
    DataAfterEnd {
        /// Offset of the first non-zero byte.
        offset: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a header; this many of its bytes are in `header`.
    Header(usize),
    /// In an entry's data: bytes left, then padding bytes.
    Data { left: u64, padding: usize },
    /// The data ended; [`TarItem::EntryEnd`] is due, then this much padding.
    EntryEnd { padding: usize },
    /// Skipping padding.
    Padding(usize),
    /// After the first zero block: only zeros may follow.
    Ended,
}

/// The parser; see the module doc. Feed it with [`TarStream::next_item`] until that returns
/// `None` (input used up), then give it the next data event; call [`TarStream::finish`] at
/// the archive's end.
#[derive(Debug)]
pub struct TarStream {
    state: State,
    header: [u8; BLOCK],
    /// Archive bytes consumed so far.
    offset: u64,
    /// Name of the entry whose data is being read, for truncation errors.
    current: Vec<u8>,
}

impl Default for TarStream {
    fn default() -> Self {
        TarStream::new()
    }
}

impl TarStream {
    /// A parser at the start of an archive.
    pub fn new() -> TarStream {
        TarStream {
            state: State::Header(0),
            header: [0; BLOCK],
            offset: 0,
            current: Vec::new(),
        }
    }

    /// The next item taken from the front of `input`, or `None` once `input` is used up
    /// (it is then empty). File data comes out as slices of `input`.
    pub fn next_item(&mut self, input: &mut Bytes) -> Result<Option<TarItem>, TarError> {
        loop {
            match self.state {
                State::EntryEnd { padding } => {
                    self.state = if padding == 0 {
                        State::Header(0)
                    } else {
                        State::Padding(padding)
                    };
                    return Ok(Some(TarItem::EntryEnd));
                }
                _ if input.is_empty() => return Ok(None),
                State::Header(filled) => {
                    let n = (BLOCK - filled).min(input.len());
                    self.header[filled..filled + n].copy_from_slice(&input[..n]);
                    let _ = input.split_to(n);
                    self.offset += n as u64;
                    if filled + n < BLOCK {
                        self.state = State::Header(filled + n);
                        continue;
                    }
                    if self.header.iter().all(|&b| b == 0) {
                        self.state = State::Ended;
                        continue;
                    }
                    let header = parse_header(&self.header, self.offset - BLOCK as u64)?;
                    let padding = padding_after(header.size);
                    self.state = if header.size == 0 {
                        State::EntryEnd { padding }
                    } else {
                        State::Data {
                            left: header.size,
                            padding,
                        }
                    };
                    self.current.clone_from(&header.name);
                    return Ok(Some(TarItem::Entry(header)));
                }
                State::Data { left, padding } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let piece = input.split_to(n);
                    self.offset += n as u64;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::EntryEnd { padding }
                    } else {
                        State::Data { left, padding }
                    };
                    return Ok(Some(TarItem::Data(piece)));
                }
                State::Padding(left) => {
                    let n = left.min(input.len());
                    let _ = input.split_to(n);
                    self.offset += n as u64;
                    self.state = if n == left {
                        State::Header(0)
                    } else {
                        State::Padding(left - n)
                    };
                }
                State::Ended => {
                    if let Some(at) = input.iter().position(|&b| b != 0) {
                        return Err(TarError::DataAfterEnd {
                            offset: self.offset + at as u64,
                        });
                    }
                    self.offset += input.len() as u64;
                    input.clear();
                    return Ok(None);
                }
            }
        }
    }

    /// The archive's input ended: an error unless it ended between entries (after the last
    /// entry's padding, with or without end-of-archive blocks).
    pub fn finish(&self) -> Result<(), TarError> {
        let name = || String::from_utf8_lossy(&self.current).into_owned();
        let inside = match self.state {
            State::Header(0) | State::Ended => return Ok(()),
            State::Header(_) => "a header".to_string(),
            State::Data { left, .. } => format!("the data of {:?} ({left} bytes missing)", name()),
            State::EntryEnd { .. } | State::Padding(_) => {
                format!("the padding after {:?}", name())
            }
        };
        Err(TarError::Truncated {
            offset: self.offset,
            inside,
        })
    }
}

/// Padding after `size` bytes of data, up to the next block.
fn padding_after(size: u64) -> usize {
    // size % 512 < 512: fits.
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// Field offsets and lengths of the ustar header (POSIX, and `src/port/tar.c`).
const NAME: (usize, usize) = (0, 100);
const MODE: (usize, usize) = (100, 8);
const SIZE: (usize, usize) = (124, 12);
const MTIME: (usize, usize) = (136, 12);
const CHECKSUM: (usize, usize) = (148, 8);
const TYPEFLAG: usize = 156;
const LINKNAME: (usize, usize) = (157, 100);
const MAGIC: (usize, usize) = (257, 6);
const PREFIX: (usize, usize) = (345, 155);

fn field(header: &[u8; BLOCK], (at, len): (usize, usize)) -> &[u8] {
    &header[at..at + len]
}

/// The bytes of a NUL-terminated string field, up to its first NUL.
fn text(header: &[u8; BLOCK], at: (usize, usize)) -> &[u8] {
    let bytes = field(header, at);
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn parse_header(header: &[u8; BLOCK], offset: u64) -> Result<TarHeader, TarError> {
    let number = |at: (usize, usize), name: &'static str| {
        let bytes = field(header, at);
        parse_number(bytes).ok_or_else(|| TarError::BadNumber {
            offset,
            field: name,
            found: bytes.to_vec(),
        })
    };
    // tarChecksum: every byte unsigned, the checksum field counted as eight spaces.
    let recorded = number(CHECKSUM, "chksum")?;
    let computed: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (CHECKSUM.0..CHECKSUM.0 + CHECKSUM.1).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if recorded != computed {
        return Err(TarError::BadChecksum {
            offset,
            recorded,
            computed,
        });
    }
    let mode = number(MODE, "mode")?;
    let mode = u32::try_from(mode).map_err(|_| TarError::BadNumber {
        offset,
        field: "mode",
        found: field(header, MODE).to_vec(),
    })?;
    let kind = match header[TYPEFLAG] {
        b'0' | b'\0' | b'7' => EntryKind::File,
        b'5' => EntryKind::Dir,
        b'2' => EntryKind::Symlink,
        other => EntryKind::Other(other),
    };
    let mut name = Vec::new();
    if field(header, MAGIC) == b"ustar\0" {
        let prefix = text(header, PREFIX);
        if !prefix.is_empty() {
            name.extend_from_slice(prefix);
            name.push(b'/');
        }
    }
    name.extend_from_slice(text(header, NAME));
    Ok(TarHeader {
        name,
        link_name: text(header, LINKNAME).to_vec(),
        mode,
        mtime: number(MTIME, "mtime")?,
        size: number(SIZE, "size")?,
        kind,
    })
}

/// A numeric field: octal digits (leading spaces or NULs, then digits, ended by a space, a
/// NUL or the field's end), or base-256 when the first byte is `0x80` (`print_tar_number`
/// for values too large for octal). `None` when malformed, negative or beyond `u64`.
fn parse_number(bytes: &[u8]) -> Option<u64> {
    let (&first, rest) = bytes.split_first()?;
    if first & 0x80 != 0 {
        if first != 0x80 {
            return None; // negative (0xff) or a value with bits in the marker byte
        }
        return rest.iter().try_fold(0u64, |acc, &b| {
            acc.checked_mul(256)?.checked_add(u64::from(b))
        });
    }
    let digits = bytes.iter().skip_while(|&&b| b == b' ' || b == 0);
    let mut value = 0u64;
    let mut ended = false;
    for &b in digits {
        match b {
            b'0'..=b'7' if !ended => {
                value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
            }
            b' ' | 0 => ended = true,
            _ => return None,
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as `tarCreateHeader` writes it (octal fields with a trailing space, or
    /// base-256 for sizes beyond octal), with a correct checksum.
    fn header(name: &str, kind: u8, size: u64, link: &str) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        put_number(&mut h, MODE, 0o600);
        put_number(&mut h, (108, 8), 26);
        put_number(&mut h, (116, 8), 26);
        put_number(&mut h, SIZE, size);
        put_number(&mut h, MTIME, 1_763_800_000);
        h[TYPEFLAG] = kind;
        h[LINKNAME.0..LINKNAME.0 + link.len()].copy_from_slice(link.as_bytes());
        h[MAGIC.0..MAGIC.0 + 6].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        fix_checksum(&mut h);
        h
    }

    /// `print_tar_number`.
    fn put_number(h: &mut [u8; BLOCK], (at, len): (usize, usize), value: u64) {
        let s = &mut h[at..at + len];
        if value < 1u64 << ((len - 1) * 3) {
            s[len - 1] = b' ';
            let mut v = value;
            for b in s[..len - 1].iter_mut().rev() {
                *b = b'0' + (v & 7) as u8;
                v >>= 3;
            }
        } else {
            s[0] = 0x80;
            let mut v = value;
            for b in s[1..].iter_mut().rev() {
                *b = (v & 255) as u8;
                v >>= 8;
            }
        }
    }

    fn fix_checksum(h: &mut [u8; BLOCK]) {
        h[CHECKSUM.0..CHECKSUM.0 + CHECKSUM.1].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        put_number(h, CHECKSUM, sum);
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = header(name, b'0', data.len() as u64, "").to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    /// Everything parsed from `archive` delivered in pieces of `step` bytes: items with
    /// data pieces joined per entry, so that the result does not depend on `step`.
    fn parse(archive: &[u8], step: usize) -> Result<Vec<(TarHeader, Vec<u8>)>, TarError> {
        let mut parser = TarStream::new();
        let mut out: Vec<(TarHeader, Vec<u8>)> = Vec::new();
        let mut open = false;
        let whole = Bytes::copy_from_slice(archive);
        for start in (0..archive.len()).step_by(step.max(1)) {
            let mut input = whole.slice(start..(start + step).min(archive.len()));
            while let Some(item) = parser.next_item(&mut input)? {
                match item {
                    TarItem::Entry(h) => {
                        assert!(!open, "an entry began inside another");
                        open = true;
                        out.push((h, Vec::new()));
                    }
                    TarItem::Data(piece) => {
                        assert!(open, "data outside an entry");
                        // Zero-copy: the piece points into the input's buffer.
                        let base = whole.as_ptr() as usize;
                        let at = piece.as_ptr() as usize;
                        assert!(at >= base && at + piece.len() <= base + whole.len());
                        out.last_mut().unwrap().1.extend_from_slice(&piece);
                    }
                    TarItem::EntryEnd => {
                        assert!(open, "an entry ended twice");
                        open = false;
                    }
                }
            }
            assert!(input.is_empty());
        }
        parser.finish()?;
        assert!(!open, "finish accepted an open entry");
        Ok(out)
    }

    fn sample() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "backup_label".into(),
                b"START WAL LOCATION: 0/2000028\n".to_vec(),
            ),
            ("base/1/empty".into(), Vec::new()),
            (
                "base/1/1259".into(),
                (0..8192 * 3).map(|i| (i % 253) as u8).collect(),
            ),
            (
                "base/1/odd".into(),
                (0..1000).map(|i| (i % 7) as u8).collect(),
            ),
            ("global/pg_control".into(), vec![7; 8192]),
        ];
        let mut archive = header("base/", b'5', 0, "").to_vec();
        for (name, data) in &files {
            archive.extend_from_slice(&file(name, data));
        }
        archive.extend_from_slice(&header("pg_tblspc/16384", b'2', 0, "/srv/ts"));
        (archive, files)
    }

    #[test]
    fn entries_and_data_come_out_whole_however_the_input_is_cut() {
        let (archive, files) = sample();
        for end_blocks in [false, true] {
            let mut archive = archive.clone();
            if end_blocks {
                archive.resize(archive.len() + 2 * BLOCK, 0);
            }
            let expected = parse(&archive, archive.len()).unwrap();
            assert_eq!(expected.len(), files.len() + 2);
            assert_eq!(expected[0].0.kind, EntryKind::Dir);
            assert_eq!(expected[0].0.name, b"base/");
            for ((h, data), (name, content)) in expected[1..].iter().zip(&files) {
                assert_eq!(h.kind, EntryKind::File);
                assert_eq!(h.name, name.as_bytes());
                assert_eq!(h.size, content.len() as u64);
                assert_eq!(h.mode, 0o600);
                assert_eq!(h.mtime, 1_763_800_000);
                assert!(data == content, "{name}");
            }
            let link = &expected.last().unwrap().0;
            assert_eq!(link.kind, EntryKind::Symlink);
            assert_eq!(link.link_name, b"/srv/ts");
            // Headers split across events at every position, data cut anywhere.
            for step in [1, 2, 100, 511, 512, 513, 1000, 4096, 7777] {
                assert_eq!(parse(&archive, step).unwrap(), expected, "step {step}");
            }
        }
    }

    #[test]
    fn a_header_split_across_two_events_at_every_byte() {
        let (archive, _) = sample();
        let whole = parse(&archive, archive.len()).unwrap();
        // The third header starts after the directory and backup_label's header and block.
        let at = 3 * BLOCK;
        for cut in at..=at + BLOCK {
            let mut parser = TarStream::new();
            let mut items = 0;
            for part in [&archive[..cut], &archive[cut..]] {
                let mut input = Bytes::copy_from_slice(part);
                while let Some(item) = parser.next_item(&mut input).unwrap() {
                    if matches!(item, TarItem::Entry(_)) {
                        items += 1;
                    }
                }
            }
            parser.finish().unwrap();
            assert_eq!(items, whole.len(), "cut at {cut}");
        }
    }

    #[test]
    fn sizes_and_times_in_base_256_are_read() {
        let mut h = header("base/1/big", b'0', 0, "");
        let big = 0o77_777_777_777u64 + 1; // 8 GiB: beyond 11 octal digits
        put_number(&mut h, SIZE, big);
        assert_eq!(h[SIZE.0], 0x80);
        put_number(&mut h, MTIME, 1 << 40);
        fix_checksum(&mut h);
        let mut parser = TarStream::new();
        let mut input = Bytes::copy_from_slice(&h);
        let Some(TarItem::Entry(parsed)) = parser.next_item(&mut input).unwrap() else {
            panic!("no entry");
        };
        assert_eq!(parsed.size, big);
        assert_eq!(parsed.mtime, 1 << 40);
        // A little of its data, then the end: truncated, naming the entry.
        let mut input = Bytes::from_static(&[1; 1000]);
        assert!(matches!(
            parser.next_item(&mut input).unwrap(),
            Some(TarItem::Data(d)) if d.len() == 1000
        ));
        let err = parser.finish().unwrap_err();
        assert!(matches!(err, TarError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("base/1/big"), "{err}");
    }

    #[test]
    fn numbers_octal_with_any_terminator_and_refusals() {
        assert_eq!(parse_number(b"0000644\0"), Some(0o644));
        assert_eq!(parse_number(b"0000644 "), Some(0o644));
        assert_eq!(parse_number(b"   644  "), Some(0o644));
        assert_eq!(parse_number(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(parse_number(b"00000000012 "), Some(0o12));
        assert_eq!(parse_number(b"\x80\0\0\0\0\0\0\x01\0\0\0\0"), Some(1 << 32));
        assert_eq!(parse_number(b"0000648\0"), None);
        assert_eq!(parse_number(b"00 0064\0"), None);
        assert_eq!(parse_number(b"\xff\xff\xff\xff\xff\xff\xff\xff"), None);
        assert_eq!(parse_number(b"\x80\x01\0\0\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let mut archive = file("base/1/1", b"data");
        archive[0] = b'c'; // "case/1/1": the checksum no longer matches
        let err = parse(&archive, 512).unwrap_err();
        assert!(
            matches!(err, TarError::BadChecksum { offset: 0, .. }),
            "{err}"
        );
        let mut archive = file("base/1/1", b"data");
        archive[CHECKSUM.0] = b'9';
        let err = parse(&archive, 512).unwrap_err();
        assert!(
            matches!(
                err,
                TarError::BadNumber {
                    field: "chksum",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn truncation_anywhere_but_between_entries_is_an_error() {
        let (archive, _) = sample();
        let boundaries: Vec<usize> = {
            // Offsets where an entry (with its padding) ends.
            let mut at = 0;
            let mut ends = vec![0];
            while at < archive.len() {
                let h: [u8; BLOCK] = archive[at..at + BLOCK].try_into().unwrap();
                let size = parse_header(&h, at as u64).unwrap().size as usize;
                at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
                ends.push(at);
            }
            ends
        };
        for cut in 0..=archive.len() {
            let result = parse(&archive[..cut], 600);
            if boundaries.contains(&cut) {
                assert!(result.is_ok(), "cut at {cut}: {result:?}");
            } else {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, TarError::Truncated { .. }),
                    "cut at {cut}: {err}"
                );
            }
        }
        // Inside the end blocks is still the end (one zero block already ends the archive).
        let mut ended = archive.clone();
        ended.resize(archive.len() + BLOCK + 100, 0);
        assert!(parse(&ended, 512).is_ok());
    }

    #[test]
    fn zero_length_files_and_other_kinds_are_reported_as_they_are() {
        let mut archive = file("base/1/empty", b"");
        assert_eq!(archive.len(), BLOCK);
        for kind in [b'1', b'3', b'4', b'6', b'x', b'g', b'L'] {
            archive.extend_from_slice(&header("entry", kind, 0, "target"));
        }
        let parsed = parse(&archive, 100).unwrap();
        assert_eq!(parsed[0].0.kind, EntryKind::File);
        assert!(parsed[0].1.is_empty());
        let kinds: Vec<EntryKind> = parsed[1..].iter().map(|(h, _)| h.kind).collect();
        assert_eq!(
            kinds,
            [b'1', b'3', b'4', b'6', b'x', b'g', b'L'].map(EntryKind::Other)
        );
    }

    #[test]
    fn the_ustar_prefix_is_joined_and_only_zeros_may_follow_the_end() {
        let mut h = header("1259", b'0', 0, "");
        h[PREFIX.0..PREFIX.0 + 6].copy_from_slice(b"base/1");
        fix_checksum(&mut h);
        let parsed = parse(&h, 512).unwrap();
        assert_eq!(parsed[0].0.name, b"base/1/1259");

        let mut archive = file("base/1/1", b"data");
        archive.resize(archive.len() + 2 * BLOCK, 0);
        archive.extend_from_slice(&file("hidden", b"after the end"));
        let err = parse(&archive, 700).unwrap_err();
        assert!(
            matches!(err, TarError::DataAfterEnd { offset } if offset == 4 * BLOCK as u64),
            "{err}"
        );
    }
}
