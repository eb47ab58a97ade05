//! `walship backup`: a physical base backup over the replication protocol into the
//! repository, with a progress line on a terminal and a summary (or `--json`) at the end.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use walship_common::backup::incremental::{self, ChainLink, IncrementalChoice};
use walship_common::backup::{self, BackupOptions, Progress};
use walship_common::catalog::BackupId;
use walship_common::pgconn::{ConnParams, ReplicationClient};

use super::show;
use crate::context::Context;
use crate::exit;

/// Take a physical base backup over the replication protocol.
///
/// Connects like libpq (PGHOST, PGPORT, PGUSER, PGPASSWORD, ~/.pgpass, or --dbname with a
/// connection string) with a role that has REPLICATION, runs BASE_BACKUP, and streams the
/// files into compressed bundles uploaded in parallel. The manifest is written last, once
/// every WAL segment from the backup's start to its stop is in the repository (Postgres must
/// archive with `walship archive`); until then the backup does not exist for `list` or
/// `restore`. An interrupted backup leaves objects that `walship list --incomplete` shows
/// and the next successful backup (or `walship list --incomplete --remove`) removes.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Write the repository's metrics to this file afterwards, atomically (for
    /// node_exporter's textfile collector, e.g. /var/lib/node_exporter/walship.prom).
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<std::path::PathBuf>,
    /// Connection string (`host=... user=...` or `postgresql://...`); unset parts come
    /// from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE...
    #[arg(
        short = 'd',
        long = "dbname",
        value_name = "CONNINFO",
        default_value = ""
    )]
    pub conn: String,
    /// Checkpoint before the backup: `fast` (at once) or `spread` (the server's pace).
    #[arg(long, value_enum, default_value_t = CheckpointArg::Spread)]
    pub checkpoint: CheckpointArg,
    /// Backup label.
    #[arg(long, default_value = "walship backup")]
    pub label: String,
    /// Server-side transfer limit in kB/s (32..=1048576).
    #[arg(long, value_name = "KB_PER_S")]
    pub max_rate: Option<u32>,
    /// How long to wait for the backup's WAL to reach the repository before failing.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = walship_common::config::parse_duration)]
    pub wal_timeout: Duration,
    /// Raw bytes per bundle, e.g. 64MiB [config: backup.bundle_size]
    #[arg(long, value_name = "SIZE")]
    pub bundle_size: Option<String>,
    /// Bundle uploads in flight at once [config: backup.parallel]
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Keep incomplete leftovers of earlier backups instead of removing them on success.
    #[arg(long)]
    pub keep_incomplete: bool,
    /// Print the summary as JSON (the manifest without its file lists).
    #[arg(long)]
    pub json: bool,
    /// After a successful backup, run `walship expire` with the [retention] policy
    /// [config: backup.expire]
    #[arg(long)]
    pub expire: bool,
    /// Take a block-level incremental backup (PostgreSQL 17+, `summarize_wal = on`) on top
    /// of the newest complete backup, or of `--from`. Past `backup.max_chain` incrementals,
    /// or with no backup yet, a full backup is taken instead (and the summary says so).
    #[arg(long)]
    pub incremental: bool,
    /// The parent of the incremental backup (a backup id; default: the newest complete one).
    #[arg(long, value_name = "ID", requires = "incremental")]
    pub from: Option<String>,
    /// Most incrementals on top of one full [config: backup.max_chain, default 6]
    #[arg(long, value_name = "N")]
    pub max_chain: Option<u32>,
}

/// `--checkpoint`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CheckpointArg {
    /// Request an immediate checkpoint.
    Fast,
    /// Let the checkpoint run at the server's configured pace.
    Spread,
}

