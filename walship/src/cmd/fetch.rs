//! `walship fetch <name> <dest>`: Postgres's `restore_command`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;
use walship_common::fetch::prefetch::{self, PrefetchPlan};
use walship_common::fetch::{self, FetchOptions};
use walship_common::pg::{ArchiveFileName, WalFileName, WalSegSize};

use super::as_of::AsOfArg;
use crate::context::Context;
use crate::exit;

/// How long the prefetch worker waits for Postgres's next request before it exits (the next
/// `fetch` call starts a new one).
const WORKER_IDLE_EXIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Arguments of `walship fetch` (the command's help text is in `cli.rs`).
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The file Postgres asks for (`%f`).
    pub name: String,
    /// Where to write it (`%p`).
    pub dest: PathBuf,
    /// Segments to fetch ahead in the background (0: none) [config: fetch.prefetch, default 8]
    #[arg(long, value_name = "N")]
    pub prefetch: Option<usize>,
    /// Parallel downloads of the prefetch worker [config: fetch.parallel]
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Deliver `<name>.partial`, zero-padded, when the complete segment is absent (recovery
    /// to the very end of a stream) [config: fetch.allow_partial]
    #[arg(long)]
    pub allow_partial: bool,
    /// Internal: run as the prefetch worker filling the spool directory DEST after NAME.
    #[arg(long, hide = true)]
    pub prefetch_worker: bool,
    // `walship restore --as-of` writes it into restore_command.
    #[command(flatten)]
    pub as_of: AsOfArg,
}

/// Runs `walship fetch`.
pub fn run(ctx: Context, args: FetchArgs) -> u8 {
    let config = &ctx.config;
    // The flags reached `config` through `Options`: flags over environment over file.
    let plan = PrefetchPlan {
        count: config.fetch.prefetch,
        parallel: config.fetch.parallel,
        idle_exit: WORKER_IDLE_EXIT,
    };
    let opts = FetchOptions {
        allow_partial: config.fetch.allow_partial,
        spool_dir: config.fetch.spool_dir.clone(),
    };
    let origin = origin_key(&ctx, &args.as_of);
    if !args.prefetch_worker
        && let Some(delivered) = fetch::fetch_from_spool(&origin, &args.name, &args.dest, &opts)
    {
        // The fast path: no runtime, no repository.
        tracing::info!("delivered {} ({:?})", delivered.name, delivered.source);
        ensure_worker(&ctx, delivered.name, &args, &opts, plan);
        return exit::SUCCESS;
    }
    ctx.block_on(async {
        let repo = match ctx.open_repository_as_of(args.as_of.as_of).await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::RECOVERY_MUST_STOP, &e),
        };
        if args.prefetch_worker {
            return run_worker(&ctx, &repo, &args, &origin, plan).await;
        }
        let found = |name| ensure_worker(&ctx, name, &args, &opts, plan);
        match fetch::fetch(&repo, &args.name, &args.dest, &opts, found).await {
            Ok(delivered) => {
                tracing::info!("delivered {} ({:?})", delivered.name, delivered.source);
                exit::SUCCESS
            }
            Err(e) if e.is_not_found() => {
                tracing::info!("{e}");
                exit::NOT_FOUND
            }
            Err(e) => ctx.fail(exit::RECOVERY_MUST_STOP, &e),
        }
    })
}

/// Which repository this call reads, as recorded with the spool's entries: the configured
/// URL and, for S3, the endpoint (the same bucket name on another server is another
/// repository), and the time of `--as-of` (the repository now and as it was are two).
fn origin_key(ctx: &Context, as_of: &AsOfArg) -> String {
    let config = &ctx.config;
    let endpoint = config
        .s3
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    let mut origin = match endpoint {
        Some(endpoint) if config.repo.starts_with("s3://") => {
            format!("{} at {endpoint}", config.repo)
        }
        _ => config.repo.clone(),
    };
    if let Some(time) = as_of.as_of {
        origin.push_str(&format!(" as of {}", time.to_rfc3339()));
    }
    origin
}

/// Once a segment was found (in the spool or the repository): starts the prefetch worker
/// unless one is running already.
fn ensure_worker(
    ctx: &Context,
    found: ArchiveFileName,
    args: &FetchArgs,
    opts: &FetchOptions,
    plan: PrefetchPlan,
) {
    let ArchiveFileName::Segment(wal) = found else {
        return;
    };
    if plan.count == 0 {
        return;
    }
    let Some(spool) = fetch::spool_for(&args.dest, opts, wal.seg_size()) else {
        return;
    };
    if !spool.worker_running() {
        start_worker(ctx, &wal, spool.dir(), plan, &args.as_of);
    }
}

/// Starts the prefetch worker as a detached process (its own process group, no inherited
/// output), so that this call returns to Postgres at once.
fn start_worker(
    ctx: &Context,
    after: &WalFileName,
    spool: &std::path::Path,
    plan: PrefetchPlan,
    as_of: &AsOfArg,
) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = Command::new(exe);
    cmd.args(ctx.global_args())
        .args([
            "fetch",
            "--prefetch-worker",
            "--prefetch",
            &plan.count.to_string(),
        ])
        .args(["--parallel", &plan.parallel.to_string()])
        .args(as_of.words())
        .arg(after.to_string())
        .arg(spool)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if let Err(e) = cmd.spawn() {
        tracing::warn!(
            "could not start the prefetch worker (segments will be fetched on demand): {e}"
        );
    }
}

async fn run_worker(
    ctx: &Context,
    repo: &walship_common::repo::Repository,
    args: &FetchArgs,
    origin: &str,
    plan: PrefetchPlan,
) -> u8 {
    let identity = match repo.require_identity().await {
        Ok(identity) => identity,
        Err(e) => return ctx.fail(exit::FAILED, &e),
    };
    let Ok(seg_size) = WalSegSize::new(u64::from(identity.wal_segment_size)) else {
        return exit::FAILED;
    };
    let after = match WalFileName::parse(&args.name, seg_size) {
        Ok(after) => after,
        Err(e) => return ctx.fail(exit::FAILED, &e),
    };
    let spool = fetch::spool::FetchSpool::in_dir(args.dest.clone(), seg_size);
    match prefetch::run_worker(repo, &spool, origin, after, plan).await {
        Ok(n) => {
            tracing::info!("prefetched {n} segments after {after}");
            exit::SUCCESS
        }
        Err(e) => ctx.fail(exit::FAILED, &e),
    }
}
