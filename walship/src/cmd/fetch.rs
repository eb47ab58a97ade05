//! `walship fetch <name> <dest>`: Postgres's `restore_command`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;
use walship_common::fetch::caller_gate::Caller;
use walship_common::fetch::prefetch::{self, PrefetchPlan};
use walship_common::fetch::{self, FetchOptions};
use walship_common::pg::{ArchiveFileName, WalFileName, WalSegSize};

use super::as_of::AsOfArg;
use crate::context::Context;
use crate::exit;

/// How long the prefetch worker waits for Postgres's next request before it exits (the next
/// `fetch` call starts a new one).
const WORKER_IDLE_EXIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the prefetch worker's first decode waits for the call that started it to exit
/// (`walship_common::fetch::caller_gate`): that call takes 16-35 ms here when it fetches the
/// first segment of a recovery itself.
const WORKER_WAITS_FOR_CALLER: std::time::Duration = std::time::Duration::from_millis(100);

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
    /// Internal: the prefetch worker's first decode waits for this process (the call that
    /// started it) to exit.
    #[arg(long, hide = true, value_name = "PID")]
    pub caller_pid: Option<u32>,
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
        caller: args.caller_pid.map(|pid| Caller {
            pid,
            wait: WORKER_WAITS_FOR_CALLER,
        }),
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
    if args.prefetch_worker {
        crate::allocator::reuse_large_buffers();
        // One runtime thread: the worker's decoding runs on a blocking thread of its own, and
        // fewer threads waking beside the recovery preempt its startup process less often.
        return ctx.block_on_current_thread(async {
            match ctx.open_repository_as_of(args.as_of.as_of).await {
                Ok(repo) => run_worker(&ctx, &repo, &args, &origin, plan).await,
                Err(e) => ctx.fail(exit::FAILED, &e),
            }
        });
    }
    ctx.block_on(async {
        let repo = match ctx.open_repository_as_of(args.as_of.as_of).await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::RECOVERY_MUST_STOP, &e),
        };
        let found = |name| ensure_worker(&ctx, name, &args, &opts, plan);
        let first = fetch::fetch(&repo, &args.name, &args.dest, &opts, found).await;
        let mut failures = Vec::new();
        match first {
            Ok(delivered) => {
                tracing::info!("delivered {} ({:?})", delivered.name, delivered.source);
                return exit::SUCCESS;
            }
            Err(e) if e.is_not_found() => tracing::info!("{e}"),
            Err(e) => failures.push((repo.location().to_string(), e.to_string())),
        }
        // Fallback repositories, in order (`fallback_repos`, `--fallback-repo`).
        let mut n = 0;
        while let Some(opened) = ctx.open_fallback(n, args.as_of.as_of).await {
            n += 1;
            let fallback = match opened {
                Ok(fallback) => fallback,
                Err(e) => {
                    failures.push((format!("fallback repository {n}"), e.to_string()));
                    continue;
                }
            };
            match fetch::fetch(&fallback, &args.name, &args.dest, &opts, |_| {}).await {
                Ok(delivered) => {
                    tracing::warn!(
                        "delivered {} from the fallback repository {} ({:?})",
                        delivered.name,
                        fallback.location(),
                        delivered.source
                    );
                    return exit::SUCCESS;
                }
                Err(e) if e.is_not_found() => tracing::info!("{e}"),
                Err(e) => failures.push((fallback.location().to_string(), e.to_string())),
            }
        }
        // "Absent" only when every repository answered that it lacks the file; with one
        // unreachable, Postgres must stop rather than end recovery early. One exception:
        // a timeline history file that every reachable repository lacks. Postgres asks for
        // the next timeline's history at every start and every promotion, so without the
        // exception no recovery could complete while the primary is down; a wrong "absent"
        // there cannot end replay early (segments still stop it), and a timeline id the
        // unreachable repository already used is refused by `archive` later, not overwritten.
        let answered_absent = failures.len() < n + 1;
        if failures.is_empty() || (answered_absent && is_history(&args.name)) {
            if !failures.is_empty() {
                tracing::warn!(
                    "{} is absent from every reachable repository; {} repositories were unreachable",
                    args.name,
                    failures.len()
                );
            }
            return exit::NOT_FOUND;
        }
        for (location, error) in &failures {
            eprintln!("walship fetch: error: {}: {location}: {error}", args.name);
        }
        exit::RECOVERY_MUST_STOP
    })
}

/// Whether `name` is a timeline history file (`00000002.history`).
fn is_history(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|tli| tli.len() == 8 && tli.bytes().all(|b| b.is_ascii_hexdigit()))
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
        .args(["--caller-pid", &std::process::id().to_string()])
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
