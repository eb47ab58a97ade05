//! `bench copy`: `walship copy` between two SeaweedFS servers, in MB/s of stored bytes
//! copied (issue 23's aim: at least 300 MB/s) and peak RSS (memory must stay bounded
//! however large the repository).
//!
//! The source repository is made without Postgres, since `copy` never decodes an object: a
//! `walship.json`, `--segments` WAL objects of 8 MiB of random bytes (about what lz4 leaves
//! of a busy 16 MiB segment, and incompressible for the network path alike) and one backup of
//! six 64 MiB bundles and a manifest, written to a directory and copied into server A by
//! `walship copy` itself (not measured). The measured run copies A to B as one child
//! process; every object of A must then be in B.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use rand::RngCore;
use serde_json::Value;

use super::walship_bin::{BenchArgs, WalshipRepo, walship_binary};
use super::{Measurement, measure, met};
use crate::S3Server;

/// The issue's aim.
const AIM_MB_PER_S: f64 = 300.0;
/// WAL objects when `--segments` is not given.
const DEFAULT_SEGMENTS: usize = 128;
/// Bytes of one stored WAL object.
const WAL_OBJECT: usize = 8 << 20;
/// Bundles of the backup, and their size.
const BUNDLES: usize = 6;
const BUNDLE: usize = 64 << 20;

/// The `copy` bench: `bench copy [--segments N] [--walship PATH]`.
pub fn run(args: &[String]) -> Result<()> {
    let args = BenchArgs::parse(args)?;
    let walship = walship_binary(args.walship.as_deref())?;
    let segments = args.segments.unwrap_or(DEFAULT_SEGMENTS);
    let work = crate::test_dir("bench-copy");
    let seed = WalshipRepo::local(work.path(), "seed")?;
    let stored = write_seed(seed.local_root().context("seed is local")?, segments)?;
    let a = S3Server::start()?;
    let b = S3Server::start()?;
    let source = WalshipRepo::s3(work.path(), &a, "source")?;
    eprintln!("bench: seeding {} MiB into server A", stored >> 20);
    copy(&seed, &walship, &source.url, &a)?;
    eprintln!("bench: walship copy from server A to server B");
    let target = format!("s3://{}/copy", b.bucket);
    let (run, copied) = copy(&source, &walship, &target, &b)?;
    if copied < stored {
        bail!("copied {copied} bytes, the source holds {stored}");
    }
    print!("{}", render(copied, &run));
    Ok(())
}

/// Writes the seed repository; returns its stored bytes (walship.json aside).
fn write_seed(root: &Path, segments: usize) -> Result<u64> {
    let mut rng = rand::rng();
    let mut buf = vec![0u8; BUNDLE];
    let mut put = |key: &str, len: usize| -> Result<u64> {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().context("key has a parent")?)?;
        rng.fill_bytes(&mut buf[..len]);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&buf[..len]))
            .with_context(|| format!("write {}", path.display()))?;
        Ok(len as u64)
    };
    std::fs::write(
        root.join("walship.json"),
        r#"{"format_version":1,"system_identifier":"7400000000000000001","pg_major":15,"wal_segment_size":16777216}"#,
    )?;
    let mut total = 0;
    for i in 0..segments {
        let (log, seg) = (i / 256 + 1, i % 256);
        let name = format!("00000001{log:08X}{seg:08X}");
        total += put(&format!("wal/{}/{name}", &name[..16]), WAL_OBJECT)?;
    }
    let id = "20261201T000000Z";
    for n in 0..BUNDLES {
        total += put(&format!("backups/{id}/bundles/{n:06}"), BUNDLE)?;
    }
    total += put(&format!("backups/{id}/manifest.json"), 64 << 10)?;
    crate::chown_to_owner_recursive(root)?;
    Ok(total)
}

/// `walship copy --to <target> --json` from `source`, measured; returns the measurement
/// and the bytes it reports copied.
fn copy(
    source: &WalshipRepo,
    walship: &Path,
    target: &str,
    server: &S3Server,
) -> Result<(Measurement, u64)> {
    let stdout = tempfile::NamedTempFile::new()?;
    let mut cmd = source.command(
        walship,
        &[
            "copy",
            "--to",
            target,
            "--to-endpoint",
            &server.endpoint,
            "--to-region",
            &server.region,
            "--json",
        ],
    );
    cmd.envs(server.env())
        .stdin(Stdio::null())
        .stdout(stdout.reopen()?);
    let run = measure(&mut cmd)?;
    let text = std::fs::read_to_string(stdout.path())?;
    if !run.status.success() {
        bail!(
            "walship copy to {target} failed with {}: {text}",
            run.status
        );
    }
    let report: Value = serde_json::from_str(text.trim())
        .with_context(|| format!("walship copy --json printed {text:?}"))?;
    let copied = report["copied_bytes"]
        .as_u64()
        .with_context(|| format!("no copied_bytes in {report}"))?;
    Ok((run, copied))
}

fn render(copied: u64, run: &Measurement) -> String {
    let secs = run.wall.as_secs_f64();
    let mb_s = copied as f64 / 1e6 / secs;
    format!(
        "walship copy between two SeaweedFS servers\n  {:.0} MiB stored bytes in {secs:.2} s: {mb_s:.0} MB/s, {:.2} s CPU, {:.1} MiB peak RSS\n\naims:\n  copy at least {AIM_MB_PER_S} MB/s: {mb_s:.0} MB/s -> {}\n",
        copied as f64 / (1 << 20) as f64,
        (run.user + run.system).as_secs_f64(),
        run.peak_rss_mib(),
        met(mb_s >= AIM_MB_PER_S)
    )
}