/// Runs `walship backup`.
pub fn run(ctx: Context, args: BackupArgs) -> u8 {
    if ctx.config.backup.expire && !ctx.config.retention.is_set() {
        eprintln!(
            "walship backup: backup.expire is set but no retention policy is: set at least one of {}; nothing was done",
            walship_common::retention::Policy::KEYS
        );
        return exit::USAGE;
    }
    let params = match ConnParams::parse(&args.conn) {
        Ok(p) => p.with_fallback_application_name("walship"),
        Err(e) => return ctx.fail(exit::USAGE, &e),
    };
    let mut options = BackupOptions {
        label: args.label.clone(),
        bundle_size: ctx.config.backup.bundle_size.0,
        parallel: ctx.config.backup.parallel,
        codec: ctx.config.compression,
        wal_timeout: args.wal_timeout,
        remove_incomplete: !args.keep_incomplete,
        chain: None,
    };
    let from = match args.from.as_deref().map(str::parse::<BackupId>).transpose() {
        Ok(from) => from,
        Err(e) => {
            eprintln!("walship backup: --from: {e}");
            return exit::USAGE;
        }
    };
    if let Some(rate) = args.max_rate
        && !(32..=1_048_576).contains(&rate)
    {
        eprintln!(
            "walship backup: --max-rate {rate} is outside the server's range 32..=1048576 kB/s"
        );
        return exit::USAGE;
    }
    let mut bb = backup::base_backup_options(
        &args.label,
        matches!(args.checkpoint, CheckpointArg::Fast),
        args.max_rate,
    );
    ctx.block_on_current_thread(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let mut figures = serde_json::Map::new();
        let code = async {
            let mut client = match ReplicationClient::connect(&params).await {
                Ok(client) => client,
                Err(e) => return ctx.fail(exit::FAILED, &e),
            };
            let id = match backup::choose_id(&repo).await {
                Ok(id) => id,
                Err(e) => return ctx.fail(exit::FAILED, &e),
            };
            let mut full_instead = None;
            if args.incremental {
                match prepare_incremental(&ctx, &repo, &mut client, from).await {
                    Ok(IncrementalChoice::Incremental { parent }) => {
                        options.chain = Some(ChainLink {
                            parent: parent.id,
                            depth: parent.chain_depth + 1,
                        });
                        bb.incremental = true;
                    }
                    Ok(IncrementalChoice::Full { reason }) => {
                        eprintln!("walship backup: taking a full backup instead of an incremental: {reason}");
                        full_instead = Some(reason);
                    }
                    Err(e) if e.is_refusal() => return ctx.fail(exit::REFUSED, &e),
                    Err(e) => return ctx.fail(exit::FAILED, &e),
                }
            }
            let progress = Arc::new(Progress::default());
            let ticker = std::io::stderr()
                .is_terminal()
                .then(|| tokio::spawn(show_progress(progress.clone())));
            let result = async {
                let (server, source) = backup::start_base_backup(&mut client, &bb).await?;
                backup::take_backup(&repo, id, source, server, &options, progress.clone()).await
            }
            .await;
            if let Some(ticker) = ticker {
                ticker.abort();
                eprintln!();
            }
            let result = match options.chain {
                Some(_) => result.map_err(incremental::explain_refusal),
                None => result,
            };
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(e) if e.is_refusal() => return ctx.fail(exit::REFUSED, &e),
                Err(e) => return ctx.fail(exit::FAILED, &e),
            };
            let _ = client.close().await;
            let m = &outcome.manifest;
            figures = backup_figures(m);
            let expired = if ctx.config.backup.expire {
                let policy = &ctx.config.retention;
                match super::expire::expire(&repo, policy, chrono::Utc::now(), false).await {
                    Ok((inventory, plan, report)) => {
                        // Under Object Lock, what the policy now keeps longer is locked longer.
                        let locked = super::expire::lock_extensions(
                            &repo, &inventory, &plan, policy, false,
                        );
                        if let Err(e) = locked.await {
                            eprintln!(
                                "walship backup: backup {} is complete, but extending object locks failed: {e}",
                                m.id
                            );
                            return exit::FAILED;
                        }
                        report
                    }
                    Err(e) => {
                        eprintln!(
                            "walship backup: backup {} is complete, but expire failed: {e}",
                            m.id
                        );
                        return exit::FAILED;
                    }
                }
            } else {
                None
            };
            if let Some(r) = &expired {
                eprintln!(
                    "expire: removed {} backups and {} WAL objects ({} bytes); {} refused by the storage",
                    r.backups_removed.len(),
                    r.wal_objects_removed,
                    r.bytes_removed,
                    r.refused.len()
                );
            }
            if args.json {
                let mut summary = show::summary_json(m);
                if let Some(obj) = summary.as_object_mut() {
                    if let Some(reason) = &full_instead {
                        obj.insert("full_instead_of_incremental".into(), reason.clone().into());
                    }
                    obj.insert(
                        "removed_incomplete".into(),
                        outcome.removed_incomplete.len().into(),
                    );
                    if let Some(r) = &expired {
                        obj.insert("expired".into(), serde_json::to_value(r).unwrap_or_default());
                    }
                }
                println!("{summary}");
            } else {
                let kind = match m.parent {
                    Some(parent) => format!(" incremental of {parent} (chain depth {})", m.chain_depth),
                    None => String::new(),
                };
                println!(
                    "backup {}{kind}: {} ({} stored) in {}, LSN {} to {}, timeline {}",
                    m.id,
                    show::size(m.bytes_raw),
                    show::size(m.bytes_stored),
                    show::duration_ms(m.duration_ms),
                    m.start_lsn,
                    m.stop_lsn,
                    m.stop_timeline
                );
            }
            for removed in &outcome.removed_incomplete {
                tracing::info!("removed incomplete backup {}", removed.id);
            }
            exit::SUCCESS
        }
        .await;
        super::audit::record(&ctx, &repo, "backup", code, figures).await;
        // The metrics are written whatever the outcome (a failed drill is a metric too); a
        // failure to write them is reported and leaves the exit code alone.
        if let Some(path) = &args.metrics_textfile {
            super::exporter::write_textfile(&ctx, &repo, path).await;
        }
        code
    })
}

