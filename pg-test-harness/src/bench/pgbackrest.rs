//! pgBackRest as the peer of the benches: a posix repository with lz4 and `process-max` = the
//! machine's cores, a stanza created against a running cluster, and its commands run as the
//! cluster user: `archive-push` (synchronous or asynchronous: `archive-async`, spool
//! directory) for `bench archive`; the same as an `archive_command`, `backup --type=full` and
//! `restore` for `bench backup` and `bench restore`; `verify` for `bench verify`.
//!
//! `stanza-create` connects to the cluster and checks that `pg1-path` is its data directory.
//! `archive-push` then reads only `pg1-path/global/pg_control` (system identifier, version)
//! and, in async mode, `pg1-path/pg_wal/archive_status`: so the pushes point `pg1-path` at the
//! bench's scratch directory, which holds a copy of `pg_control` and the segments.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{Cluster, S3Server};

/// The stanza name the bench uses.
const STANZA: &str = "bench";

/// Which of the stanza's repositories a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRepo {
    /// `repo1`: the posix repository under the setup's directory.
    Posix,
    /// `repo2`: the S3 repository on SeaweedFS, when set up ([`PgBackRest::create_with_s3`]).
    S3,
}

impl PeerRepo {
    fn option(self) -> &'static str {
        match self {
            PeerRepo::Posix => "--repo=1",
            PeerRepo::S3 => "--repo=2",
        }
    }
}

/// A pgBackRest setup under one directory.
#[derive(Debug)]
pub struct PgBackRest {
    program: PathBuf,
    dir: PathBuf,
    /// `repo1-cipher-pass` when the repository is encrypted (`repo1-cipher-type=aes-256-cbc`).
    cipher_pass: Option<String>,
    /// The `repo2-*` lines of an S3 repository on SeaweedFS, when there is one.
    s3_repo: Option<String>,
}

impl PgBackRest {
    /// Sets up `dir` (writable by the cluster user) with repository, spool, log and lock
    /// directories, and creates the stanza against the running `cluster`.
    pub fn create(program: &Path, dir: &Path, cluster: &Cluster) -> Result<PgBackRest> {
        PgBackRest::create_with(program, dir, cluster, None, None)
    }

    /// [`PgBackRest::create`] with a second repository, `repo2`, in the bucket of `s3` (which
    /// must serve HTTPS: [`S3Server::start_https`]; pgBackRest speaks S3 only over TLS),
    /// trusting the server's CA. `archive-push` then stores every segment in both; backups,
    /// restores and verifies name their repository ([`PeerRepo`]).
    pub fn create_with_s3(
        program: &Path,
        dir: &Path,
        cluster: &Cluster,
        s3: &S3Server,
    ) -> Result<PgBackRest> {
        let ca = s3
            .ca_file()
            .context("pgBackRest needs the S3 server to serve HTTPS")?;
        std::fs::create_dir_all(dir)?;
        let ca_copy = dir.join("s3-ca.pem");
        std::fs::copy(&ca, &ca_copy)?;
        let port = s3
            .https_endpoint()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let lines = format!(
            "repo2-type=s3\nrepo2-path=/pgbackrest\nrepo2-s3-bucket={}\n\
             repo2-s3-endpoint=127.0.0.1\nrepo2-storage-port={port}\nrepo2-s3-region={}\n\
             repo2-s3-key={}\nrepo2-s3-key-secret={}\nrepo2-s3-uri-style=path\n\
             repo2-storage-ca-file={}\n",
            s3.bucket,
            s3.region,
            s3.access_key,
            s3.secret_key,
            ca_copy.display()
        );
        PgBackRest::create_with(program, dir, cluster, None, Some(lines))
    }

    /// [`PgBackRest::create`] with an encrypted repository: `repo1-cipher-type=aes-256-cbc`
    /// and a random `repo1-cipher-pass` (pgBackRest's client-side encryption, fixed when the
    /// stanza is created).
    pub fn create_encrypted(program: &Path, dir: &Path, cluster: &Cluster) -> Result<PgBackRest> {
        use rand::distr::{Alphanumeric, SampleString};
        let pass = Alphanumeric.sample_string(&mut rand::rng(), 32);
        PgBackRest::create_with(program, dir, cluster, Some(pass), None)
    }

