//! `walship copy`: copy the repository, as stored, to a second repository (`--to URL`, or
//! every `[[copy]]` entry of the config); the engine is `walship_common::copy`.

use clap::Args;
use walship_common::config::CopyTarget;
use walship_common::copy::{self, CopyOptions, CopyReport};
use walship_common::metrics;
use walship_common::storage::AnyStorage;

use crate::context::Context;
use crate::exit;

/// Copy every WAL object and every complete backup the target lacks, as stored.
///
/// Objects are copied as they are stored (still compressed and encrypted: nothing is
/// decoded, no key is needed), each checked on arrival (size and crc32c of the stored bytes),
/// a backup's manifest last. Create-only: an object already in the target with the same bytes
/// is fine, with different bytes it is an error naming the key. Resumable and safe to run
/// from a CronJob every few minutes: a rerun copies only what is missing. The target gets
/// the source's walship.json (a target of another cluster is refused) and may have its own
/// retention (`walship --repo TARGET expire`): a copy does not bring back what the target's
/// retention removed.
///
/// Without --to, copies to every [[copy]] entry of the config (repo, endpoint, region).
///
/// Exit codes: 0 copied (or nothing to copy), 2 no target, 3 a copy failed (storage,
/// a conflict, another cluster), each target's error printed.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CopyArgs {
    /// The target repository (s3://bucket/prefix or file:///path); without it, every
    /// [[copy]] entry of the config
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The target's S3 endpoint, when it is not the source's (another server or provider)
    #[arg(long, value_name = "URL", requires = "to")]
    pub to_endpoint: Option<String>,
    /// The target's S3 region, when it is not the source's
    #[arg(long, value_name = "REGION", requires = "to")]
    pub to_region: Option<String>,
    /// Say what would be copied, copy nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write the copy lag of every target to this file afterwards, atomically, for
    /// node_exporter's textfile collector (walship_copy_lag_bytes, walship_copy_lag_seconds,
    /// walship_copy_last_success_timestamp_seconds)
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<std::path::PathBuf>,
    /// Print one JSON report per target (copied objects and bytes, copy lag)
    #[arg(long)]
    pub json: bool,
}

/// The largest S3 part a copy uploads.
const COPY_PART_SIZE: usize = 16 << 20;

/// Runs `walship copy`.
pub fn run(ctx: Context, args: CopyArgs) -> u8 {
    let targets = match &args.to {
        Some(url) => vec![CopyTarget {
            repo: url.clone(),
            endpoint: args.to_endpoint.clone(),
            region: args.to_region.clone(),
        }],
        None => ctx.config.copy.clone(),
    };
    if targets.is_empty() {
        eprintln!(
            "walship copy: no target: give --to URL, or list [[copy]] repo = \"URL\" entries in the config (or WALSHIP_COPY)"
        );
        return exit::USAGE;
    }
    let opts = CopyOptions {
        dry_run: args.dry_run,
        ..CopyOptions::default()
    };
    ctx.block_on(async {
        let repo = match ctx.open_repository().await {
            Ok(repo) => repo,
            Err(e) => return ctx.fail(exit::FAILED, &e),
        };
        let mut code = exit::SUCCESS;
        let mut lags = Vec::new();
        for target in &targets {
            let started = std::time::Instant::now();
            let result = match open_target(&ctx, target).await {
                Ok(storage) => copy::copy(repo.storage(), &storage, opts)
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error>),
                Err(e) => Err(Box::new(e) as Box<dyn std::error::Error>),
            };
            let this = match &result {
                Ok(report) => {
                    print(report, started.elapsed(), args.json);
                    exit::SUCCESS
                }
                Err(e) => ctx.fail(exit::FAILED, e.as_ref()),
            };
            if !args.dry_run {
                let mut figures = serde_json::Map::new();
                figures.insert(
                    "target".into(),
                    walship_common::redact::redact_userinfo(&target.repo).into(),
                );
                if let Ok(report) = &result {
                    figures.insert("copied_objects".into(), report.copied_objects.into());
                    figures.insert("copied_bytes".into(), report.copied_bytes.into());
                    figures.insert("backups".into(), report.backups.clone().into());
                    figures.insert("lag_bytes".into(), report.lag.bytes.into());
                }
                super::audit::record(&ctx, &repo, "copy", this, figures).await;
            }
            lags.push(metrics::CopyLagFigures {
                repository: repo.location().to_string(),
                target: walship_common::redact::redact_userinfo(&target.repo),
                lag_bytes: result.as_ref().ok().map(|r| r.lag.bytes),
                lag_seconds: result.as_ref().ok().and_then(|r| r.lag.seconds),
                last_success: result.is_ok().then(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64()
                }),
            });
            if this != exit::SUCCESS {
                code = this;
            }
        }
        if let Some(path) = &args.metrics_textfile
            && !args.dry_run
        {
            let text = metrics::render_copy_lag(&lags);
            if let Err(e) = walship_common::fsutil::write_file_atomic(path, text.as_bytes()) {
                ctx.fail(exit::FAILED, &e);
            }
        }
        code
    })
}

/// Opens a target with the configured S3 settings, its own endpoint and region applied.
async fn open_target(
    ctx: &Context,
    target: &CopyTarget,
) -> Result<AnyStorage, walship_common::storage::StorageError> {
    let mut s3 = ctx.config.s3.to_options();
    // Each object in flight holds at most one part: smaller parts bound the copy's memory
    // (objects are WAL segments and 64 MiB bundles; 16 MiB parts cost no throughput).
    s3.part_size = s3.part_size.min(COPY_PART_SIZE);
    if let Some(endpoint) = &target.endpoint {
        s3.endpoint = Some(endpoint.clone());
        s3.force_path_style = Some(true);
    }
    if let Some(region) = &target.region {
        s3.region = Some(region.clone());
    }
    AnyStorage::open(&target.repo, &s3).await
}

fn print(report: &CopyReport, elapsed: std::time::Duration, json: bool) {
    if json {
        let mut value = serde_json::to_value(report).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("seconds".into(), elapsed.as_secs_f64().into());
        }
        println!("{value}");
        return;
    }
    let verb = if report.dry_run {
        "would copy"
    } else {
        "copied"
    };
    println!(
        "{verb} {} objects ({} bytes) from {} to {} in {:.1}s; {} already there; backups completed: {}",
        report.copied_objects,
        report.copied_bytes,
        report.source,
        report.target,
        elapsed.as_secs_f64(),
        report.already_present,
        if report.backups.is_empty() {
            "none".to_string()
        } else {
            report.backups.join(", ")
        }
    );
    match report.lag.seconds {
        Some(s) => println!("copy lag: {} bytes of WAL, {s} s", report.lag.bytes),
        None => println!("copy lag: {} bytes of WAL", report.lag.bytes),
    }
}
