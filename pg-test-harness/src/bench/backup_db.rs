//! The database of `bench backup` and `bench restore`: a PostgreSQL cluster holding a pgbench
//! database of a given scale (200 is about 3 GiB), archiving its WAL into every repository the
//! benches back up to (a walship filesystem repository, a walship SeaweedFS repository, and
//! pgBackRest's when it is installed), and the backups of it, each measured and checked.
//!
//! `pgbench -i` runs while `archive_command` is `/bin/true` (this scratch cluster's init WAL
//! is of no use to anyone, and archiving 3 GiB of it three times would only slow the set-up);
//! the real command, which pushes each segment into every repository in turn, is set before
//! any backup starts, so each backup's WAL is in each repository.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::fetch::PGBENCH_CHECK;
use super::pgbackrest::{PeerRepo, PgBackRest};
use super::wal_load::{self, SEGMENT_BYTES};
use super::walship_bin::{WalshipRepo, tree_bytes, walship_binary};
use super::{Measurement, find_peer, measure};
use crate::{Cluster, PgInstall, S3Server};

/// pgbench scale when `--scale` is not given: about 3 GiB of data directory.
pub const DEFAULT_SCALE: usize = 200;
/// The memory aim for `walship backup` and `walship restore`, whatever the size.
pub const AIM_RSS_MIB: f64 = 256.0;
/// pgbench transactions per client run after the init, so history and balances are not empty.
const TRANSACTIONS_PER_CLIENT: &str = "500";

/// A pgbench database archiving into the benches' repositories.
#[derive(Debug)]
pub struct BenchDb {
    /// The Postgres install (15 when present).
    pub install: PgInstall,
    /// The running cluster.
    pub cluster: Cluster,
    /// The walship binary under test.
    pub walship: PathBuf,
    /// walship's filesystem repository.
    pub file_repo: WalshipRepo,
    /// walship's SeaweedFS repository, when an S3 server was given.
    pub s3_repo: Option<WalshipRepo>,
    /// With `--encrypt`: walship's encrypted filesystem repository (`[encryption] key_file`).
    pub encrypted_repo: Option<WalshipRepo>,
    /// pgBackRest (stanza created, archiving), when installed and usable.
    pub peer: Option<PgBackRest>,
    /// `pgbackrest version`, when used.
    pub peer_version: Option<String>,
    /// The pgbench scale.
    pub scale: usize,
    /// Bytes of the data directory without `pg_wal`: the figure MB/s is computed from.
    pub data_bytes: u64,
    /// The answer of [`PGBENCH_CHECK`] on the primary: what every restore must hold.
    pub expected: String,
    /// 1-minute load averages sampled along the run.
    pub load: Vec<f64>,
    work: tempfile::TempDir,
}

/// What the bench database runs on: the install, settings beyond the benches' own, and
/// whether pgBackRest (when installed) archives and backs up beside walship.
#[derive(Debug)]
pub struct DbSetup {
    /// The Postgres install.
    pub install: PgInstall,
    /// Further settings (name, already-quoted value).
    pub settings: Vec<(&'static str, &'static str)>,
    /// Set up pgBackRest when it is installed.
    pub peers: bool,
}

/// One measured backup or restore, and what it stored.
#[derive(Debug, Clone)]
pub struct Run {
    /// The child process that did it.
    pub run: Measurement,
    /// Bytes the repository (or directory) holds for it.
    pub stored_bytes: u64,
}

impl BenchDb {
    /// Creates the cluster, loads pgbench at `scale`, sets up the repositories (S3 when `s3`
    /// is given, an encrypted filesystem repository with `encrypt`, pgBackRest when installed)
    /// and starts archiving into all of them.
    pub fn create(
        scale: usize,
        s3: Option<&S3Server>,
        walship: Option<&Path>,
        encrypt: bool,
    ) -> Result<BenchDb> {
        let setup = DbSetup {
            install: wal_load::bench_install()?,
            settings: Vec::new(),
            peers: true,
        };
        BenchDb::create_with(setup, scale, s3, walship, encrypt)
    }

