//! The walship demo: a real Postgres cluster on this machine archiving its WAL through
//! `walship archive` into a local-directory repository.
//!
//! Run it with `cargo run --release -p pg-test-harness --bin demo`. It builds the `walship`
//! binary, starts a throwaway cluster (newest installed major) with
//! `archive_command = 'walship archive %p'`, writes data, switches WAL, waits for Postgres to
//! archive, then shows the repository and fetches one segment back to prove it is identical.
//! Everything lives in a temporary directory that is removed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pg_test_harness::{Cluster, StopMode};

fn main() -> Result<()> {
    let started = Instant::now();
    let walship = build_walship()?;
    let install = pg_test_harness::installs()
        .into_iter()
        .last()
        .context("no PostgreSQL server found: install postgresql or run scripts/setup-test-deps")?;
    step(&format!(
        "PostgreSQL {} found in {}",
        install.major,
        install.bin_dir.display()
    ));

    let work = pg_test_harness::test_dir("walship-demo");
    let repo_dir = work.path().join("repo");
    std::fs::create_dir(&repo_dir)?;
    chown_like(&repo_dir, work.path())?;
    let repo = format!("file://{}", repo_dir.display());
    let archive_command = format!("{} --repo {repo} archive %p", walship.display());
    step(&format!("repository {repo}"));
    step(&format!("archive_command = '{archive_command}'"));

    let mut cluster = Cluster::builder(&install)
        .setting("archive_mode", "on")
        .setting("archive_command", &format!("'{archive_command}'"))
        .start();
    step(&format!("cluster started on 127.0.0.1:{}", cluster.port()));

    cluster.execute(
        "create table orders(id int primary key, item text, placed_at timestamptz default now())",
    );
    cluster.execute(
        "insert into orders(id, item) select g, 'item ' || g from generate_series(1, 50000) g",
    );
    // The segment being written now is the one the switch completes.
    let last = cluster.query_string("select pg_walfile_name(pg_current_wal_insert_lsn())");
    cluster.execute("select pg_switch_wal()");
    step(&format!(
        "wrote 50000 orders; switched WAL after segment {last}"
    ));

    wait_archived(&cluster, &last)?;
    step("Postgres archived everything through walship");

    let objects = list_objects(&repo_dir)?;
    println!("\nrepository contents:");
    for (key, size) in &objects {
        println!("  {key:60} {size:>10} bytes");
    }

    let fetched = work.path().join("fetched");
    let out = Command::new(&walship)
        .args(["--repo", &repo, "fetch", &last])
        .arg(&fetched)
        .output()?;
    if !out.status.success() {
        bail!(
            "walship fetch {last} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let original = std::fs::read(cluster.data_dir().join("pg_wal").join(&last))?;
    if std::fs::read(&fetched)? != original {
        bail!("fetched {last} differs from pg_wal/{last}");
    }
    step(&format!(
        "walship fetch {last}: byte-identical to pg_wal/{last} ({} bytes)",
        original.len()
    ));

    cluster.stop(StopMode::Fast);
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(message: &str) {
    println!("==> {message}");
}

/// Builds `walship` in the same profile as this demo and returns its path.
fn build_walship() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("demo binary has no directory")?;
    let release = dir.ends_with("release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "walship"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("run cargo build -p walship")?;
    if !status.success() {
        bail!("cargo build -p walship failed");
    }
    Ok(dir.join("walship"))
}

fn wait_archived(cluster: &Cluster, last: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let archived =
            cluster.query_string("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        if archived.as_str() >= last {
            return Ok(());
        }
        if Instant::now() > deadline {
            let failed =
                cluster.query_string("select coalesce(last_failed_wal, '') from pg_stat_archiver");
            bail!(
                "{last} not archived after 60 s (last failure: {failed}); server log:\n{}",
                cluster.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn list_objects(root: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                let key = entry.path().strip_prefix(root)?.display().to_string();
                out.push((key, entry.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn chown_like(path: &Path, like: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(like)?;
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
    )?;
    Ok(())
}
