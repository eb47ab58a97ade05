//! `walship stream`: the replication-protocol receiver that runs beside Postgres.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;
use walship_common::pgconn::ConnParams;
use walship_common::stream::{self, StreamError, StreamMetrics, StreamOptions, endpoint};

use crate::context::Context;
use crate::exit;

/// Arguments of `walship stream` (the command's help text is in `cli.rs`).
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Connection string (`host=... user=...` or `postgresql://...`); unset parts come from
    /// PGHOST, PGPORT, PGUSER, PGPASSWORD / ~/.pgpass, as with libpq
    #[arg(
        short = 'd',
        long = "dbname",
        value_name = "CONNINFO",
        default_value = ""
    )]
    pub conninfo: String,
    /// Physical replication slot, created if missing [config: stream.slot; default: walship]
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,
    /// How often the tail of the current segment is uploaded as `<segment>.partial`
    /// [config: stream.partial_interval; default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub partial_interval: Option<String>,
    /// application_name of the connection: the name to list in synchronous_standby_names
    /// (a connection string's application_name or PGAPPNAME wins)
    /// [config: stream.application_name; default: walship]
    #[arg(long, value_name = "NAME")]
    pub application_name: Option<String>,
    /// Report WAL as flushed as soon as it is durably stored, uploading after every message
    /// (uploads in flight group commits), so that the stream can be a synchronous standby
    #[arg(long)]
    pub synchronous: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics and a health check on /health
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// After SIGTERM/SIGINT, how long to keep trying to store what was received before
    /// giving up (exit 3; nothing unstored was reported to the server)
    /// [config: stream.stop_timeout; default: 20s]
    #[arg(long, value_name = "DURATION")]
    pub stop_timeout: Option<String>,
}

/// Runs `walship stream` until SIGTERM/SIGINT (exit 0 after storing and reporting what was
/// received) or an error that reconnecting cannot fix.
pub fn run(ctx: Context, args: StreamArgs) -> u8 {
    let cfg = &ctx.config.stream;
    let conn = match ConnParams::parse(&args.conninfo) {
        Ok(conn) => conn.with_fallback_application_name(&cfg.application_name),
        Err(e) => return ctx.fail(exit::USAGE, &e),
    };
    let mut opts = StreamOptions::new(conn, cfg.slot.clone());
    opts.partial_interval = cfg.partial_interval;
    opts.stop_timeout = cfg.stop_timeout;
    opts.synchronous = args.synchronous;
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let metrics = Arc::new(StreamMetrics::default());
        let cancel = CancellationToken::new();
        if let Some(addr) = args.metrics_addr {
            match endpoint::bind(addr).await {
                Ok(listener) => {
                    // The sidecar's endpoint serves the repository's metrics too.
                    let served = Arc::new(super::exporter::WithRepository::new(metrics.clone()));
                    tokio::spawn(super::exporter::refresh(
                        repo.clone(),
                        served.clone(),
                        super::exporter::SIDECAR_INTERVAL,
                        cancel.clone(),
                    ));
                    tokio::spawn(endpoint::serve(listener, served, cancel.clone()));
                }
                Err(e) => {
                    eprintln!("walship stream: error: listen on {addr} for --metrics-addr: {e}");
                    return exit::USAGE;
                }
            }
        }
        if let Err(e) = cancel_on_signals(cancel.clone(), opts.stop_timeout) {
            eprintln!("walship stream: error: install signal handlers: {e}");
            return exit::FAILED;
        }
        let result = stream::run(&repo, &opts, &metrics, &cancel).await;
        cancel.cancel();
        match result {
            Ok(flushed) => {
                tracing::info!("stopped; WAL up to {flushed} is in {}", repo.location());
                exit::SUCCESS
            }
            Err(e) if is_refusal(&e) => ctx.fail(exit::REFUSED, &e),
            Err(e) => ctx.fail(exit::FAILED, &e),
        }
    })
}

fn is_refusal(e: &StreamError) -> bool {
    match e {
        StreamError::Archive(a) => a.is_refusal(),
        StreamError::Repo(walship_common::repo::RepoError::OtherCluster { .. })
        | StreamError::WalRemoved { .. }
        | StreamError::Refused(_) => true,
        _ => false,
    }
}

/// Cancels `cancel` on SIGTERM or SIGINT; a second signal exits at once with
/// [`exit::INTERRUPTED`], storing nothing more (the flush reported to the server never
/// passed what is stored, so the slot keeps the rest).
fn cancel_on_signals(
    cancel: CancellationToken,
    stop_timeout: std::time::Duration,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!(
            "signal received: storing what was received (for at most {}), then stopping; \
             a second signal stops at once",
            humantime::format_duration(stop_timeout)
        );
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!(
            "walship stream: second signal: exiting now; WAL not yet stored was never \
             reported to the server, whose slot keeps it for the next start"
        );
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    Ok(())
}
