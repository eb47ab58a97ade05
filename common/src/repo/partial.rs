//! Reading a segment's beginning as stored by `.partial` objects: the base `<segment>.partial`
//! (if any) followed by the stream's append-only tail pieces, stored as piece objects
//! `<segment>.partial.<offset>` and as the frames of the journal `<segment>.partial.journal`
//! (`docs/FORMAT.md`, "`.partial` objects"). The one place that assembles them, for `fetch`,
//! `verify` and the stream's own adoption of what an earlier run left.
//!
//! A journal's valid frames ([`super::journal::parse`]: up to the first torn one) are pieces
//! like the objects (each frame's payload is what the piece object would hold); both kinds
//! are merged in offset order under the one rule below. The journal is read with an ordinary
//! `get` of the whole object, so a journal copied to any backend reads the same.
//!
//! **The rule:** the bytes delivered are the base, then each piece in offset order as long as
//! it starts at or before the end of what is assembled so far; the first piece that starts
//! beyond that end is a gap, and nothing after a gap is ever delivered. Where a piece overlaps
//! what is already assembled, the overlapping bytes must be equal; if they are not, assembly
//! stops there too (a conflict, reported like a gap). A full-size base is the whole segment
//! (Postgres's own `.partial` at a promotion) and pieces are not consulted.
//!
//! A live stream consolidates pieces into a new base and then removes them; a reader that
//! finds a listed piece gone starts again (a few times), so it sees either the pieces or the
//! base that replaced them.

use bytes::{Bytes, BytesMut};

use crate::pg::file_name::{ArchiveFileName, WalFileName};
use crate::storage::Storage;

use super::journal::{self, JournalEnd};
use super::layout::{self, TailPiece};
use super::{RepoError, Repository};
use crate::storage::ObjectKey;

/// How often a reader starts again when a listed piece vanished under it.
const ATTEMPTS: usize = 4;

/// A segment's stored beginning, assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPartial {
    /// The contiguous bytes from the segment's start (may be empty: a gap at 0).
    pub content: Bytes,
    /// Length of the base `.partial`, if there is one.
    pub base_len: Option<u64>,
    /// Every piece found, in offset order (used or not).
    pub pieces: Vec<TailPiece>,
    /// Pieces whose bytes were used.
    pub pieces_used: usize,
    /// Where assembly stopped short of a later piece: the offset of the first missing byte
    /// (or of the first conflicting one), with the offset of the piece that could not be used.
    pub gap: Option<(u64, u64)>,
    /// The segment's journal, if there is one.
    pub journal: Option<StoredJournal>,
}

/// What a segment's tail journal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJournal {
    /// Its valid frames.
    pub frames: usize,
    /// Frames whose bytes were used (all of them unless a gap or conflict stopped assembly).
    pub frames_used: usize,
    /// Bytes of the file the valid frames fill: where a stream appends the next frame.
    pub valid_len: u64,
    /// What follows the valid frames.
    pub end: JournalEnd,
}

/// One source of tail bytes, in offset order.
enum Source {
    Object(TailPiece),
    Frame(u32, Bytes),
}

impl Source {
    fn offset(&self) -> u32 {
        match self {
            Source::Object(p) => p.offset,
            Source::Frame(offset, _) => *offset,
        }
    }
}

/// The `.partial` content of `segment` in `repo` (base plus contiguous pieces), or `None`
/// when neither a base nor a piece exists.
pub async fn read_partial(
    repo: &Repository,
    segment: WalFileName,
) -> Result<Option<StoredPartial>, RepoError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match assemble(repo, segment).await? {
            Assembly::Done(found) => return Ok(found),
            Assembly::Vanished(key) if attempt < ATTEMPTS => {
                tracing::debug!("{key} vanished while reading it (consolidated?); reading again");
            }
            Assembly::Vanished(key) => {
                tracing::warn!("{key} kept vanishing while reading; using what was contiguous");
                return assemble_tolerant(repo, segment).await;
            }
        }
    }
}

