//! The Postgres replication-protocol client that `walship backup` (BASE_BACKUP) and
//! `walship stream` (START_REPLICATION) stand on.
//!
//! Upstream tokio-postgres cannot open a physical replication connection (no
//! `replication=true`, no COPY BOTH, its parser rejects `'W'`), so this module speaks the
//! protocol itself on postgres-protocol's message codecs and SCRAM implementation, over tokio
//! TCP or unix sockets, with rustls for TLS. Plain SQL stays with tokio-postgres.
//!
//! - [`conninfo`]: [`ConnParams`] from a libpq connection string / URI, `PG*` variables and
//!   defaults; [`Password`] never prints. [`pgpass`]: the password file.
//! - [`ReplicationClient::connect`]: socket, TLS per [`SslMode`], startup with
//!   `replication=true`, authentication (trust, password, md5, SCRAM-SHA-256[-PLUS]).
//! - Commands: [`ReplicationClient::simple_query`], `identify_system`, `show`,
//!   `timeline_history`, `read_replication_slot`, `create_physical_replication_slot`.
//! - [`ReplicationClient::copy_out`]: [`CopyOutStream`], the raw COPY OUT events; on it,
//!   [`ReplicationClient::base_backup`]: [`BaseBackupStream`] of typed [`BackupEvent`]s, the
//!   same for the PG13-14 per-tablespace streams and the PG15+ multiplexed one.
//! - [`ReplicationClient::start_replication`]: [`WalStream`] of [`XLogData`] and keepalives,
//!   [`StandbyStatusUpdate`]s back, and the end-of-timeline handshake ([`NextTimeline`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use walship_common::Lsn;
//! use walship_common::pgconn::*;
//!
//! # async fn demo() -> Result<(), PgConnError> {
//! let params = ConnParams::parse("host=db user=walship")?.with_fallback_application_name("walship");
//! let mut client = ReplicationClient::connect(&params).await?;
//! let system = client.identify_system().await?;
//! let start = Lsn(system.xlogpos.0 - system.xlogpos.0 % client.wal_segment_size().await?);
//! if let StartReplication::Streaming(mut wal) =
//!     client.start_replication(Some("walship"), start, Some(system.timeline)).await?
//! {
//!     let mut written = start;
//!     loop {
//!         match wal.next_event(Duration::from_secs(10)).await? {
//!             WalEvent::Message(ReplicationMessage::XLogData(x)) => written = x.data_end(),
//!             WalEvent::Message(ReplicationMessage::Keepalive(k)) if !k.reply_requested => continue,
//!             WalEvent::ServerDone => break,
//!             _ => {}
//!         }
//!         let status = StandbyStatusUpdate { write: written, flush: written, apply: Lsn::INVALID, reply_requested: false };
//!         wal.send_status(&status).await?;
//!     }
//!     let _next_timeline = wal.finish().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Every wait is bounded (connect timeout, read timeout, or a caller's idle limit), and every
//! error names the server (`host:port` or socket path); server errors keep severity, SQLSTATE,
//! message, detail and hint ([`ServerError`]).

mod auth;
mod basebackup;
mod client;
mod connect;
pub mod conninfo;
mod conninfo_uri;
mod copy;
mod error;
pub mod pgpass;
mod query;
mod replication;
mod stream_messages;
mod tls;
mod upload_manifest;
mod walstream;
mod wire;

pub use basebackup::{BackupEvent, BaseBackupOptions, BaseBackupStream, TablespaceInfo};
pub use client::ReplicationClient;
pub use conninfo::{
    ChannelBindingMode, ConnInfoError, ConnParams, Host, Password, SslMode, Target,
};
pub use copy::{CopyOutEvent, CopyOutStream};
pub use error::{PgConnError, ServerError};
pub use query::ResultSet;
pub use replication::{
    CreatedSlot, SlotInfo, SystemIdentity, TimelineHistoryFile, parse_size, validate_slot_name,
};
pub use stream_messages::{
    PrimaryKeepalive, ReplicationMessage, StandbyStatusUpdate, StreamMessageError, XLogData,
    postgres_now,
};
pub use walstream::{NextTimeline, StartReplication, WalEvent, WalStream};
