//! The growing tail as append-only pieces: each flush stores only the bytes that arrived since
//! the last durable one, as a small create-only object `<segment>.partial.<offset>`, so that a
//! `--synchronous` commit waits for one small write, not for the whole tail so far.
//!
//! **Layout and reading** live in [`crate::repo::layout::TailPiece`] and
//! [`crate::repo::partial`]: a reader takes the base `<segment>.partial` and then the pieces in
//! offset order up to the first gap. **Writing** (this module):
//!
//! - The first flush of a segment in a run looks at what is stored ([`read_partial`]): a
//!   full-size base is someone else's (the stream writes nothing for that segment, as
//!   [`TailStore`]'s rule says); stored bytes that agree with what was received are adopted
//!   (pieces beyond a gap, which no reader delivers, are removed); anything that disagrees is
//!   replaced by a new base holding what was received, and the old pieces are then removed.
//! - Every flush stores the new bytes as one piece, create-only; the caller reports them
//!   flushed once that returns. A piece is never overwritten.
//! - On a local repository a piece is a **frame appended to the segment's journal**
//!   `<segment>.partial.journal` ([`crate::repo::journal`]) instead of a new object: one
//!   `pwrite` and one `fdatasync` per flush (one file-system journal commit at most, where a
//!   new file costs two). The journal is created, create-only, with its first frame and
//!   zero-filled to [`journal::preallocation`], at the segment's first flush; later frames
//!   overwrite the zeros, which `fdatasync` makes durable without a file-system commit. A journal that an earlier run left and that agrees is adopted: the
//!   torn remains after its last valid frame are cut off (durably) before the next frame is
//!   appended, so no stale bytes ever follow a new frame. A failed append (or `fdatasync`)
//!   leaves the journal untrusted: the next attempt stores the whole tail as a new base and
//!   removes the journal first. Journals are not consolidated (the journal holds the whole
//!   segment; readers need no base); a journal that would grow past
//!   [`journal::max_len`] makes the segment's further flushes piece objects.
//! - Consolidation keeps the piece count bounded: every [`PIECES_PER_BASE`] pieces or
//!   [`BASE_EVERY`], a background task stores the whole tail as the base (through
//!   [`TailStore`], create-only then ownership-checked replace) and only then removes the
//!   pieces it covers. It runs beside the flushes, never on the commit path; one at a time.
//! - Once the complete segment is stored, [`PieceStore::release`] removes the base (if the
//!   stream's own) and, in the background, every piece of the segment (also an earlier run's).
//!
//! At every moment the base plus the contiguous pieces hold every byte reported flushed: new
//! objects are created before old ones are removed.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

use crate::pg::file_name::WalFileName;
use crate::repo::journal::{self, JournalEnd};
use crate::repo::layout::{self, TailPiece};
use crate::repo::partial::{StoredPartial, list_tail, read_partial};
use crate::repo::{RepoError, Repository};
use crate::storage::{AppendFile, LocalStorage, ObjectKey, Storage};

use super::error::StreamError;
use super::segment::Tail;
use super::tail::{TailOutcome, TailStore};

/// Pieces after which a consolidation starts.
pub const PIECES_PER_BASE: usize = 64;
/// Age of the oldest unconsolidated piece after which a consolidation starts.
pub const BASE_EVERY: Duration = Duration::from_secs(10);

/// What the stream knows about one segment's stored tail.
#[derive(Debug)]
struct SegmentTail {
    name: WalFileName,
    /// Bytes from the segment's start that are durably stored (base plus pieces).
    stored: u64,
    /// Pieces stored and not yet covered by a base the stream wrote.
    pieces: Vec<TailPiece>,
    /// When the oldest of `pieces` was stored.
    oldest: Option<Instant>,
    foreign: bool,
    /// The segment's journal open for appending, and the bytes its valid frames fill.
    journal: Option<(AppendFile, u64)>,
}