    /// [`BenchDb::create`] on `setup`'s install, with its extra settings, and pgBackRest only
    /// when `setup.peers`.
    pub fn create_with(
        setup: DbSetup,
        scale: usize,
        s3: Option<&S3Server>,
        walship: Option<&Path>,
        encrypt: bool,
    ) -> Result<BenchDb> {
        let walship = walship_binary(walship)?;
        let install = setup.install;
        let work = crate::test_dir("bench-backup");
        let mut builder = Cluster::builder(&install)
            .setting("archive_mode", "on")
            .setting("archive_command", "'/bin/true'")
            .setting("max_wal_size", "'2GB'")
            .setting("checkpoint_timeout", "'30min'")
            .setting("synchronous_commit", "off");
        for (name, value) in &setup.settings {
            builder = builder.setting(name, value);
        }
        let cluster = builder.start();
        let mut load = vec![loadavg()];
        eprintln!("bench: PG{} pgbench -i -s {scale}...", install.major);
        let s = scale.to_string();
        wal_load::pgbench(&cluster, &["-i", "-q", "-I", "dtGvp", "-s", &s])?;
        let t = TRANSACTIONS_PER_CLIENT;
        wal_load::pgbench(&cluster, &["-n", "-c", "2", "-j", "2", "-t", t])?;

        let file_repo = WalshipRepo::local(work.path(), "repo-file")?;
        let s3_repo = match s3 {
            Some(s3) => Some(WalshipRepo::s3(work.path(), s3, "bench-backup")?),
            None => None,
        };
        let encrypted_repo = if encrypt {
            let repo = WalshipRepo::local(work.path(), "repo-file-encrypted")?;
            repo.encrypt(&walship)?;
            Some(repo)
        } else {
            None
        };
        let (peer, peer_version) = match find_peer("pgbackrest").filter(|_| setup.peers) {
            Some(tool) => {
                let dir = work.path().join("pgbackrest");
                // With an HTTPS SeaweedFS, pgBackRest gets a repository on it too: the
                // S3 comparison is then walship and pgBackRest on the same server.
                let created = match s3.filter(|s3| s3.ca_file().is_some()) {
                    Some(s3) => PgBackRest::create_with_s3(&tool.path, &dir, &cluster, s3),
                    None => PgBackRest::create(&tool.path, &dir, &cluster),
                };
                match created {
                    Ok(peer) => (Some(peer), Some(tool.version)),
                    Err(e) => {
                        eprintln!("bench: SKIP pgbackrest: {e:#}");
                        (None, None)
                    }
                }
            }
            None => (None, None),
        };
        let mut commands = vec![file_repo.shell_command(&walship, "archive %p")];
        commands.extend(
            s3_repo
                .iter()
                .map(|r| r.shell_command(&walship, "archive %p")),
        );
        commands.extend(
            encrypted_repo
                .iter()
                .map(|r| r.shell_command(&walship, "archive %p")),
        );
        commands.extend(peer.iter().map(PgBackRest::archive_command));
        let archive_command = commands.join(" && ");
        cluster.execute(&format!(
            "alter system set archive_command = '{archive_command}'"
        ));
        cluster.execute("select pg_reload_conf()");
        let mut db = BenchDb {
            data_bytes: 0,
            expected: cluster.query_string(PGBENCH_CHECK),
            install,
            cluster,
            walship,
            file_repo,
            s3_repo,
            encrypted_repo,
            peer,
            peer_version,
            scale,
            load: Vec::new(),
            work,
        };
        // Flush the load now: otherwise the first tool's `--checkpoint fast` writes the whole
        // freshly loaded database to disk and the tools after it find nothing to write.
        db.cluster.execute("checkpoint");
        db.archive_all()?;
        let data = db.cluster.data_dir();
        db.data_bytes = tree_bytes(data)? - tree_bytes(&data.join("pg_wal"))?;
        load.push(loadavg());
        db.load = load;
        eprintln!(
            "bench: {:.2} GiB of data ({}); archive_command = '{archive_command}'",
            db.data_bytes as f64 / (1u64 << 30) as f64,
            db.expected
        );
        Ok(db)
    }

    /// Leaves the scratch directory in place when the bench ends (`--keep`).
    pub fn keep_work(&mut self) {
        self.work.disable_cleanup(true);
    }

    /// The bench's scratch directory (owned by the cluster user).
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// Switches WAL and waits until the archiver has pushed everything up to the switch.
    pub fn archive_all(&self) -> Result<()> {
        let switch =
            wal_load::parse_lsn(&self.cluster.query_string("select pg_switch_wal()::text"))?;
        let last = wal_load::segment_name(1, (switch - 1) / SEGMENT_BYTES);
        wal_load::wait_archived(&self.cluster, &last, Duration::from_secs(600))
    }

    /// Records the current load average.
    pub fn sample_load(&mut self) {
        self.load.push(loadavg());
    }

    /// `walship backup --checkpoint fast` into `repo`, measured, then checked: `walship list`
    /// shows it, and its manifest holds every file of Postgres's own `backup_manifest` with
    /// the same size. The stored size is the manifest's `bytes_stored`.
    pub fn walship_backup(&self, repo: &WalshipRepo, what: &str) -> Result<Run> {
        Ok(self.walship_backup_with(repo, what, &[])?.0)
    }

