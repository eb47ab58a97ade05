//! Shared helpers for the `walship` binary's integration tests: a repository (SeaweedFS or a
//! local directory) with its config file, running the real binary, and waiting on Postgres.

#![allow(dead_code)] // each test file uses a different subset

pub mod bounded;
pub mod crafted;
pub mod incremental;
pub mod keys;
pub mod prometheus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pg_test_harness::{Cluster, S3Server};

/// The `walship` binary under test.
pub fn walship_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_walship"))
}

/// A repository for one test, with the config file that points walship at it.
pub struct TestRepo {
    /// Holds the config file (and the repository itself for `file://`).
    pub dir: tempfile::TempDir,
    /// The repository URL.
    pub url: String,
    /// The config file every walship call of the test uses.
    pub config: PathBuf,
    /// The S3 server, when the repository is on S3.
    pub s3: Option<S3Server>,
}

impl TestRepo {
    /// A repository in a local directory that the cluster user can write.
    pub fn local() -> TestRepo {
        let dir = pg_test_harness::test_dir("walship-repo");
        let repo_dir = dir.path().join("repo");
        std::fs::create_dir(&repo_dir).unwrap();
        chown_like(&repo_dir, dir.path());
        let url = format!("file://{}", repo_dir.display());
        let config = dir.path().join("walship.toml");
        std::fs::write(&config, format!("repo = \"{url}\"\n")).unwrap();
        TestRepo {
            dir,
            url,
            config,
            s3: None,
        }
    }

    /// A repository on a fresh SeaweedFS, or `None` (after a loud SKIP) when it cannot run.
    pub fn s3() -> Option<TestRepo> {
        let s3 = pg_test_harness::s3_under_test()?;
        let dir = pg_test_harness::test_dir("walship-repo");
        let url = format!("s3://{}/cluster-a", s3.bucket);
        let config = dir.path().join("walship.toml");
        std::fs::write(
            &config,
            format!(
                "repo = \"{url}\"\n[s3]\nendpoint = \"{}\"\nregion = \"{}\"\nconnect_timeout = \"1s\"\noperation_timeout = \"10s\"\nmax_attempts = 3\n",
                s3.endpoint, s3.region
            ),
        )
        .unwrap();
        Some(TestRepo {
            dir,
            url,
            config,
            s3: Some(s3),
        })
    }

    /// Environment for every walship call: credentials for S3 (SeaweedFS accepts any), and
    /// no instance-metadata probing, so nothing leaves the loopback interface.
    pub fn env(&self) -> Vec<(String, String)> {
        // No instance metadata, and no profile files of whoever runs the test (the cluster
        // user cannot read root's): only the credentials given here.
        let missing = "/dev/null".to_string();
        let mut env = vec![
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
            ("AWS_CONFIG_FILE".to_string(), missing.clone()),
            ("AWS_SHARED_CREDENTIALS_FILE".to_string(), missing),
        ];
        match &self.s3 {
            Some(s3) => env.extend(s3.env()),
            None => env.extend([
                ("AWS_ACCESS_KEY_ID".to_string(), "unused".to_string()),
                ("AWS_SECRET_ACCESS_KEY".to_string(), "unused".to_string()),
            ]),
        }
        env
    }

    /// A shell command prefix running walship with this repository's config and environment,
    /// for `archive_command` / `restore_command`.
    pub fn shell_prefix(&self) -> String {
        let env: Vec<String> = self.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "env {} {} --config {}",
            env.join(" "),
            walship_bin().display(),
            self.config.display()
        )
    }

    /// `archive_command` for Postgres (`extra` goes after `archive`, e.g. `--async`).
    pub fn archive_command(&self, extra: &str) -> String {
        format!("{} archive {extra} %p", self.shell_prefix())
    }

    /// `restore_command` for Postgres.
    pub fn restore_command(&self) -> String {
        format!("{} fetch %f %p", self.shell_prefix())
    }

    /// Runs `walship --config <cfg> <args>` as the current user and returns its output.
    pub fn walship(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(walship_bin());
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.envs(self.env());
        cmd.output().expect("run walship")
    }

    /// The repository's local directory (file repositories only).
    pub fn local_root(&self) -> &Path {
        assert!(self.s3.is_none(), "not a local repository");
        Path::new(self.url.strip_prefix("file://").unwrap())
    }
}

fn chown_like(path: &Path, like: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(like).unwrap();
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
    )
    .unwrap();
}