/// What a finished consolidation hands back.
struct Consolidated {
    store: TailStore,
    name: WalFileName,
    outcome: Result<TailOutcome, StreamError>,
    removed: Vec<TailPiece>,
}

/// Writes the tail as pieces under the rules above.
#[derive(Debug)]
pub struct PieceStore {
    /// The base writer; `None` while a consolidation has it.
    base: Option<TailStore>,
    consolidating: Option<JoinHandle<Consolidated>>,
    segments: Vec<SegmentTail>,
    /// Background removals of released segments' pieces.
    cleanups: Vec<JoinHandle<()>>,
    /// Segments whose journal an append failed on: the next store replaces it by a base.
    untrusted: Vec<WalFileName>,
}

impl std::fmt::Debug for Consolidated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Consolidated({})", self.name)
    }
}

impl Default for PieceStore {
    fn default() -> Self {
        PieceStore {
            base: Some(TailStore::default()),
            consolidating: None,
            segments: Vec::new(),
            cleanups: Vec::new(),
            untrusted: Vec::new(),
        }
    }
}

impl PieceStore {
    /// Stores what `tail` holds beyond what is already stored, as one piece. `Stored` means
    /// every byte of `tail` is durable in the repository.
    pub async fn store(
        &mut self,
        repo: &Repository,
        tail: &Tail,
    ) -> Result<TailOutcome, StreamError> {
        self.reap(false).await;
        let index = match self.segments.iter().position(|s| s.name == tail.name) {
            Some(i) => i,
            None => {
                let state = self.begin(repo, tail).await?;
                self.segments.push(state);
                self.segments.len() - 1
            }
        };
        let state = &mut self.segments[index];
        if state.foreign {
            return Ok(TailOutcome::Foreign);
        }
        if tail.len() > state.stored {
            let piece = TailPiece {
                segment: tail.name,
                offset: state.stored as u32,
            };
            let bytes = range(tail.pieces(), state.stored, tail.len());
            let appended = match repo.storage().local() {
                Some(local) => match append_frame(repo, local, state, piece, bytes.clone()).await {
                    Ok(appended) => appended,
                    Err(e) => {
                        self.distrust(tail.name);
                        return Err(e);
                    }
                },
                None => false,
            };
            if !appended {
                put_piece(repo, piece, bytes).await?;
                state.pieces.push(piece);
                state.oldest.get_or_insert_with(Instant::now);
            }
            state.stored = tail.len();
        }
        self.maybe_consolidate(repo, tail);
        Ok(TailOutcome::Stored)
    }

    /// Removes the stream's tail of `name` (its complete segment is stored, or a later
    /// timeline holds its WAL): the base now, the pieces in the background.
    pub async fn release(
        &mut self,
        repo: &Repository,
        name: WalFileName,
    ) -> Result<(), StreamError> {
        self.reap(true).await;
        if let Some(base) = self.base.as_mut() {
            base.release(repo, name).await?;
        }
        let foreign = self.segments.iter().any(|s| s.name == name && s.foreign);
        self.segments.retain(|s| s.name != name);
        if foreign {
            return Ok(());
        }
        let repo = repo.clone();
        self.cleanups.push(tokio::spawn(async move {
            match list_tail(&repo, name).await {
                Ok((pieces, journal)) => {
                    remove_pieces(&repo, &pieces).await;
                    if let Some(key) = journal
                        && let Err(e) = remove_journal(&repo, &key).await
                    {
                        tracing::warn!("{e} (expire removes it later)");
                    }
                }
                Err(e) => tracing::warn!(
                    "listing the tail pieces of {name} to remove them (the complete segment is stored; expire removes them later): {e}"
                ),
            }
        }));
        self.cleanups.retain(|c| !c.is_finished());
        Ok(())
    }

    /// Waits for the background work (a consolidation, piece removals) to end.
    pub async fn settle(&mut self) {
        self.reap(true).await;
        for cleanup in self.cleanups.drain(..) {
            let _ = cleanup.await;
        }
    }