    /// [`BenchDb::walship_backup`] with `extra` arguments (e.g. `--incremental`); also
    /// returns the backup's `--json` summary.
    pub fn walship_backup_with(
        &self,
        repo: &WalshipRepo,
        what: &str,
        extra: &[&str],
    ) -> Result<(Run, Value)> {
        eprintln!("bench: walship backup {extra:?} to {}", repo.url);
        let conn = format!("host=127.0.0.1 port={} user=postgres", self.cluster.port());
        let mut args = vec!["backup", "-d", &conn, "--checkpoint", "fast", "--json"];
        args.extend_from_slice(extra);
        let mut cmd = repo.command(&self.walship, &args);
        let (run, stdout) = self.measured(&mut cmd, &format!("walship-backup-{what}"))?;
        let summary: Value = serde_json::from_str(&stdout)
            .with_context(|| format!("walship backup --json printed {stdout:?}"))?;
        let id = summary["id"]
            .as_str()
            .with_context(|| format!("no id in {summary}"))?
            .to_owned();
        let listed = self.walship_json(repo, &["list", "--json"])?;
        let found = listed
            .as_array()
            .is_some_and(|all| all.iter().any(|b| b["id"].as_str() == Some(id.as_str())));
        if !found {
            bail!(
                "walship list of {} does not show backup {id}: {listed}",
                repo.url
            );
        }
        let manifest = self.walship_json(repo, &["info", &id, "--json"])?;
        check_against_pg_manifest(&manifest)
            .with_context(|| format!("backup {id} in {}", repo.url))?;
        let stored_bytes = manifest["bytes_stored"]
            .as_u64()
            .with_context(|| format!("backup {id} has no bytes_stored"))?;
        Ok((Run { run, stored_bytes }, summary))
    }

    /// `pgbackrest backup --type=full` into `repo`, measured, checked with `pgbackrest info`
    /// (one more full backup in that repository, whose stored size `info` reports). None
    /// without pgBackRest, or for [`PeerRepo::S3`] when pgBackRest has no S3 repository.
    pub fn pgbackrest_backup(&self, repo: PeerRepo) -> Result<Option<Run>> {
        let Some(peer) = self
            .peer
            .as_ref()
            .filter(|p| repo == PeerRepo::Posix || p.has_s3())
        else {
            return Ok(None);
        };
        eprintln!("bench: pgbackrest backup --type=full ({repo:?} repository)");
        let before = full_backups(&peer.info()?, repo);
        let name = format!("pgbackrest-backup-{repo:?}").to_lowercase();
        let (run, _) = self.measured(&mut peer.backup_full(repo), &name)?;
        let info = peer.info()?;
        let after = full_backups(&info, repo);
        if after.len() != before.len() + 1 {
            bail!(
                "pgbackrest info lists {} full backups in the {repo:?} repository after the \
                 backup, {} before",
                after.len(),
                before.len()
            );
        }
        let stored_bytes = after
            .last()
            .and_then(|b| b["info"]["repository"]["size"].as_u64())
            .with_context(|| format!("pgbackrest info gives no stored size: {info}"))?;
        Ok(Some(Run { run, stored_bytes }))
    }

    /// Runs `cmd` measured, its stdout and stderr in files named after `name` in the scratch
    /// directory; fails with its stderr unless it exits 0. Returns the measurement and stdout.
    pub fn measured(&self, cmd: &mut Command, name: &str) -> Result<(Measurement, String)> {
        let out_path = self.work().join(format!("{name}.out"));
        let err_path = self.work().join(format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?);
        let run = measure(cmd)?;
        let stdout = std::fs::read_to_string(&out_path)?;
        if !run.status.success() {
            bail!(
                "{name}: {:?} failed with {}: {}",
                cmd.get_program(),
                run.status,
                std::fs::read_to_string(&err_path)?
            );
        }
        Ok((run, stdout))
    }

