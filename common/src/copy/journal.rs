//! Copying a stream tail journal (`<segment>.partial.journal`): its valid frames become piece
//! objects `<segment>.partial.<offset>` on the target, each created create-only with the
//! frame's payload, which is byte for byte what the piece object would hold (sealed for the
//! piece's key in an encrypted repository). A journal is appended to in place, so copying it
//! as one object would either conflict with an earlier copy or leave the target's copy stuck
//! short; pieces let each later copy add what the journal gained since. A torn last frame is
//! not copied (it was never acknowledged); readers of the target assemble the pieces under
//! the usual rule (`crate::repo::partial`).

use bytes::Bytes;

use super::CopyError;
use super::transfer::Outcome;
use crate::pg::WalSegSize;
use crate::repo::journal;
use crate::repo::layout::{self, TailPiece};
use crate::storage::{AnyStorage, ObjectMeta, PutOptions, Storage};

/// Copies the valid frames of the journal `meta` as piece objects; one outcome per frame.
pub(crate) async fn copy_journal(
    source: &AnyStorage,
    target: &AnyStorage,
    meta: &ObjectMeta,
    seg_size: WalSegSize,
) -> Result<Vec<Outcome>, CopyError> {
    let Some(segment) = layout::tail_journal_of(&meta.key, seg_size) else {
        return Ok(Vec::new());
    };
    let limit = journal::max_len(seg_size.as_u64());
    let bytes = match source.get_bytes(&meta.key, limit).await {
        Ok(bytes) => bytes,
        // Removed meanwhile: its complete segment is stored (and copied with the WAL).
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(CopyError::source(&meta.key)(e)),
    };
    let mut outcomes = Vec::new();
    for frame in journal::parse(&bytes).frames {
        if u64::from(frame.offset) >= seg_size.as_u64() {
            continue;
        }
        let piece = TailPiece {
            segment,
            offset: frame.offset,
        };
        outcomes.push(put_piece(target, piece, frame.payload).await?);
    }
    Ok(outcomes)
}

/// Creates one piece on the target; one already there with the same bytes is fine.
async fn put_piece(
    target: &AnyStorage,
    piece: TailPiece,
    payload: Bytes,
) -> Result<Outcome, CopyError> {
    let key = layout::tail_piece_key(piece);
    let opts = PutOptions {
        if_absent: true,
        crc32c: Some(crate::crc::crc32c(&payload)),
        lock: None,
    };
    let size = payload.len() as u64;
    match target.put(&key, payload.clone(), opts).await {
        Ok(_) => Ok(Outcome::Copied(size)),
        Err(e) if e.is_already_exists() => {
            let existing = target
                .get_bytes(&key, size)
                .await
                .map_err(CopyError::target(&key))?;
            if existing == payload {
                Ok(Outcome::Present)
            } else {
                Err(CopyError::Conflict {
                    key: key.to_string(),
                    target: target.location().to_string(),
                })
            }
        }
        Err(e) => Err(CopyError::target(&key)(e)),
    }
}