    /// After a failed append to `name`'s journal: whatever the file holds now is not to be
    /// appended to, so the segment's next store begins afresh and replaces it by a base.
    pub(super) fn distrust(&mut self, name: WalFileName) {
        self.untrusted.push(name);
        self.segments.retain(|s| s.name != name);
    }

    /// The first flush of a segment in this run: adopt, replace or start afresh.
    async fn begin(&mut self, repo: &Repository, tail: &Tail) -> Result<SegmentTail, StreamError> {
        let mut state = SegmentTail {
            name: tail.name,
            stored: 0,
            pieces: Vec::new(),
            oldest: None,
            foreign: false,
            journal: None,
        };
        let untrusted = self.untrusted.contains(&tail.name);
        self.untrusted.retain(|n| *n != tail.name);
        let Some(found) = read_partial(repo, tail.name).await? else {
            return Ok(state);
        };
        let seg_bytes = tail.name.seg_size().as_u64();
        if found.base_len.is_some_and(|len| len >= seg_bytes) {
            tracing::warn!(
                "{}.partial is full-size, not a stream tail (a promotion's .partial?); leaving it alone and writing no tail for {}",
                tail.name,
                tail.name
            );
            state.foreign = true;
            return Ok(state);
        }
        let content = tail.content();
        let common = found.content.len().min(content.len());
        // A journal with frames no reader delivers (past a gap, or after damage) is replaced:
        // a frame appended to it could sort before them and be stopped by them.
        let journal_whole = found.journal.as_ref().is_none_or(|j| {
            j.frames_used == j.frames && !matches!(j.end, JournalEnd::Corrupt { .. })
        });
        if !untrusted
            && journal_whole
            && !found.content.is_empty()
            && found.content[..common] == content[..common]
        {
            // What an earlier run stored agrees with what arrived: keep it and go on from its
            // end. Pieces past a gap are never delivered; remove them so they cannot collide.
            state.stored = found.content.len() as u64;
            if let (Some(len), Some(base)) = (found.base_len, self.base.as_mut()) {
                base.adopt_existing(tail.name, &found.content[..len as usize]);
            }
            let unusable: Vec<TailPiece> = found
                .pieces
                .iter()
                .copied()
                .filter(|p| u64::from(p.offset) >= state.stored)
                .collect();
            remove_pieces(repo, &unusable).await;
            state.pieces = found
                .pieces
                .into_iter()
                .filter(|p| u64::from(p.offset) < state.stored)
                .collect();
            if !state.pieces.is_empty() {
                state.oldest = Some(Instant::now());
            }
            if let (Some(local), Some(j)) = (repo.storage().local(), &found.journal) {
                state.journal = Some(adopt_journal(local, tail.name, j.valid_len).await?);
            }
            tracing::info!(
                "adopted the stored tail of {} ({} bytes, {} pieces) an earlier walship stream left",
                tail.name,
                state.stored,
                state.pieces.len()
            );
            return Ok(state);
        }
        // Nothing usable, or it disagrees with what arrived (the server rewrote WAL past the
        // end of its last complete record after a crash), or a journal not to append to:
        // replace the base with what arrived, then remove the old pieces and journal.
        self.reap(true).await;
        let base = self.base.as_mut().ok_or_else(|| {
            StreamError::UploaderGone("the tail's base writer was lost with its task".into())
        })?;
        if untrusted {
            tracing::info!(
                "replacing the journal of {} (an append to it failed) by a base holding the tail received",
                tail.name
            );
        } else if found.base_len.is_some() || !found.pieces.is_empty() || found.journal.is_some() {
            tracing::info!(
                "replacing the stored tail of {} an earlier walship stream left (it disagrees with the WAL received, or holds frames no reader delivers)",
                tail.name
            );
        }
        match base.store(repo, tail).await? {
            TailOutcome::Foreign => state.foreign = true,
            TailOutcome::Stored => {
                remove_old(repo, tail.name, &found).await?;
                state.stored = tail.len();
            }
        }
        Ok(state)
    }

