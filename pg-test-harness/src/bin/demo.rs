//! The walship demo: a real point-in-time recovery on this machine's Postgres, with a
//! local-directory repository.
//!
//! Run it with `cargo run --release -p pg-test-harness --bin demo`. It builds `walship`
//! (saying so, with cargo's progress: minutes on a fresh clone),
//! starts a throwaway cluster (newest installed major) with
//! `archive_command = 'walship archive %p'`, takes a base backup with `walship backup`, writes
//! orders, notes the time, "accidentally" drops the table, writes more, then runs
//! `walship restore --target-time <that time>` into a new directory, starts Postgres on it and
//! shows the table back with exactly the rows it had. Everything lives in a temporary
//! directory that is removed at the end.

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
        "insert into orders(id, item) select g, 'item ' || g from generate_series(1, 20000) g",
    );
    let connstr = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port()
    );
    run(
        &walship,
        &[
            "--repo",
            &repo,
            "backup",
            "-d",
            &connstr,
            "--checkpoint",
            "fast",
            "--label",
            "demo",
        ],
    )?;
    step("walship backup: base backup stored");

    cluster.execute(
        "insert into orders(id, item) select g, 'item ' || g from generate_series(20001, 50000) g",
    );
    let rows = cluster.query_string("select count(*) from orders");
    let checksum = cluster.query_string("select sum(id) from orders");
    std::thread::sleep(Duration::from_millis(200));
    let target = cluster.query_string(
        "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(200));
    step(&format!("{rows} orders written; the time is {target}"));

    cluster.execute("drop table orders");
    cluster.execute("create table audit as select generate_series(1, 1000) as i");
    step("oops: DROP TABLE orders (and life goes on: more writes)");
    cluster.execute("select pg_switch_wal()");
    wait_archived(&cluster)?;
    step("Postgres archived everything through walship");

    let restored = work.path().join("restored");
    let restore_started = Instant::now();
    run(
        &walship,
        &[
            "--repo",
            &repo,
            "restore",
            "--target-time",
            &target,
            "--to",
            &restored.to_string_lossy(),
        ],
    )?;
    pg_test_harness::chown_to_owner_recursive(&restored)?;
    step(&format!(
        "walship restore --target-time {target}: data directory built"
    ));

    cluster.stop(StopMode::Fast);
    let mut copy = Cluster::from_data_dir(&install, &restored);
    copy.append_conf("archive_mode = off");
    copy.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while copy.query_string("select pg_is_in_recovery()") == "t" {
        if Instant::now() > deadline {
            bail!(
                "recovery did not finish in 120 s; server log:\n{}",
                copy.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let got_rows = copy.query_string("select count(*) from orders");
    let got_checksum = copy.query_string("select sum(id) from orders");
    if (got_rows.as_str(), got_checksum.as_str()) != (rows.as_str(), checksum.as_str()) {
        bail!(
            "restored orders: {got_rows} rows (sum {got_checksum}), expected {rows} (sum {checksum})"
        );
    }
    let point = copy.query_string("select coalesce(max(placed_at)::text, '') from orders");
    step(&format!(
        "the restored cluster has the table back: {got_rows} orders, identical to the moment before the drop (last order placed at {point})"
    ));
    step(&format!(
        "restore and recovery took {:.1} s",
        restore_started.elapsed().as_secs_f64()
    ));
    copy.stop(StopMode::Fast);
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs walship with `args`, failing with its stderr.
fn run(walship: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(walship).args(args).output()?;
    if !out.status.success() {
        bail!(
            "walship {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn step(message: &str) {
    println!("==> {message}");
}

/// Builds `walship` in the same profile as this demo and returns its path. Says so first,
/// and lets cargo show its progress: on a fresh clone this compiles the AWS SDK and takes
/// minutes, which must not look like a hang.
fn build_walship() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("demo binary has no directory")?;
    let release = dir.ends_with("release");
    let profile = if release { "release" } else { "debug" };
    step(&format!(
        "building walship ({profile}) with cargo: the first run compiles it and can take \
         several minutes; later runs take seconds"
    ));
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "walship"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("run cargo build -p walship")?;
    if !status.success() {
        bail!("cargo build -p walship failed");
    }
    step(&format!(
        "walship built in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(dir.join("walship"))
}

fn wait_archived(cluster: &Cluster) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = cluster.query_string(
            "select count(*) from pg_ls_dir('pg_wal/archive_status') f where f like '%.ready'",
        );
        if ready == "0" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "WAL not archived after 60 s; server log:\n{}",
                cluster.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
