//! What every command needs before it starts: the merged configuration, an async runtime,
//! the repository, and one way to report an error and pick the exit code.

use std::ffi::OsString;
use std::future::Future;

use walship_common::config::{Config, ConfigError, Options, Sources};
use walship_common::repo::Repository;
use walship_common::storage::{AnyStorage, StorageError};

use crate::cli::GlobalArgs;

/// A command's environment: configuration (flags over `WALSHIP_*` over the file) and runtime.
pub struct Context {
    /// The merged, validated configuration.
    pub config: Config,
    command: &'static str,
    /// Built on first use: the prefetch spool's fast path of `fetch` never needs one, and
    /// its threads and their memory cost every `restore_command` call.
    runtime: std::sync::OnceLock<tokio::runtime::Runtime>,
    /// The exit code if the runtime cannot start (that of a configuration error).
    failure: u8,
    passthrough: Vec<OsString>,
    /// When the command started (loading its configuration).
    started: std::time::Instant,
}

impl Context {
    /// Loads the configuration for `command` from `options` (the flags), the environment and
    /// the config file. `failure` is the exit code should the async runtime fail to start.
    pub fn load(
        command: &'static str,
        global: &GlobalArgs,
        mut options: Options,
        failure: u8,
    ) -> Result<Context, String> {
        let started = std::time::Instant::now();
        options.config = global.config.clone();
        options.repo = global.repo.clone();
        if !global.fallback_repo.is_empty() {
            options.fallback_repos = Some(global.fallback_repo.join(","));
        }
        let mut passthrough = Vec::new();
        if let Some(config) = &global.config {
            passthrough.push(OsString::from("--config"));
            passthrough.push(config.clone().into_os_string());
        }
        if let Some(repo) = &global.repo {
            passthrough.push(OsString::from("--repo"));
            passthrough.push(OsString::from(repo));
        }
        let sources = Sources::from_process(options)
            .map_err(|e: ConfigError| format!("walship {command}: {e}"))?;
        // A misspelt variable would otherwise be ignored in silence. A warning only (stderr,
        // which Postgres logs): archive and fetch go on with what is set correctly.
        for unknown in sources.unknown_env_vars() {
            eprintln!("walship {command}: warning: {unknown}");
        }
        let config =
            Config::load(&sources).map_err(|e: ConfigError| format!("walship {command}: {e}"))?;
        Ok(Context {
            config,
            command,
            runtime: std::sync::OnceLock::new(),
            failure,
            passthrough,
            started,
        })
    }

    /// Runs a future to completion on the command's runtime (started on first use; if it
    /// cannot start, the process exits with the command's failure code).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.block_on_with(true, future)
    }

    /// [`Context::block_on`] on a runtime whose only thread is the caller's: the thread that
    /// waits for the network is the one that handles what arrives, with no hand-over to a
    /// worker thread per read. For `backup`, whose receive loop wakes for every few dozen
    /// KiB the server sends: a multi-thread runtime made 36,000-160,000 context switches
    /// for a 0.75 GiB backup and this one 6,000-60,000, for about 30 % less CPU (measured
    /// in BENCHMARKS.md). CPU-heavy work must stay on threads of its own (the bundler's
    /// blocking thread and compressors), as it does in `backup`.
    pub fn block_on_current_thread<F: Future>(&self, future: F) -> F::Output {
        self.block_on_with(false, future)
    }

    fn block_on_with<F: Future>(&self, multi_thread: bool, future: F) -> F::Output {
        let runtime = self.runtime.get_or_init(|| {
            let mut builder = if multi_thread {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(2);
                builder
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            builder.enable_all().build().unwrap_or_else(|e| {
                eprintln!("walship {}: start the async runtime: {e}", self.command);
                std::process::exit(i32::from(self.failure))
            })
        });
        runtime.block_on(future)
    }

    /// Opens the configured repository (nothing is contacted yet). Every storage request,
    /// retries included, ends within `s3.timeout`. For `fetch`, Postgres waits on every call:
    /// all its requests together end within `fetch.timeout` of the start of the process (the
    /// prefetch worker, which lives on, gets it per request).
    pub async fn open_repository(&self) -> Result<Repository, StorageError> {
        self.open_repository_as_of(None).await
    }

    /// [`Context::open_repository`], or with `as_of` a read-only view of it as it was at that
    /// time (`--as-of`), after asking the bucket whether it keeps older versions.
    pub async fn open_repository_as_of(
        &self,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Repository, StorageError> {
        let mut s3 = self.config.s3.to_options();
        match self.command {
            "fetch" => {
                s3.retry.deadline = Some(self.config.fetch.timeout);
                s3.retry.not_after = Some(self.started + self.config.fetch.timeout);
            }
            "fetch-worker" => s3.retry.deadline = Some(self.config.fetch.timeout),
            _ => {}
        }
        self.open_repository_at(&self.config.repo, s3, as_of).await
    }

    /// Opens the `n`th fallback repository (`fallback_repos`) with the settings of the
    /// configured one (and the same `--as-of` view); for `fetch` its requests get a
    /// `fetch.timeout` of their own from now, so that an unreachable repository before it
    /// cannot use up its time.
    pub async fn open_fallback(
        &self,
        n: usize,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Option<Result<Repository, StorageError>> {
        let url = self.config.fallback_repos.get(n)?;
        let mut s3 = self.config.s3.to_options();
        if self.command == "fetch" {
            s3.retry.deadline = Some(self.config.fetch.timeout);
            s3.retry.not_after = Some(std::time::Instant::now() + self.config.fetch.timeout);
        }
        Some(self.open_repository_at(url, s3, as_of).await)
    }

    async fn open_repository_at(
        &self,
        url: &str,
        s3: walship_common::storage::S3Options,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Repository, StorageError> {
        let mut storage = AnyStorage::open(url, &s3).await?;
        // Checked when the configuration was loaded: Ok(None) when off.
        let lock = self.config.lock_policy().ok().flatten();
        // The commands that create WAL and backups refuse a bucket that would silently
        // ignore the lock (once per process: two requests).
        if lock.is_some() && matches!(self.command, "archive" | "backup" | "stream") {
            storage
                .require_object_lock(self.config.s3.object_lock.as_str())
                .await?;
        }
        if let Some(time) = as_of {
            storage = storage.as_of(time).await?;
        }
        Ok(Repository::new(storage, self.config.compression)
            .with_key_file(self.config.encryption.key_file.clone())
            .with_passphrase_command(self.config.encryption.passphrase_command.clone())
            .with_object_lock(lock))
    }

    /// Reports `err` (with its chain of causes) once on stderr and returns `code`.
    pub fn fail(&self, code: u8, err: &dyn std::error::Error) -> u8 {
        let mut message = format!("walship {}: error: {err}", self.command);
        let mut source = err.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(&format!(": {text}"));
            }
            source = cause.source();
        }
        eprintln!("{message}");
        code
    }

    /// The global flags (`--config`, `--repo`) this process was given, to pass on to a
    /// child walship process so that it sees the same repository.
    pub fn global_args(&self) -> &[OsString] {
        &self.passthrough
    }
}