    /// Starts a consolidation of `tail`'s segment when its pieces are many or old enough and
    /// none is running.
    fn maybe_consolidate(&mut self, repo: &Repository, tail: &Tail) {
        if self.consolidating.is_some() || self.base.is_none() {
            return;
        }
        let Some(state) = self.segments.iter().find(|s| s.name == tail.name) else {
            return;
        };
        let due = state.pieces.len() >= PIECES_PER_BASE
            || state.oldest.is_some_and(|t| t.elapsed() >= BASE_EVERY);
        if !due || state.stored != tail.len() {
            return;
        }
        let Some(mut store) = self.base.take() else {
            return;
        };
        let covered = state.pieces.clone();
        let (repo, tail) = (repo.clone(), tail.clone());
        self.consolidating = Some(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = store.store(&repo, &tail).await;
            let removed = match outcome {
                Ok(TailOutcome::Stored) => {
                    remove_pieces(&repo, &covered).await;
                    covered
                }
                _ => Vec::new(),
            };
            tracing::debug!(
                "consolidated {} pieces of {} into {}.partial ({} bytes) in {:?}",
                removed.len(),
                tail.name,
                tail.name,
                tail.len(),
                started.elapsed()
            );
            Consolidated {
                store,
                name: tail.name,
                outcome,
                removed,
            }
        }));
    }

    /// Takes back the base writer from a finished consolidation (waiting for it if `wait`).
    async fn reap(&mut self, wait: bool) {
        let Some(handle) = self.consolidating.take() else {
            return;
        };
        if !wait && !handle.is_finished() {
            self.consolidating = Some(handle);
            return;
        }
        let done = match handle.await {
            Ok(done) => done,
            Err(e) => {
                // A panic in the task: the pieces are all still stored; start a new writer.
                tracing::error!("a tail consolidation failed: {e}");
                self.base = Some(TailStore::default());
                return;
            }
        };
        self.base = Some(done.store);
        let Some(state) = self.segments.iter_mut().find(|s| s.name == done.name) else {
            return;
        };
        match done.outcome {
            Ok(TailOutcome::Stored) => {
                state.pieces.retain(|p| !done.removed.contains(p));
                state.oldest = (!state.pieces.is_empty()).then(Instant::now);
            }
            Ok(TailOutcome::Foreign) => state.foreign = true,
            Err(e) => {
                // The pieces still hold every byte; the next flush tries again.
                tracing::warn!(
                    "storing {}.partial to consolidate its pieces (retrying later): {e}",
                    done.name
                );
            }
        }
    }
}

