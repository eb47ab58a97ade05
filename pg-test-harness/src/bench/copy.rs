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
//!
//! Then the same stored bytes are PUT into server B by `curl` (8 at once, no walship
//! involved): the server's own ingest rate on this machine, printed beside the copy's, so a
//! missed aim shows whether the copy or the machine is the limit.

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
/// PUTs in flight when measuring the server's own ingest rate (walship copy's default width).
const CURL_PARALLEL: usize = 8;

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
    eprintln!("bench: the same bytes PUT into server B by curl, {CURL_PARALLEL} at once");
    let server_mb_s = server_put_rate(seed.local_root().context("seed is local")?, &b)?;
    print!("{}", render(copied, &run, server_mb_s));
    Ok(())
}

/// PUTs every file under `root` into `server` (under `probe/`) with `curl`, `CURL_PARALLEL`
/// at once; returns MB/s of file bytes. This is the server's own ingest rate, the ceiling of
/// any copy into it on this machine.
fn server_put_rate(root: &Path, server: &S3Server) -> Result<f64> {
    let mut files = Vec::new();
    collect_files(root, &mut files)?;
    let bytes: u64 = files.iter().map(|(_, len)| len).sum();
    let queue = std::sync::Mutex::new(files.into_iter());
    let started = std::time::Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..CURL_PARALLEL)
            .map(|_| {
                let queue = &queue;
                scope.spawn(move || -> Result<()> {
                    while let Some((path, _)) = queue.lock().expect("queue").next() {
                        curl_put(&path, &format!("probe/{}", path_key(&path)), server)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("curl worker panicked")?;
        }
        Ok(())
    })?;
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// Every regular file under `dir`, with its length.
fn collect_files(dir: &Path, out: &mut Vec<(std::path::PathBuf, u64)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            collect_files(&entry.path(), out)?;
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    Ok(())
}

/// A key for `path` that is unique among the seed's files.
fn path_key(path: &Path) -> String {
    path.to_string_lossy()
        .trim_start_matches('/')
        .replace('/', "_")
}

/// One `curl -T` PUT, signed with the server's (accept-anything) credentials.
fn curl_put(path: &Path, key: &str, server: &S3Server) -> Result<()> {
    let status = std::process::Command::new("curl")
        .args(["-sSf", "-o", "/dev/null", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", server.region))
        .arg("--user")
        .arg(format!("{}:{}", server.access_key, server.secret_key))
        .arg("-T")
        .arg(path)
        .arg(format!("{}/{}/{key}", server.endpoint, server.bucket))
        .status()
        .context("run curl (Debian package curl)")?;
    if !status.success() {
        bail!("curl PUT of {} failed with {status}", path.display());
    }
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

fn render(copied: u64, run: &Measurement, server_mb_s: f64) -> String {
    let secs = run.wall.as_secs_f64();
    let mb_s = copied as f64 / 1e6 / secs;
    format!(
        "walship copy between two SeaweedFS servers\n  {:.0} MiB stored bytes in {secs:.2} s: {mb_s:.0} MB/s, {:.2} s CPU, {:.1} MiB peak RSS\n  server B's own PUT rate (curl, {CURL_PARALLEL} at once, same bytes): {server_mb_s:.0} MB/s; the copy reaches {:.0} % of it\n\naims:\n  copy at least {AIM_MB_PER_S} MB/s: {mb_s:.0} MB/s -> {}{}\n",
        copied as f64 / (1 << 20) as f64,
        (run.user + run.system).as_secs_f64(),
        run.peak_rss_mib(),
        100.0 * mb_s / server_mb_s,
        met(mb_s >= AIM_MB_PER_S),
        if mb_s < AIM_MB_PER_S && server_mb_s < AIM_MB_PER_S {
            " (the server itself accepts less than the aim on this machine)"
        } else {
            ""
        }
    )
}
