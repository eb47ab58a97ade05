//! Making a [`Cluster`]: initdb into a fresh work directory, or adopt an existing data directory.

use std::path::{Path, PathBuf};

use super::{Cluster, describe, run};
use crate::install::PgInstall;
use crate::os_user;

/// Options for a new cluster: extra postgresql.conf settings and initdb arguments.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    install: PgInstall,
    settings: Vec<(String, String)>,
    initdb_args: Vec<String>,
}

impl ClusterBuilder {
    pub(super) fn new(install: &PgInstall) -> Self {
        ClusterBuilder {
            install: install.clone(),
            settings: Vec::new(),
            initdb_args: Vec::new(),
        }
    }

    /// Adds a postgresql.conf line `name = value`; the caller quotes `value` when Postgres needs
    /// it (`setting("archive_command", "'/bin/true'")`).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds an initdb argument, e.g. `--wal-segsize=1`. They come after the harness's own
    /// (`--data-checksums -U postgres -A trust --encoding=UTF8 --locale=C --no-sync`), so they
    /// can override them.
    pub fn initdb_arg(mut self, arg: &str) -> Self {
        self.initdb_args.push(arg.to_owned());
        self
    }

    /// initdb, then start. Panics (with initdb's output or the server log) on failure.
    pub fn start(self) -> Cluster {
        let mut cluster = self.init();
        cluster.start();
        cluster
    }

    /// initdb only: the cluster is configured but not running.
    pub fn init(self) -> Cluster {
        let work = os_user::test_dir(&format!("pg{}", self.install.major));
        let data_dir = work.path().join("data");
        let mut initdb = self.install.command("initdb");
        initdb
            .current_dir(work.path())
            .arg("-D")
            .arg(&data_dir)
            .args(["--data-checksums", "-U", "postgres", "-A", "trust"])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .args(&self.initdb_args);
        os_user::run_as_cluster_owner(&mut initdb);
        let out = run(&mut initdb);
        if !out.status.success() {
            panic!(
                "initdb of PG{} into {} failed: {}",
                self.install.major,
                data_dir.display(),
                describe(&out)
            );
        }
        let cluster = adopt(&self.install, data_dir, work);
        for (name, value) in &self.settings {
            cluster.append_conf(&format!("{name} = {value}"));
        }
        cluster
    }

    /// Wraps an existing data directory (e.g. a restored copy) as a stopped cluster: gives it to
    /// the cluster user, sets mode 0700, and appends the harness's listen/port/socket settings.
    /// The data directory itself is left in place on drop (its creator owns it).
    pub fn from_data_dir(install: &PgInstall, dir: &Path) -> Cluster {
        let work = os_user::test_dir(&format!("pg{}-copy", install.major));
        os_user::chown_to_owner_recursive(dir)
            .unwrap_or_else(|e| panic!("giving {} to the cluster user: {e}", dir.display()));
        os_user::set_mode(dir, 0o700).unwrap_or_else(|e| panic!("{e}"));
        adopt(install, dir.to_path_buf(), work)
    }
}

/// Builds the Cluster value and appends the harness's connection settings.
fn adopt(install: &PgInstall, data_dir: PathBuf, work: tempfile::TempDir) -> Cluster {
    let socket_dir = work.path().join("sock");
    std::fs::create_dir(&socket_dir)
        .and_then(|()| os_user::chown_to_owner_recursive(&socket_dir))
        .and_then(|()| os_user::set_mode(&socket_dir, 0o700))
        .unwrap_or_else(|e| panic!("creating socket dir {}: {e}", socket_dir.display()));
    let cluster = Cluster {
        install: install.clone(),
        log_path: work.path().join("server.log"),
        port: crate::ports::free_port(),
        data_dir,
        socket_dir,
        work,
    };
    cluster.append_conf("\n# pg-test-harness");
    cluster.append_conf("listen_addresses = '127.0.0.1'");
    cluster.append_conf(&format!("port = {}", cluster.port));
    cluster.append_conf(&format!(
        "unix_socket_directories = '{}'",
        cluster.socket_dir.display()
    ));
    cluster
}
