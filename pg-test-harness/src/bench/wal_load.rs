//! Real WAL for the benches: a cluster under a pgbench load until it has written a given number
//! of 16 MiB segments, the names of those segments, and a base copy taken with the low-level
//! backup API.
//!
//! The load is `pgbench -i` (bulk COPY and index builds) followed by rounds of the TPC-B-like
//! pgbench transaction, each round ending with a checkpoint so that the next round writes full
//! page images again, as a busy server does. `wal_keep_size` keeps every segment in `pg_wal`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Cluster, PgInstall};

/// WAL segment size of the bench clusters (initdb's default).
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Segments per "xlogid" in a segment file name, for 16 MiB segments.
const SEGMENTS_PER_XLOGID: u64 = 0x1_0000_0000 / SEGMENT_BYTES;
/// How long one pgbench round runs.
const ROUND_SECS: &str = "3";

/// The PostgreSQL install the benches use: major 15 when present (the newest pgBackRest of
/// Debian 12 supports it), else the newest installed.
pub fn bench_install() -> Result<PgInstall> {
    let installs = crate::installs();
    installs
        .iter()
        .find(|i| i.major == 15)
        .or_else(|| installs.last())
        .cloned()
        .context("no PostgreSQL server found: install postgresql or run scripts/setup-test-deps")
}

/// A started cluster configured for a WAL-heavy load: segments kept, few timed checkpoints,
/// asynchronous commit (the load is bound by WAL volume, not by fsync of each commit).
/// `extra` are further settings (name, already-quoted value).
pub fn load_cluster(install: &PgInstall, extra: &[(&str, String)]) -> Cluster {
    let mut builder = Cluster::builder(install)
        .setting("wal_keep_size", "'4GB'")
        .setting("max_wal_size", "'4GB'")
        .setting("synchronous_commit", "off")
        .setting("checkpoint_timeout", "'30min'");
    for (name, value) in extra {
        builder = builder.setting(name, value);
    }
    builder.start()
}

/// Runs `pgbench -i` at a scale that writes about `segments / 4` segments of bulk WAL.
pub fn pgbench_init(cluster: &Cluster, segments: usize) -> Result<()> {
    let scale = (segments / 4).max(1).to_string();
    pgbench(cluster, &["-i", "-q", "-s", &scale])?;
    Ok(())
}

/// Runs pgbench rounds (each followed by a checkpoint) until the cluster has completed at
/// least `segments` segments since this call began, then switches WAL. Returns the names of
/// the last `segments` complete segments, oldest first (all still in `pg_wal`).
pub fn write_segments(cluster: &Cluster, segments: usize) -> Result<Vec<String>> {
    let start = segment_of(&cluster.query_string("select pg_current_wal_insert_lsn()::text"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = segment_of(&cluster.query_string("select pg_current_wal_insert_lsn()::text"))?;
        if now >= start + segments as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "pgbench wrote only {} of {segments} segments in 10 minutes",
                now - start
            );
        }
        pgbench(
            cluster,
            &[
                "-n", "-c", "4", "-j", "2", "-M", "prepared", "-T", ROUND_SECS,
            ],
        )?;
        cluster.execute("checkpoint");
    }
    let last = switch_wal(cluster)?;
    let first = last + 1 - segments as u64;
    Ok((first..=last).map(|segno| segment_name(1, segno)).collect())
}

/// Switches to a new segment; returns the number of the last complete one.
pub fn switch_wal(cluster: &Cluster) -> Result<u64> {
    // The segment holding the byte before the switch point is the last complete one.
    let switch = parse_lsn(&cluster.query_string("select pg_switch_wal()::text"))?;
    Ok((switch - 1) / SEGMENT_BYTES)
}

/// pgbench against `cluster`'s `postgres` database over TCP, as the cluster owner.
pub fn pgbench_command(cluster: &Cluster, args: &[&str]) -> std::process::Command {
    // The npm-packaged servers (17, 18) ship no pgbench: Debian's client one (15) then
    // loads and drives them over the protocol as well.
    let mut cmd = if cluster.install().has_tool("pgbench") {
        cluster.pg_command("pgbench")
    } else {
        let mut cmd = std::process::Command::new(crate::client_tool("pgbench"));
        cmd.current_dir(std::env::temp_dir());
        cluster.run_as_owner(&mut cmd);
        cmd
    };
    cmd.args(["-h", "127.0.0.1", "-p", &cluster.port().to_string()])
        .args(["-U", "postgres"])
        .args(args)
        .arg("postgres");
    cmd
}

