//! `walship backup`: physical base backups into the repository, and reading them back.
//!
//! The pipeline, each stage its own file:
//! - [`event`]: [`BackupEvent`], the one input: a stream of typed events (start, tablespaces,
//!   archive start/data/end, progress, manifest chunks, end) from any [`BackupSource`];
//!   [`source`] maps the replication client's `BASE_BACKUP` stream
//!   ([`crate::pgconn::BaseBackupStream`]: both syntaxes, both COPY framings) onto it.
//! - [`tar`] walks each archive as it arrives, parsed by [`tar_stream`] (our own ustar
//!   parser: file data stays in the network's buffers); [`entry_path`] refuses every path
//!   that could leave the data directory (absolute, `..`, links other than tablespaces').
//! - [`bundler`] packs files back to back into compressed bundles of `backup.bundle_size`;
//!   [`upload`] streams each bundle to storage while it is written, `backup.parallel` at a
//!   time, with bounded memory.
//! - [`incremental`] chooses the parent of an incremental (PG17+) and refuses what cannot
//!   be one, before anything is stored.
//! - [`wait_for_wal`] waits (bounded) until the WAL from start to stop LSN is archived.
//! - [`run`] drives it all and writes the manifest last: a backup without a manifest does
//!   not exist ([`listing`] reports its objects as incomplete and removes them).
//!
//! Turning a backup back into files is the restore crate's (`walship_restore::materialise`).

pub mod bundler;
pub mod collect;
pub mod compressor;
pub mod entry_path;
pub mod error;
pub mod event;
pub mod event_batch;
pub mod incremental;
pub mod listing;
pub mod progress;
pub mod run;
pub mod source;
pub mod tar;
pub mod tar_stream;
pub mod upload;
pub mod wait_for_wal;

pub use bundler::bundle_name;
pub use error::BackupError;
pub use event::{BackupEvent, BackupSource, EventList, ServerInfo};
pub use listing::{
    Catalog, IncompleteBackup, UnreadableBackup, find_backup, read_catalog, read_manifest,
    remove_incomplete,
};
pub use progress::{Progress, ProgressSnapshot};
pub use run::{BackupOptions, BackupOutcome, choose_id, take_backup};
pub use source::{ReplicationSource, base_backup_options, start_base_backup};
