//! Everything that knows PostgreSQL's on-disk and on-wire formats lives here, under
//! Postgres's own names, each item citing the C source it mirrors. Nothing outside `pg`
//! parses Postgres bytes.
//!
//! - [`timeline`] — `TimelineId`.
//! - [`segment`] — `WalSegSize`, `SegNo`, LSN <-> (segment, offset).
//! - [`file_name`] — `WalFileName` and the `ArchiveFileName` classifier.
//! - [`history`] — timeline history files and the lookups restore needs.
//! - [`incremental_file`] — the `INCREMENTAL.*` files of a PG17+ incremental backup.
//! - [`backup_manifest`] — rewriting Postgres's `backup_manifest` for a reconstructed directory.
//! - [`version`] — the supported majors and their `XLOG_PAGE_MAGIC`.
//! - [`page_header`] — `XLogPageHeaderData` / `XLogLongPageHeaderData`.
//! - [`segment_check`] — `validate_segment` (or `SegmentValidator`, piece by piece), whether
//!   bytes are the segment they claim to be.
//! - [`wal_record`] — one `XLogRecord`: header, CRC, commit/abort/restore-point decoding.
//! - [`wal_reader`] — `WalReader`, records in order across pages and segments.

pub mod backup_manifest;
pub mod file_name;
pub mod history;
pub mod incremental_file;
pub mod page_header;
pub mod segment;
pub mod segment_check;
pub mod timeline;
pub mod version;
pub mod wal_reader;
pub mod wal_record;

pub use file_name::{ArchiveFileName, FileNameError, NameProblem, WalFileName};
pub use history::{HistoryEntry, HistoryError, TimelineHistory, TimelineSpan};
pub use segment::{SegNo, SegRange, WalSegSize, WalSegSizeError};
pub use segment_check::{
    SegmentError, SegmentHeaderInfo, SegmentReport, SegmentValidator, WalEnd, validate_segment,
};
pub use timeline::TimelineId;
pub use version::PgVersion;
pub use wal_reader::{EndReason, ReadEnd, WalReader, WalRecord};
pub use wal_record::{PgTimestamp, RecordKind};