/// Runs pgbench (see [`pgbench_command`]) and returns its standard output; fails with its
/// standard error.
pub fn pgbench(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let out = pgbench_command(cluster, args)
        .output()
        .context("run pgbench")?;
    if !out.status.success() {
        bail!(
            "pgbench {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses a `pg_lsn` text (`16/B374D848`) into a byte position.
pub fn parse_lsn(text: &str) -> Result<u64> {
    let (hi, lo) = text
        .trim()
        .split_once('/')
        .with_context(|| format!("not an LSN: {text:?}"))?;
    let hi = u64::from_str_radix(hi, 16).with_context(|| format!("not an LSN: {text:?}"))?;
    let lo = u64::from_str_radix(lo, 16).with_context(|| format!("not an LSN: {text:?}"))?;
    Ok(hi << 32 | lo)
}

fn segment_of(lsn: &str) -> Result<u64> {
    Ok(parse_lsn(lsn)? / SEGMENT_BYTES)
}

/// The file name of segment `segno` on `timeline` (16 MiB segments).
pub fn segment_name(timeline: u32, segno: u64) -> String {
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / SEGMENTS_PER_XLOGID,
        segno % SEGMENTS_PER_XLOGID
    )
}

/// Waits until Postgres's archiver has archived segment `last` (or a later one).
///
/// `pg_stat_archiver.last_archived_wal` alone does not say so: it may name a `.backup` file
/// of an earlier segment, archived after `last` (a backup that ended just before), so the
/// segment's own `archive_status/<last>.done` counts too.
pub fn wait_archived(cluster: &Cluster, last: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let done = cluster
        .data_dir()
        .join("pg_wal/archive_status")
        .join(format!("{last}.done"));
    loop {
        let archived =
            cluster.query_string("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        if done.exists() || archived_covers(&archived, last) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let failed =
                cluster.query_string("select coalesce(last_failed_wal, '') from pg_stat_archiver");
            bail!(
                "{last} not archived after {timeout:?} (last archived {archived:?}, last failed {failed:?})\n{}",
                cluster.log_excerpt()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `last_archived_wal` = `archived` means segment `last` is archived: it is that
/// segment or a later one, or a `.backup`/`.partial`/`.history`-suffixed name of a later
/// segment (the archiver works oldest first).
fn archived_covers(archived: &str, last: &str) -> bool {
    match archived.get(..24) {
        Some(segment) if archived.len() == 24 => segment >= last,
        Some(segment) => segment > last,
        None => false,
    }
}

/// Copies a running cluster's data directory to `dest` with the low-level backup API
/// (`pg_backup_start`/`pg_backup_stop`, `pg_start_backup`/`pg_stop_backup` before 15) and
/// writes `backup_label` verbatim. `pg_wal` is left empty (with `archive_status`). Returns
/// the name of the segment where replay of the copy starts (from the label).
pub fn base_copy(cluster: &Cluster, dest: &Path) -> Result<String> {
    let mut client = cluster.client();
    let major = cluster.install().major;
    let (start_sql, stop_sql) = if major >= 15 {
        (
            "select pg_backup_start('walship-bench', true)",
            "select labelfile from pg_backup_stop(true)",
        )
    } else {
        (
            "select pg_start_backup('walship-bench', true, false)",
            "select labelfile from pg_stop_backup(false, true)",
        )
    };
    client.simple_query(start_sql).context(start_sql)?;
    copy_tree(cluster.data_dir(), dest, true)?;
    let row = client.query_one(stop_sql, &[]).context(stop_sql)?;
    let label: String = row.get(0);
    std::fs::write(dest.join("backup_label"), &label)?;
    // START WAL LOCATION: 0/5000028 (file 000000010000000000000005)
    label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|l| l.split("(file ").nth(1))
        .map(|f| f.trim_end_matches(')').to_owned())
        .with_context(|| format!("no START WAL LOCATION in backup_label:\n{label}"))
}

/// Copies the directory tree `src` to `dest` (a stopped copy: everything).
pub fn copy_tree_all(src: &Path, dest: &Path) -> Result<()> {
    copy_tree(src, dest, false)
}

/// Copies `src` to `dest`; for a `live` data directory, leaves out the postmaster's files and
/// an old `backup_label`, and keeps `pg_wal` empty.
fn copy_tree(src: &Path, dest: &Path, live: bool) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("create {}", dest.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if live
            && matches!(
                name.as_ref(),
                "postmaster.pid" | "postmaster.opts" | "backup_label"
            )
        {
            continue;
        }
        let to = dest.join(name.as_ref());
        if live && name == "pg_wal" {
            std::fs::create_dir_all(to.join("archive_status"))?;
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &to, live)?;
        } else if kind.is_file() {
            // Files may shrink or vanish while the server runs: the WAL repairs that.
            let copied = std::fs::copy(entry.path(), &to);
            if !live {
                copied.with_context(|| format!("copy {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_segments_like_postgres() {
        assert_eq!(segment_name(1, 5), "000000010000000000000005");
        assert_eq!(segment_name(1, 0x1_05), "000000010000000100000005");
        assert_eq!(segment_name(3, 0xFF), "0000000300000000000000FF");
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(
            parse_lsn("0/5000028").unwrap() / SEGMENT_BYTES,
            5,
            "0/5000028 lies in segment 5"
        );
        assert!(parse_lsn("nonsense").is_err());
    }

    #[test]
    fn a_backup_file_of_an_earlier_segment_does_not_count_as_the_segment() {
        let last = "000000010000000000000007";
        assert!(archived_covers(last, last));
        assert!(archived_covers("000000010000000000000008", last));
        assert!(!archived_covers("000000010000000000000006", last));
        assert!(!archived_covers(
            "000000010000000000000006.00000028.backup",
            last
        ));
        assert!(!archived_covers(
            "000000010000000000000007.00000028.backup",
            last
        ));
        assert!(archived_covers(
            "000000010000000000000008.00000028.backup",
            last
        ));
        assert!(!archived_covers("", last));
    }
}