/// `--incremental`: checks the server (17+, `summarize_wal`), chooses the parent and
/// uploads its `backup_manifest` on `client`, before anything is stored.
async fn prepare_incremental(
    ctx: &Context,
    repo: &walship_common::repo::Repository,
    client: &mut ReplicationClient,
    from: Option<BackupId>,
) -> Result<IncrementalChoice, backup::BackupError> {
    incremental::check_server(client).await?;
    let system = client
        .identify_system()
        .await
        .map_err(|e| backup::BackupError::Connection(Box::new(e)))?;
    let catalog = backup::read_catalog(repo).await?;
    let choice = incremental::choose_parent(
        &catalog,
        from,
        system.systemid,
        system.timeline,
        ctx.config.backup.max_chain,
    )?;
    if let IncrementalChoice::Incremental { parent } = &choice {
        incremental::upload_parent_manifest(client, parent).await?;
    }
    Ok(choice)
}

/// What the audit record of a backup says it made.
fn backup_figures(
    m: &walship_common::catalog::BackupManifest,
) -> serde_json::Map<String, serde_json::Value> {
    let mut f = serde_json::Map::new();
    f.insert("backup".into(), m.id.to_string().into());
    if let Some(parent) = m.parent {
        f.insert("parent".into(), parent.to_string().into());
    }
    f.insert("bytes_raw".into(), m.bytes_raw.into());
    f.insert("bytes_stored".into(), m.bytes_stored.into());
    f.insert("duration_ms".into(), m.duration_ms.into());
    f.insert("start_lsn".into(), m.start_lsn.to_string().into());
    f.insert("stop_lsn".into(), m.stop_lsn.to_string().into());
    f
}

/// Redraws one progress line on stderr every second: bytes, rate, ETA.
async fn show_progress(progress: Arc<Progress>) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let p = progress.snapshot();
        let line = show::progress_line(p.raw, p.estimated_total, started.elapsed());
        eprint!("\r{line}          ");
    }
}