/// Describes a finished process for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes (then panics with `what`).
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Names of the files Postgres has marked archived (`archive_status/*.done`).
pub fn done_files(cluster: &Cluster) -> Vec<String> {
    status_files(cluster, ".done")
}

/// Names of the files still waiting to be archived (`archive_status/*.ready`).
pub fn ready_files(cluster: &Cluster) -> Vec<String> {
    status_files(cluster, ".ready")
}

fn status_files(cluster: &Cluster, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(cluster.data_dir().join("pg_wal/archive_status"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(suffix).map(str::to_string))
            .collect();
    names.sort();
    names
}

/// True for a 24-hex-digit WAL segment name.
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Waits until Postgres has archived everything up to now: a WAL switch, then no `.ready`
/// file left and `pg_stat_archiver` reporting the switched segment.
pub fn archive_everything(cluster: &Cluster, timeout: Duration) {
    let last = switch_wal(cluster);
    let start = Instant::now();
    loop {
        let archived =
            cluster.query_string("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        if archived.as_str() >= last.as_str() && ready_files(cluster).is_empty() {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {last} to be archived (last archived: {archived}); server log:\n{}",
                cluster.log_excerpt()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Switches to a new WAL segment and returns the name of the segment just completed.
/// (`pg_walfile_name` of the switch LSN itself names the next segment on PG18, the previous
/// one before; the byte before the switch point is unambiguous everywhere.)
pub fn switch_wal(cluster: &Cluster) -> String {
    let switch: walship_common::Lsn = cluster
        .query_string("select pg_switch_wal()::text")
        .parse()
        .unwrap();
    let before = walship_common::Lsn(switch.0 - 1);
    cluster.query_string(&format!("select pg_walfile_name('{before}'::pg_lsn)"))
}

/// A copy of a running cluster's data directory made with the low-level backup API
/// (`pg_backup_start`/`pg_backup_stop`, or `pg_start_backup`/`pg_stop_backup` on 13-14),
/// which every major supports, with `backup_label` written verbatim. `pg_wal` is left empty:
/// recovery must get its WAL from the archive. Returns the stop LSN.
pub fn low_level_copy(cluster: &Cluster, dest: &Path) -> String {
    let mut client = cluster.client();
    let major = cluster.install().major;
    if major >= 15 {
        client
            .simple_query("select pg_backup_start('walship-test', true)")
            .unwrap();
    } else {
        client
            .simple_query("select pg_start_backup('walship-test', true, false)")
            .unwrap();
    }
    copy_data_dir(cluster.data_dir(), dest);
    let stop_sql = if major >= 15 {
        "select lsn::text, labelfile, spcmapfile from pg_backup_stop(true)"
    } else {
        "select lsn::text, labelfile, spcmapfile from pg_stop_backup(false, true)"
    };
    let row = client.query_one(stop_sql, &[]).unwrap();
    let lsn: String = row.get(0);
    let label: String = row.get(1);
    let spcmap: Option<String> = row.get(2);
    std::fs::write(dest.join("backup_label"), label).unwrap();
    if let Some(map) = spcmap.filter(|m| !m.is_empty()) {
        std::fs::write(dest.join("tablespace_map"), map).unwrap();
    }
    lsn
}

fn copy_data_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if matches!(
            name.as_str(),
            "postmaster.pid" | "postmaster.opts" | "log" | "backup_label"
        ) {
            continue;
        }
        let from = entry.path();
        let to = dest.join(&name);
        if name == "pg_wal" {
            std::fs::create_dir_all(to.join("archive_status")).unwrap();
            continue;
        }
        let file_type = entry.file_type().unwrap();
        if file_type.is_dir() {
            copy_data_dir(&from, &to);
        } else if file_type.is_file() {
            // Files may shrink or vanish while the server runs: that is what the WAL repairs.
            let _ = std::fs::copy(&from, &to);
        }
    }
}

/// Gives `dir` (recursively) to the owner of `like`, so the cluster user can use it.
pub fn chown_tree_like(dir: &Path, like: &Path) {
    chown_like(dir, like);
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            chown_tree_like(&entry.unwrap().path(), like);
        }
    }
}

/// The Postgres 15 install under test (the Debian tools referee 15), else the first one;
/// `None` (after the harness's loud skip) when none is installed.
pub fn pg15_or_first() -> Option<pg_test_harness::PgInstall> {
    let installs = pg_test_harness::installs_under_test();
    installs
        .iter()
        .find(|i| i.major == 15)
        .or(installs.first())
        .cloned()
}