/// The piece objects of `segment` in offset order, and its journal's key if it has one.
pub async fn list_tail(
    repo: &Repository,
    segment: WalFileName,
) -> Result<(Vec<TailPiece>, Option<ObjectKey>), RepoError> {
    let listed = repo
        .storage()
        .list(&layout::tail_pieces_prefix(segment))
        .await?;
    let mut pieces: Vec<TailPiece> = listed
        .iter()
        .filter_map(|m| layout::tail_piece_of(&m.key, segment.seg_size()))
        .filter(|p| p.segment == segment)
        .collect();
    pieces.sort();
    let journal = layout::tail_journal_key(segment);
    let journal = listed.iter().any(|m| m.key == journal).then_some(journal);
    Ok((pieces, journal))
}

/// The valid frames of `segment`'s journal at `key`, decoded, with what the file holds;
/// `None` when it vanished.
async fn read_journal(
    repo: &Repository,
    segment: WalFileName,
    key: &ObjectKey,
) -> Result<Option<(Vec<Source>, StoredJournal)>, RepoError> {
    let seg_bytes = segment.seg_size().as_u64();
    let stored = match repo
        .storage()
        .get_bytes(key, journal::max_len(seg_bytes))
        .await
    {
        Ok(stored) => stored,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let parsed = journal::parse(&stored);
    let mut frames = Vec::with_capacity(parsed.frames.len());
    for frame in parsed.frames {
        let offset = u64::from(frame.offset);
        if offset >= seg_bytes {
            // A valid frame past the segment's end: never delivered (a gap).
            continue;
        }
        let piece_key = layout::tail_piece_key(TailPiece {
            segment,
            offset: frame.offset,
        });
        let bytes = repo
            .decode_stored(&piece_key, frame.payload, seg_bytes - offset)
            .await
            .map_err(|e| match e {
                RepoError::Corrupt {
                    location, source, ..
                } => RepoError::Corrupt {
                    key: format!("{key} (frame at offset {offset:#X})"),
                    location,
                    source,
                },
                other => other,
            })?;
        frames.push(Source::Frame(frame.offset, bytes));
    }
    let found = StoredJournal {
        frames: frames.len(),
        frames_used: 0,
        valid_len: parsed.valid_len,
        end: parsed.end,
    };
    Ok(Some((frames, found)))
}

enum Assembly {
    Done(Option<StoredPartial>),
    Vanished(String),
}

async fn assemble(repo: &Repository, segment: WalFileName) -> Result<Assembly, RepoError> {
    assemble_with(repo, segment, false).await
}

async fn assemble_tolerant(
    repo: &Repository,
    segment: WalFileName,
) -> Result<Option<StoredPartial>, RepoError> {
    match assemble_with(repo, segment, true).await? {
        Assembly::Done(found) => Ok(found),
        Assembly::Vanished(_) => Ok(None),
    }
}

/// One pass: list the pieces first, then read the base, so that a base replaced meanwhile
/// is at least as new as the listing (a consolidation writes the base before it removes the
/// pieces it covers).
async fn assemble_with(
    repo: &Repository,
    segment: WalFileName,
    tolerant: bool,
) -> Result<Assembly, RepoError> {
    let seg_bytes = segment.seg_size().as_u64();
    let (pieces, journal_key) = list_tail(repo, segment).await?;
    let mut sources: Vec<Source> = pieces.iter().copied().map(Source::Object).collect();
    let mut journal = None;
    if let Some(key) = &journal_key {
        match read_journal(repo, segment, key).await? {
            Some((frames, found)) => {
                sources.extend(frames);
                journal = Some(found);
            }
            None if tolerant => {}
            None => return Ok(Assembly::Vanished(key.to_string())),
        }
    }
    // Stable: at one offset, piece objects (older) before frames.
    sources.sort_by_key(Source::offset);
    let base_key = layout::wal_key(&ArchiveFileName::Partial(segment));
    let base = match repo.get_content(&base_key, seg_bytes).await {
        Ok(base) => Some(base),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    if base.is_none() && pieces.is_empty() && journal.is_none() {
        return Ok(Assembly::Done(None));
    }
    let base_len = base.as_ref().map(|b| b.len() as u64);
    let mut out = BytesMut::new();
    if let Some(base) = &base {
        out.extend_from_slice(base);
    }
    let mut found = StoredPartial {
        content: Bytes::new(),
        base_len,
        pieces: pieces.clone(),
        pieces_used: 0,
        gap: None,
        journal,
    };
    if (out.len() as u64) < seg_bytes {
        for source in sources {
            let end = out.len() as u64;
            let offset = u64::from(source.offset());
            if offset > end {
                found.gap = Some((end, offset));
                break;
            }
            let is_frame = matches!(source, Source::Frame(..));
            let (what, bytes) = match source {
                Source::Frame(_, bytes) => (
                    format!("{} (frame at offset {offset:#X})", journal_name(segment)),
                    bytes,
                ),
                Source::Object(piece) => {
                    let key = layout::tail_piece_key(piece);
                    match repo.get_content(&key, seg_bytes - offset).await {
                        Ok(bytes) => (key.to_string(), bytes),
                        Err(e) if e.is_not_found() && tolerant => continue,
                        Err(e) if e.is_not_found() => {
                            return Ok(Assembly::Vanished(key.to_string()));
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            let overlap = ((end - offset) as usize).min(bytes.len());
            if bytes[..overlap] != out[offset as usize..offset as usize + overlap] {
                let first = (0..overlap)
                    .find(|&i| bytes[i] != out[offset as usize + i])
                    .unwrap_or(0);
                tracing::warn!(
                    "{what} disagrees with the bytes before it at offset {:#X}; using the segment's beginning only up to there",
                    offset + first as u64
                );
                out.truncate(offset as usize + first);
                found.gap = Some((offset + first as u64, offset));
                break;
            }
            out.extend_from_slice(&bytes[overlap..]);
            if is_frame {
                if let Some(j) = found.journal.as_mut() {
                    j.frames_used += 1;
                }
            } else {
                found.pieces_used += 1;
            }
        }
    }
    found.content = out.freeze();
    Ok(Assembly::Done(Some(found)))
}

/// How log messages name a segment's journal.
fn journal_name(segment: WalFileName) -> String {
    layout::tail_journal_key(segment).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::pg::WalSegSize;
    use crate::storage::{AnyStorage, LocalStorage, PutOptions};

    #[tokio::test]
    async fn base_journal_frames_and_pieces_assemble_under_one_rule() {
        let dir = tempfile::tempdir().unwrap();
        let storage = AnyStorage::from(LocalStorage::new(dir.path()).unwrap());
        let repo = Repository::new(storage, Codec::Lz4);
        let size = WalSegSize::from_mib(1).unwrap();
        let segment = WalFileName::parse("000000010000000000000003", size).unwrap();
        let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        let base_key = layout::wal_key(&ArchiveFileName::Partial(segment));
        repo.put_content(&base_key, Bytes::copy_from_slice(&data[..1000]), true)
            .await
            .unwrap();
        // A piece object 1000..2000, journal frames 1500..3000 (overlapping it) and 3000..3500.
        let piece = TailPiece {
            segment,
            offset: 1000,
        };
        repo.put_content(
            &layout::tail_piece_key(piece),
            Bytes::copy_from_slice(&data[1000..2000]),
            true,
        )
        .await
        .unwrap();
        let frame = |from: usize, to: usize| {
            let repo = repo.clone();
            let bytes = Bytes::copy_from_slice(&data[from..to]);
            async move {
                let key = layout::tail_piece_key(TailPiece {
                    segment,
                    offset: from as u32,
                });
                let payload = repo.encode_content(&key, bytes).await.unwrap();
                journal::encode_frame(from as u32, &payload)
            }
        };
        let mut file = frame(1500, 3000).await;
        file.extend(frame(3000, 3500).await);
        let torn = frame(3500, 4000).await;
        file.extend_from_slice(&torn[..torn.len() - 1]);
        let journal_key = layout::tail_journal_key(segment);
        repo.storage()
            .put(&journal_key, Bytes::from(file), PutOptions::default())
            .await
            .unwrap();

        let found = read_partial(&repo, segment).await.unwrap().unwrap();
        assert_eq!(found.content, data[..3500]);
        assert_eq!(
            (found.base_len, found.pieces_used, found.gap),
            (Some(1000), 1, None)
        );
        let j = found.journal.unwrap();
        assert_eq!((j.frames, j.frames_used), (2, 2));
        assert!(matches!(j.end, JournalEnd::Torn { .. }));

        // Without the piece object, the journal's first frame starts past the base: a gap.
        repo.storage()
            .delete(&layout::tail_piece_key(piece))
            .await
            .unwrap();
        let found = read_partial(&repo, segment).await.unwrap().unwrap();
        assert_eq!(found.content, data[..1000]);
        assert_eq!(found.gap, Some((1000, 1500)));
        assert_eq!(found.journal.unwrap().frames_used, 0);
    }
}