    /// `walship <args>` against `repo`, its stdout parsed as JSON.
    fn walship_json(&self, repo: &WalshipRepo, args: &[&str]) -> Result<Value> {
        let out = repo.command(&self.walship, args).output()?;
        if !out.status.success() {
            bail!(
                "walship {args:?} on {} failed: {}",
                repo.url,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("walship {args:?} --json"))
    }
}

/// Every file of Postgres's `backup_manifest` (inside walship's manifest) is in walship's file
/// list with the same size.
fn check_against_pg_manifest(manifest: &Value) -> Result<()> {
    let pg_text = manifest["pg_backup_manifest"]
        .as_str()
        .context("the manifest has no pg_backup_manifest")?;
    let pg: Value = serde_json::from_str(pg_text).context("parse Postgres's backup_manifest")?;
    let ours: HashMap<&str, u64> = manifest["files"]
        .as_array()
        .context("the manifest has no files")?
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?, f["size"].as_u64()?)))
        .collect();
    let theirs = pg["Files"]
        .as_array()
        .context("backup_manifest has no Files")?;
    for file in theirs {
        let path = file["Path"]
            .as_str()
            .context("a Files entry without Path")?;
        let size = file["Size"]
            .as_u64()
            .context("a Files entry without Size")?;
        match ours.get(path) {
            Some(&ours) if ours == size => {}
            Some(&ours) => {
                bail!("{path}: {ours} bytes in walship's manifest, {size} in Postgres's")
            }
            None if path == "backup_label" || path == "tablespace_map" => {}
            None => bail!("{path} (in Postgres's backup_manifest) is not in walship's manifest"),
        }
    }
    if theirs.len() < 100 {
        bail!(
            "Postgres's backup_manifest lists only {} files",
            theirs.len()
        );
    }
    Ok(())
}

/// Full backups listed by `pgbackrest info --output=json`.
/// The full backups `pgbackrest info --output=json` lists in `repo`, oldest first.
fn full_backups(info: &Value, repo: PeerRepo) -> Vec<Value> {
    let key = match repo {
        PeerRepo::Posix => 1,
        PeerRepo::S3 => 2,
    };
    info.as_array()
        .and_then(|stanzas| stanzas.first())
        .and_then(|stanza| stanza["backup"].as_array())
        .map_or_else(Vec::new, |backups| {
            backups
                .iter()
                .filter(|b| b["type"].as_str() == Some("full"))
                .filter(|b| b["database"]["repo-key"].as_u64() == Some(key))
                .cloned()
                .collect()
        })
}

/// The 1-minute load average (0 when /proc/loadavg cannot be read).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The end of a restore report: how long Postgres took to recover each restored directory,
/// and the load average along the run.
pub fn recoveries_and_load(recoveries: &[(String, Duration)], load: &[f64]) -> String {
    let mut out =
        String::from("Postgres recovery of each restored directory (start to promotion):");
    for (what, wall) in recoveries {
        out.push_str(&format!(" {what} {:.1} s;", wall.as_secs_f64()));
    }
    out.push_str(&format!(
        "\n1-minute load average during the run: {}\n\n",
        load_range(load)
    ));
    out
}

/// `min-max` of the load samples, for the report.
pub fn load_range(samples: &[f64]) -> String {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(0.0, f64::max);
    format!("{min:.1}-{max:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_files_with_postgres_manifest() {
        let files: Vec<Value> = (0..100)
            .map(|i| serde_json::json!({"Path": format!("base/1/{i}"), "Size": i}))
            .collect();
        let mut all = files.clone();
        all.push(serde_json::json!({"Path": "backup_label", "Size": 200}));
        let pg = serde_json::json!({"Files": all}).to_string();
        let ours: Vec<Value> = (0..100)
            .map(|i| serde_json::json!({"path": format!("base/1/{i}"), "size": i}))
            .collect();
        let good = serde_json::json!({"pg_backup_manifest": pg, "files": ours});
        check_against_pg_manifest(&good).unwrap();
        let mut short = ours.clone();
        short[7] = serde_json::json!({"path": "base/1/7", "size": 8});
        let bad = serde_json::json!({"pg_backup_manifest": pg, "files": short});
        let err = check_against_pg_manifest(&bad).unwrap_err().to_string();
        assert!(err.contains("base/1/7"), "{err}");
        let missing = serde_json::json!({"pg_backup_manifest": pg, "files": &ours[1..]});
        assert!(check_against_pg_manifest(&missing).is_err());
    }

    #[test]
    fn counts_full_backups_and_formats_load() {
        let repo = |n: u64| serde_json::json!({"repo-key": n});
        let info = serde_json::json!([{"backup": [
            {"type": "full", "database": repo(1), "label": "a"},
            {"type": "incr", "database": repo(1)},
            {"type": "full", "database": repo(2), "label": "b"},
            {"type": "full", "database": repo(1), "label": "c"},
        ]}]);
        let labels = |r| -> Vec<String> {
            full_backups(&info, r)
                .iter()
                .map(|b| b["label"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(labels(PeerRepo::Posix), ["a", "c"]);
        assert_eq!(labels(PeerRepo::S3), ["b"]);
        assert!(full_backups(&serde_json::json!([]), PeerRepo::Posix).is_empty());
        assert_eq!(load_range(&[2.0, 5.5, 3.25]), "2.0-5.5");
    }
}
