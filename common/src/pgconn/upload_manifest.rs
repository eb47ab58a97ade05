//! `UPLOAD_MANIFEST` (PostgreSQL 17+): the first half of an incremental backup. The client
//! sends the command, the server answers CopyInResponse, the client streams the parent
//! backup's `backup_manifest` as CopyData and ends with CopyDone; the server parses it and
//! keeps its file list and WAL ranges for a `BASE_BACKUP (INCREMENTAL)` later in the **same
//! session** (walsender.c `UploadManifest`, basebackup_incremental.c).

use bytes::Bytes;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::client::ReplicationClient;
use super::error::{PgConnError, ServerError};
use super::wire::Backend;

/// CopyData message size for the upload (the server parses in 128 KiB chunks anyway).
const CHUNK: usize = 64 * 1024;

impl ReplicationClient {
    /// Uploads `manifest` (a parent backup's `backup_manifest`, verbatim) for the next
    /// `BASE_BACKUP (INCREMENTAL)` on this connection. A server refusal (a manifest of another
    /// cluster, no WAL ranges) is returned as [`PgConnError::Server`] with its message and hint.
    pub async fn upload_manifest(&mut self, manifest: &[u8]) -> Result<(), PgConnError> {
        self.require_major("UPLOAD_MANIFEST", 17)?;
        self.send_query("UPLOAD_MANIFEST").await?;
        // The server answers CopyInResponse, or an error (then ReadyForQuery).
        match self.recv().await? {
            Backend::Message(Message::CopyInResponse(_)) => {}
            Backend::Message(Message::ErrorResponse(body)) => {
                let error = ServerError::from_fields(body.fields());
                return Err(self.fail_after_error(error).await);
            }
            other => return Err(self.unexpected(&other, "UPLOAD_MANIFEST")),
        }
        for chunk in manifest.chunks(CHUNK) {
            frontend::CopyData::new(Bytes::copy_from_slice(chunk))
                .map_err(|e| self.io_error(e))?
                .write(&mut self.wbuf);
            self.flush().await?;
        }
        frontend::copy_done(&mut self.wbuf);
        self.flush().await?;
        // Then CommandComplete (and possibly an empty result) up to ReadyForQuery; an error
        // (the manifest refused) comes before ReadyForQuery.
        let mut error: Option<ServerError> = None;
        loop {
            match self.recv().await? {
                Backend::Message(Message::ErrorResponse(body)) => {
                    let e = ServerError::from_fields(body.fields());
                    if e.severity == "FATAL" || e.severity == "PANIC" {
                        return Err(self.server_error(e));
                    }
                    error = Some(e);
                }
                Backend::Message(Message::ReadyForQuery(_)) => break,
                Backend::Message(
                    Message::CommandComplete(_)
                    | Message::RowDescription(_)
                    | Message::DataRow(_)
                    | Message::EmptyQueryResponse,
                ) => {}
                other => return Err(self.unexpected(&other, "UPLOAD_MANIFEST")),
            }
        }
        match error {
            Some(e) => Err(self.server_error(e)),
            None => Ok(()),
        }
    }
}
