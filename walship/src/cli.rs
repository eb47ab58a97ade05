//! The command line: global options and one subcommand per user-facing command.
//!
//! Parsing only; each subcommand's work lives in `cmd/<name>.rs` over the libraries.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// PostgreSQL WAL archiving and point-in-time recovery.
///
/// Postgres setup:
///   archive_command = 'walship archive %p'
///   restore_command = 'walship fetch %f %p'
///
/// The repository is `s3://bucket/prefix` or `file:///absolute/path`, set with --repo,
/// WALSHIP_REPO, or `repo = "..."` in the config file (/etc/walship/walship.toml by default).
#[derive(Debug, Parser)]
#[command(name = "walship", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository URL: s3://bucket/prefix or file:///absolute/path [env: WALSHIP_REPO]
    #[arg(long, global = true, value_name = "URL")]
    pub repo: Option<String>,
    /// Configuration file [env: WALSHIP_CONFIG; default: /etc/walship/walship.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The walship commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive one WAL file (archive_command = 'walship archive %p').
    Archive(crate::cmd::archive::ArchiveArgs),
    /// Deliver one archived WAL file to Postgres (restore_command = 'walship fetch %f %p').
    ///
    /// The file is decoded, its crc32c and page headers verified, and written through a
    /// temporary file and a rename. While a segment is delivered, the next ones are fetched
    /// ahead into pg_wal/walship/fetch by a background worker.
    ///
    /// Exit codes (what Postgres needs to never end recovery early on a network error):
    ///   0    delivered
    ///   1    the repository definitively does not have the file
    ///   200  storage failing after retries, a corrupt object, a repository without
    ///        walship.json, or a configuration error: Postgres stops recovery
    ///
    /// A lone `<segment>.partial` is "absent" unless --allow-partial.
    #[command(verbatim_doc_comment)]
    Fetch(crate::cmd::fetch::FetchArgs),
    /// Stream WAL over the replication protocol into the repository (sidecar).
    ///
    /// Creates its physical slot if missing, starts where the slot and the repository say
    /// (never leaving a gap), stores every complete segment exactly as `walship archive`
    /// would (both may run against one repository), uploads the tail of the current segment
    /// as `<segment>.partial` every --partial-interval, and reports as `flush` only WAL that
    /// is durably in the repository. Follows timeline switches (the .history first) and
    /// reconnects with backoff. SIGTERM: stores and reports what was received, exits 0.
    ///
    /// Exit codes:
    ///   0    stopped by SIGTERM/SIGINT after storing everything received
    ///   2    bad flags, connection string or --metrics-addr
    ///   3    the repository failed, or the connection cannot work (authentication,
    ///        unsupported server); lost connections are retried, not fatal
    ///   4    refused: different content already archived, another cluster's repository,
    ///        or WAL the repository needs is gone from the server (a gap)
    #[command(verbatim_doc_comment)]
    Stream(crate::cmd::stream::StreamArgs),
    /// Take a physical base backup over the replication protocol.
    Backup(crate::cmd::backup::BackupArgs),
    /// List the base backups in the repository (--incomplete: leftovers of interrupted ones).
    List(crate::cmd::list::ListArgs),
    /// Show one base backup (`latest` or its id).
    Info(crate::cmd::info::InfoArgs),
    /// Restore a data directory to a point in time.
    Restore(crate::cmd::restore::RestoreArgs),
    /// Verify every object in the repository, WAL continuity and freshness.
    ///
    /// Every object decodes and its checksums match; every backup's files are in its bundles
    /// at the stated offset, size and crc32c and agree with Postgres's backup_manifest; its WAL
    /// from start to stop is present; WAL is continuous on every timeline from the oldest
    /// backup on (gaps named as ranges); every timeline's .history and its parents' exist.
    /// Stale backups or WAL, incomplete backups and orphaned objects are warnings.
    ///
    /// Exit codes:
    ///   0    sound (warnings may be printed)
    ///   1    --backup names no backup
    ///   5    a problem was found (each is printed, or listed in --json)
    ///   200  the repository could not be read (storage failing, no walship.json)
    #[command(verbatim_doc_comment)]
    Verify(crate::cmd::verify::VerifyArgs),
    /// Remove backups and WAL no retention rule keeps ([retention] in the config).
    ///
    /// The policy: pitr_window (every moment of the last DURATION stays restorable, on every
    /// timeline), daily, weekly, monthly, yearly (the newest backup of each of the N most
    /// recent days, ISO weeks, months, years that have one), min_backups (the newest N are
    /// always kept; default 1), timezone (UTC, +HH:MM or a zone name). Pinned backups are
    /// always kept. Without a policy nothing is removed (exit 2).
    ///
    /// A backup is removed manifest first (it stops existing at once), then its bundles; WAL
    /// last, in batches. Objects the storage refuses to delete are reported and skipped. Safe
    /// to interrupt: the next run finishes the work.
    ///
    /// Exit codes: 0 done (refused objects are reported, not a failure), 2 no policy or bad
    /// flags, 3 the repository or storage failed.
    #[command(verbatim_doc_comment)]
    Expire(crate::cmd::expire::ExpireArgs),
    /// Pin a backup: no retention rule removes it nor the WAL it needs (exit 1: no such backup).
    Pin(crate::cmd::pin::PinArgs),
    /// Unpin a backup: the retention policy decides again (exit 1: no such backup).
    Unpin(crate::cmd::pin::UnpinArgs),
    /// Check configuration, repository and Postgres settings. [not built yet]
    Check(NotBuiltArgs),
}

/// Arguments of a command that is not built yet: accepted and ignored, so that `--help`
/// works and any invocation reaches the plain "not built yet" refusal.
#[derive(Debug, Args)]
pub struct NotBuiltArgs {
    /// Ignored: this command is not built yet.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}
