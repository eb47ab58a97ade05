//! `walship exporter`: the repository's metrics over HTTP for Prometheus; and
//! [`write_textfile`], the same metrics in a file for node_exporter's textfile collector
//! (`--metrics-textfile` on backup and drill).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;
use walship_common::metrics::{self, DrillFigures, RepoSnapshot};
use walship_common::repo::Repository;
use walship_common::stream::endpoint::{self, Exposition};

use crate::context::Context;
use crate::exit;

/// Serve the repository's metrics for Prometheus (GET /metrics, GET /health).
///
/// Reads the repository's catalog every --interval (one listing and the manifests, no WAL
/// read) and serves the last reading: backups, WAL, PITR window, size and the last drill,
/// under the walship_* names. /health answers 503 while the last reading failed. Bounded like
/// the stream endpoint: requests of at most 8 KiB read within 5 s, at most 64 connections.
///
/// Exit codes: 0 stopped by SIGTERM/SIGINT; 2 bad flags or an address that cannot be bound;
/// 3 the repository could not be opened.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to listen on, e.g. 127.0.0.1:9187 or 0.0.0.0:9187.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// How often to read the repository.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = walship_common::config::parse_duration)]
    pub interval: Duration,
}

/// The last reading, served between refreshes.
struct Cached {
    text: RwLock<(String, bool)>,
}

impl Exposition for Cached {
    fn render(&self) -> String {
        self.text.read().map(|t| t.0.clone()).unwrap_or_default()
    }
    fn content_type(&self) -> &'static str {
        metrics::CONTENT_TYPE
    }
    fn is_healthy(&self) -> bool {
        self.text.read().map(|t| t.1).unwrap_or(false)
    }
    fn unhealthy(&self) -> &'static str {
        "the last reading of the repository failed\n"
    }
}

/// Another endpoint's metrics (the stream sidecar's) followed by the repository's, read
/// every [`SIDECAR_INTERVAL`] by [`refresh`].
pub(crate) struct WithRepository<S> {
    inner: Arc<S>,
    repo: RwLock<String>,
}

/// How often the stream sidecar reads the repository's metrics.
pub(crate) const SIDECAR_INTERVAL: Duration = Duration::from_secs(60);

impl<S: Exposition> WithRepository<S> {
    /// `inner`'s metrics, the repository's appended once read.
    pub(crate) fn new(inner: Arc<S>) -> WithRepository<S> {
        WithRepository {
            inner,
            repo: RwLock::new(String::new()),
        }
    }
}

impl<S: Exposition> Exposition for WithRepository<S> {
    fn render(&self) -> String {
        let mut out = self.inner.render();
        if let Ok(repo) = self.repo.read() {
            out.push_str(&repo);
        }
        out
    }
    fn content_type(&self) -> &'static str {
        self.inner.content_type()
    }
    fn is_healthy(&self) -> bool {
        self.inner.is_healthy()
    }
    fn unhealthy(&self) -> &'static str {
        self.inner.unhealthy()
    }
}

/// Reads the repository's metrics into `target` every `interval` until `cancel`; a failed
/// reading keeps the last one (the stream's own health is what `/health` reports).
pub(crate) async fn refresh<S: Exposition>(
    repo: Repository,
    target: Arc<WithRepository<S>>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        match snapshot(&repo).await {
            Ok(s) => {
                if let Ok(mut slot) = target.repo.write() {
                    *slot = metrics::render(&s);
                }
            }
            Err(e) => tracing::warn!("read the repository's metrics: {e}"),
        }
    }
}

/// The repository's metrics now, the last drill included.
pub(crate) async fn snapshot(
    repo: &Repository,
) -> Result<RepoSnapshot, Box<dyn std::error::Error>> {
    let mut snapshot = metrics::collect(repo).await?;
    if let Some(d) = walship_restore::drill::report::newest(repo).await? {
        let end = d.finished_at.unwrap_or(d.started_at);
        snapshot.drill = Some(DrillFigures {
            time: end.timestamp_micros() as f64 / 1e6,
            rto_seconds: d.rto_seconds,
            rpo_seconds: d.rpo_seconds,
            success: d.passed,
        });
    }
    Ok(snapshot)
}

/// Writes the metrics to `path` atomically (node_exporter's textfile collector reads
/// `*.prom` files); a failure is reported and returns false.
pub(crate) async fn write_textfile(ctx: &Context, repo: &Repository, path: &Path) -> bool {
    let text = match snapshot(repo).await {
        Ok(s) => metrics::render(&s),
        Err(e) => {
            eprintln!(
                "walship: error: read the metrics for {}: {e}",
                path.display()
            );
            return false;
        }
    };
    match walship_common::fsutil::write_file_atomic(path, text.as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            ctx.fail(exit::FAILED, &e);
            false
        }
    }
}

/// Runs `walship exporter`.
pub fn run(ctx: Context, args: ExporterArgs) -> u8 {
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let listener = match endpoint::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("walship exporter: error: listen on {}: {e}", args.listen);
                return exit::USAGE;
            }
        };
        let cached = Arc::new(Cached {
            text: RwLock::new((String::new(), false)),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(endpoint::serve(listener, cached.clone(), cancel.clone()));
        let mut tick = tokio::time::interval(args.interval);
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return ctx.fail(exit::FAILED, &e),
            };
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let reading = snapshot(&repo).await;
                    let next = match reading {
                        Ok(s) => (metrics::render(&s), true),
                        Err(e) => {
                            tracing::warn!("walship exporter: read the repository: {e}");
                            let old = cached.render();
                            (old, false)
                        }
                    };
                    if let Ok(mut slot) = cached.text.write() {
                        *slot = next;
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        cancel.cancel();
        exit::SUCCESS
    })
}