/// Stores one piece create-only. An object already under the key (an earlier attempt that
/// succeeded although it reported a failure) is accepted when it holds the same bytes.
async fn put_piece(repo: &Repository, piece: TailPiece, bytes: Bytes) -> Result<(), StreamError> {
    let key = layout::tail_piece_key(piece);
    match repo.put_content(&key, bytes.clone(), true).await {
        Ok(_) => Ok(()),
        Err(RepoError::Storage(e)) if e.is_already_exists() => {
            let limit = piece.segment.seg_size().as_u64();
            let existing = repo.get_content(&key, limit).await?;
            if existing == bytes {
                Ok(())
            } else {
                Err(StreamError::Refused(format!(
                    "{key} already exists with other bytes ({} bytes, expected {}): is another walship stream writing this repository's WAL?",
                    existing.len(),
                    bytes.len()
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Appends `bytes` as one frame to `state`'s journal (creating it with this first frame),
/// durably. `false` when the journal is full: the caller stores a piece object instead.
async fn append_frame(
    repo: &Repository,
    local: &LocalStorage,
    state: &mut SegmentTail,
    piece: TailPiece,
    bytes: Bytes,
) -> Result<bool, StreamError> {
    let limit = journal::max_len(piece.segment.seg_size().as_u64());
    if state.journal.as_ref().is_some_and(|(_, len)| *len >= limit) {
        return Ok(false);
    }
    let payload = repo
        .encode_content(&layout::tail_piece_key(piece), bytes)
        .await?;
    let frame = Bytes::from(journal::encode_frame(piece.offset, &payload));
    let size = frame.len() as u64;
    match &mut state.journal {
        Some((_, len)) if *len + size > limit => Ok(false),
        Some((file, len)) => {
            file.write_durable(*len, frame).await?;
            *len += size;
            Ok(true)
        }
        None => {
            let key = layout::tail_journal_key(piece.segment);
            let seg_bytes = piece.segment.seg_size().as_u64();
            let preallocate = journal::preallocation(seg_bytes);
            let file = match local.create_append(&key, frame, preallocate).await {
                Ok(file) => file,
                Err(e) if e.is_already_exists() => {
                    return Err(StreamError::Refused(format!(
                        "{key} appeared while this stream was writing {}'s tail: is another walship stream writing this repository's WAL?",
                        piece.segment
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            state.journal = Some((file, size));
            Ok(true)
        }
    }
}

/// Opens the journal of `segment` an earlier run left for appending after its valid frames,
/// cutting off (durably) the torn remains of a frame that was never acknowledged.
async fn adopt_journal(
    local: &LocalStorage,
    segment: WalFileName,
    valid_len: u64,
) -> Result<(AppendFile, u64), StreamError> {
    let file = local
        .open_append(&layout::tail_journal_key(segment))
        .await?;
    let len = file.size().await?;
    if len > valid_len {
        tracing::info!(
            "{}: cutting off the {} bytes after its last valid frame (zeros, or a frame torn by a crash: never acknowledged)",
            layout::tail_journal_key(segment),
            len - valid_len
        );
        file.truncate_durable(valid_len).await?;
    }
    Ok((file, valid_len))
}

/// After a new base replaced what `found` described: removes the old pieces, and the old
/// journal (which must go, since the next frame would be appended to it).
async fn remove_old(
    repo: &Repository,
    segment: WalFileName,
    found: &StoredPartial,
) -> Result<(), StreamError> {
    remove_pieces(repo, &found.pieces).await;
    let key = layout::tail_journal_key(segment);
    if found.journal.is_some() || repo.exists(&key).await? {
        remove_journal(repo, &key).await?;
    }
    Ok(())
}

/// Removes a segment's journal (absent is fine).
async fn remove_journal(repo: &Repository, key: &ObjectKey) -> Result<(), StreamError> {
    match repo.storage().delete(key).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes `pieces`, logging failures (expire removes leftovers with their segment; a piece
/// left behind never hides bytes, since its content agrees with what covers it).
async fn remove_pieces(repo: &Repository, pieces: &[TailPiece]) {
    if pieces.is_empty() {
        return;
    }
    let keys: Vec<ObjectKey> = pieces.iter().map(|p| layout::tail_piece_key(*p)).collect();
    for batch in keys.chunks(crate::storage::DELETE_BATCH) {
        match repo.storage().delete_many(batch).await {
            Ok(refused) => {
                for r in refused {
                    tracing::warn!("removing tail piece {}: refused: {}", r.key, r.reason);
                }
            }
            Err(e) => tracing::warn!(
                "removing {} tail pieces from {} on: {e}",
                batch.len(),
                batch[0]
            ),
        }
    }
}

/// Bytes `from..to` of the concatenated pieces.
fn range(pieces: &[Bytes], from: u64, to: u64) -> Bytes {
    let (from, to) = (from as usize, to as usize);
    let mut out = BytesMut::with_capacity(to - from);
    let mut at = 0;
    for piece in pieces {
        let end = at + piece.len();
        if end > from && at < to {
            out.extend_from_slice(&piece[from.saturating_sub(at)..(to - at).min(piece.len())]);
        }
        if end >= to {
            break;
        }
        at = end;
    }
    out.freeze()
}