    fn create_with(
        program: &Path,
        dir: &Path,
        cluster: &Cluster,
        cipher_pass: Option<String>,
        s3_repo: Option<String>,
    ) -> Result<PgBackRest> {
        for sub in ["repo", "spool", "log", "lock"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        crate::chown_to_owner_recursive(dir)?;
        let peer = PgBackRest {
            program: program.to_path_buf(),
            dir: dir.to_path_buf(),
            cipher_pass,
            s3_repo,
        };
        peer.write_conf(
            "stanza.conf",
            cluster.data_dir(),
            false,
            &format!(
                "pg1-port={}\npg1-socket-path={}\npg1-user=postgres\n",
                cluster.port(),
                cluster.socket_dir().display()
            ),
        )?;
        let out = peer
            .command("stanza.conf", &["stanza-create"])
            .output()
            .context("run pgbackrest stanza-create")?;
        if !out.status.success() {
            bail!(
                "pgbackrest stanza-create failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(peer)
    }

    /// Writes the config for pushes from `data_dir` (sync or async) and returns its name.
    pub fn push_conf(&self, data_dir: &Path, async_mode: bool) -> Result<&'static str> {
        let name = if async_mode {
            "async.conf"
        } else {
            "sync.conf"
        };
        self.write_conf(name, data_dir, async_mode, "")?;
        Ok(name)
    }

    /// An `archive_command` pushing `%p` into this repository (the stanza's config, which
    /// points `pg1-path` at the cluster's own data directory).
    pub fn archive_command(&self) -> String {
        format!(
            "{} --config={} --stanza={STANZA} archive-push %p",
            self.program.display(),
            self.dir.join("stanza.conf").display()
        )
    }

    /// `pgbackrest backup --type=full --start-fast` of the stanza's cluster, as the cluster
    /// user. It waits until the backup's last WAL segment is in the repository (archive-check).
    pub fn backup_full(&self, repo: PeerRepo) -> Command {
        self.command(
            "stanza.conf",
            &[repo.option(), "--type=full", "--start-fast", "backup"],
        )
    }

    /// True when the stanza has the S3 repository ([`PgBackRest::create_with_s3`]).
    pub fn has_s3(&self) -> bool {
        self.s3_repo.is_some()
    }

    /// `pgbackrest restore` of the latest backup into `pg_path` (an existing, empty directory
    /// of the cluster user), recovering to consistency and promoting.
    pub fn restore(&self, repo: PeerRepo, pg_path: &Path) -> Command {
        self.command(
            "stanza.conf",
            &[
                repo.option(),
                &format!("--pg1-path={}", pg_path.display()),
                "--type=immediate",
                "--target-action=promote",
                "restore",
            ],
        )
    }

    /// `pgbackrest verify` of the stanza's repository (every backup file and WAL segment read
    /// and checked against its checksum), as the cluster user; it exits non-zero when it finds
    /// an error. `--output=text --verbose` prints its results (`archiveId: ..., total WAL
    /// checked`, `backup: ..., status: valid`): without them 2.45 prints nothing.
    pub fn verify(&self, repo: PeerRepo) -> Command {
        self.command(
            "stanza.conf",
            &[
                repo.option(),
                "--log-level-console=info",
                "--output=text",
                "--verbose",
                "verify",
            ],
        )
    }

    /// `pgbackrest info --output=json` of the stanza, parsed.
    pub fn info(&self) -> Result<serde_json::Value> {
        let out = self
            .command("stanza.conf", &["--output=json", "info"])
            .output()
            .context("run pgbackrest info")?;
        if !out.status.success() {
            bail!(
                "pgbackrest info failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("parse pgbackrest info --output=json")
    }

    /// `pgbackrest --config <conf> --stanza bench archive-push <segment>` as the cluster user.
    pub fn archive_push(&self, conf: &str, segment: &Path) -> Command {
        let mut cmd = self.command(conf, &["archive-push"]);
        cmd.arg(segment);
        cmd
    }

    /// The repository directory.
    pub fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    /// Empties the repository's WAL archive and the spool, keeping the stanza.
    pub fn clear_archive(&self) -> Result<()> {
        let archive = self.repo().join("archive").join(STANZA);
        for entry in std::fs::read_dir(&archive)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            }
        }
        let spool = self.dir.join("spool");
        std::fs::remove_dir_all(&spool)?;
        std::fs::create_dir(&spool)?;
        crate::chown_to_owner_recursive(&spool)?;
        Ok(())
    }

    fn command(&self, conf: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!("--config={}", self.dir.join(conf).display()))
            .arg(format!("--stanza={STANZA}"))
            .args(args);
        crate::os_user::run_as_cluster_owner(&mut cmd);
        cmd
    }

    fn write_conf(&self, name: &str, pg_path: &Path, async_mode: bool, extra: &str) -> Result<()> {
        let d = &self.dir;
        let text = format!(
            "[global]\nrepo1-path={}\ncompress-type=lz4\nlog-path={}\nlock-path={}\n\
             spool-path={}\nlog-level-console=warn\nlog-level-stderr=error\nlog-level-file=off\n\
             archive-async={}\nprocess-max={}\n\n[{STANZA}]\npg1-path={}\n{extra}",
            d.join("repo").display(),
            d.join("log").display(),
            d.join("lock").display(),
            d.join("spool").display(),
            if async_mode { "y" } else { "n" },
            std::thread::available_parallelism().map_or(2, |n| n.get()),
            pg_path.display(),
        );
        let text = match &self.s3_repo {
            Some(lines) => text.replacen("[global]\n", &format!("[global]\n{lines}"), 1),
            None => text,
        };
        let text = match &self.cipher_pass {
            Some(pass) => text.replacen(
                "[global]\n",
                &format!("[global]\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={pass}\n"),
                1,
            ),
            None => text,
        };
        let path = d.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    }
}
