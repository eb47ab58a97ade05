//! `walship fetch <name> <dest>`: Postgres's `restore_command`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Args;
use walship_common::fetch::{self, FetchError, FetchOptions};
use walship_common::pg::{ArchiveFileName, WalFileName, WalSegSize};

use crate::context::Context;
use crate::exit;

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
}

/// Runs `walship fetch`.
pub fn run(ctx: Context, args: FetchArgs) -> u8 {
    let config = &ctx.config;
    // The flags reached `config` through `Options`: flags over environment over file.
    let prefetch = config.fetch.prefetch;
    let parallel = config.fetch.parallel;
    let opts = FetchOptions {
        allow_partial: config.fetch.allow_partial,
        spool_dir: config.fetch.spool_dir.clone(),
    };
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::RECOVERY_MUST_STOP, &e),
        };
        if args.prefetch_worker {
            return run_worker(&ctx, &repo, &args, prefetch, parallel).await;
        }
        match fetch::fetch(&repo, &args.name, &args.dest, &opts).await {
            Ok(delivered) => {
                tracing::info!("delivered {} ({:?})", delivered.name, delivered.source);
                if let ArchiveFileName::Segment(wal) = delivered.name
                    && prefetch > 0
                    && let Some(spool) = fetch::spool_for(&args.dest, &opts, wal.seg_size())
                {
                    start_worker(&ctx, &wal, spool.dir(), prefetch, parallel);
                }
                exit::SUCCESS
            }
            Err(e) if e.is_not_found() => {
                tracing::info!("{e}");
                exit::NOT_FOUND
            }
            Err(FetchError::Name(e)) => ctx.fail(exit::USAGE, &e),
            Err(e) => ctx.fail(exit::RECOVERY_MUST_STOP, &e),
        }
    })
}

/// Starts the prefetch worker as a detached process (its own process group, no inherited
/// output), so that this call returns to Postgres at once.
fn start_worker(
    ctx: &Context,
    after: &WalFileName,
    spool: &std::path::Path,
    prefetch: usize,
    parallel: usize,
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
            &prefetch.to_string(),
        ])
        .args(["--parallel", &parallel.to_string()])
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
    prefetch: usize,
    parallel: usize,
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
        Err(e) => return ctx.fail(exit::USAGE, &e),
    };
    let spool = fetch::spool::FetchSpool::in_dir(args.dest.clone(), seg_size);
    match fetch::fill_spool(repo, &spool, after, prefetch, parallel).await {
        Ok(n) => {
            tracing::info!("prefetched {n} segments after {after}");
            exit::SUCCESS
        }
        Err(e) => ctx.fail(exit::FAILED, &e),
    }
}
