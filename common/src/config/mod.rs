//! walship's configuration, merged once from three layers into a validated [`Config`]:
//! command-line flags ([`Options`], filled by the binary from clap) override `WALSHIP_*`
//! environment variables, which override the TOML file, which overrides the defaults.
//!
//! The file is `--config FILE`, else `$WALSHIP_CONFIG`, else `/etc/walship/walship.toml` when it
//! exists; a file named by the flag or the variable must exist. Every key, its environment
//! variable and its flag are listed in one table (`keys.rs`), so each value is parsed and
//! checked the same way wherever it is set, and each error names the key, the value and where it
//! came from. Unknown keys in the file are errors. Durations use humantime (`10s`, `500ms`),
//! sizes take binary units (`64MiB`).
//!
//! | key | environment | default |
//! |---|---|---|
//! | `repo` | `WALSHIP_REPO` | none: required |
//! | `compression` | `WALSHIP_COMPRESSION` | `lz4` (`none`, `lz4`, `zstd`, `zstd:N`) |
//! | `[s3] endpoint`, `region` | `WALSHIP_S3_ENDPOINT`, `WALSHIP_S3_REGION` | from the AWS chain |
//! | `[s3] path_style` | `WALSHIP_S3_PATH_STYLE` | true when an endpoint is set |
//! | `[s3] connect_timeout`, `operation_timeout` | `WALSHIP_S3_CONNECT_TIMEOUT`, ... | `10s`, `2m` |
//! | `[s3] max_attempts`, `part_size` | `WALSHIP_S3_MAX_ATTEMPTS`, ... | `5`, `64MiB` |
//! | `[s3] timeout` | `WALSHIP_S3_TIMEOUT` | `2m`: one storage request, retries included |
//! | `[s3] object_lock`, `object_lock_margin` | `WALSHIP_S3_OBJECT_LOCK`, ... | `off` (`governance`, `compliance`), `1d` |
//! | `[archive] async`, `parallel`, `read_ahead` | `WALSHIP_ARCHIVE_ASYNC`, ... | `false`, `4`, `8` |
//! | `[fetch] prefetch`, `parallel`, `spool_dir`, `allow_partial` | `WALSHIP_FETCH_PREFETCH`, ... | `8`, `4`, none, `false` |
//! | `[fetch] timeout` | `WALSHIP_FETCH_TIMEOUT` | `30s`: all storage requests of one `walship fetch` |
//! | `[backup] bundle_size`, `parallel`, `expire`, `max_chain` | `WALSHIP_BACKUP_BUNDLE_SIZE`, ... | `64MiB`, number of cores, `false`, `6` |
//! | `[restore] parallel` | `WALSHIP_RESTORE_PARALLEL` | `4` |
//! | `[stream] slot`, `partial_interval`, `application_name` | `WALSHIP_STREAM_SLOT`, ... | `walship`, `1s`, `walship` |
//! | `[stream] stop_timeout` | `WALSHIP_STREAM_STOP_TIMEOUT` | `20s`: after SIGTERM, give up storing |
//! | `[retention] pitr_window`, `daily`, `weekly`, `monthly`, `yearly` | `WALSHIP_RETENTION_PITR_WINDOW`, ... | none (`expire` refuses without one) |
//! | `fallback_repos` | `WALSHIP_FALLBACK_REPOS` (comma-separated) | none: `fetch` and `restore` read only `repo` |
//! | `[[copy]] repo`, `endpoint`, `region` | `WALSHIP_COPY` (comma-separated URLs) | none: `copy` needs `--to` |
//! | `[retention] min_backups`, `timezone` | `WALSHIP_RETENTION_MIN_BACKUPS`, ... | `1`, `UTC` (or `+02:00`, or a zone name, `Europe/Paris`) |
//!
//! # Secrets
//!
//! The configuration holds no secrets, by design: S3 credentials come from the AWS SDK's chain
//! (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, web identity, instance metadata),
//! and Postgres passwords from libpq's conventions (`PGPASSWORD`, `~/.pgpass`). A key that looks
//! like a secret is refused with a pointer to those, a repository URL or endpoint carrying
//! credentials is refused without echoing it, and so a serialized `Config` is safe to print. `AWS_REGION` and `AWS_ENDPOINT_URL` keep working through the AWS
//! chain when `s3.region` and `s3.endpoint` are not set.
//!
//! Environment variables that are set but empty count as unset (as container tooling often
//! leaves them).

mod env_names;
mod error;
mod file;
mod keys;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::codec::Codec;
use crate::redact::redact_userinfo;
pub use env_names::{UnknownEnvVar, is_known as is_known_env_var, setting_env_vars};
pub use error::{ConfigError, Origin};
pub use values::{ByteSize, parse_duration, parse_duration_or_zero};

use keys::{Draft, KEYS};
use values::serialize_duration;

/// Where walship looks for its config file when neither `--config` nor `WALSHIP_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/walship/walship.toml";

/// walship's validated configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    /// The repository URL: `s3://bucket/prefix` or `file:///absolute/path`.
    pub repo: String,
    /// Codec for new objects.
    pub compression: Codec,
    /// S3 client settings.
    pub s3: S3Config,
    /// `walship archive` settings.
    pub archive: ArchiveConfig,
    /// `walship fetch` settings.
    pub fetch: FetchConfig,
    /// `walship backup` settings.
    pub backup: BackupConfig,
    /// `walship restore` settings.
    pub restore: RestoreConfig,
    /// `walship stream` settings.
    pub stream: StreamConfig,
    /// `walship expire`'s policy (`[retention]`).
    pub retention: crate::retention::Policy,
    /// `[encryption]`: client-side encryption keys (`docs/FORMAT.md`, "Encrypted objects").
    pub encryption: EncryptionConfig,
    /// Repositories `fetch` and `restore` read, in order, when the one before is
    /// unreachable (`fallback_repos`).
    pub fallback_repos: Vec<String>,
    /// The second repositories `walship copy` (without `--to`) copies to (`[[copy]]`).
    pub copy: Vec<CopyTarget>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
}

/// One `[[copy]]` entry: a target repository and, when it is on another S3 server or region,
/// that server's endpoint and region (credentials still come from the AWS chain).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyTarget {
    /// The target's URL.
    pub repo: String,
    /// Its S3 endpoint, when not the source's.
    pub endpoint: Option<String>,
    /// Its S3 region, when not the source's.
    pub region: Option<String>,
}

/// S3 client settings (credentials are never here: they come from the AWS chain).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct S3Config {
    /// Endpoint URL for S3-compatible servers; unset means AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region; unset means the AWS chain's (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which local S3 servers need.
    pub path_style: bool,
    /// Time allowed to connect.
    #[serde(serialize_with = "serialize_duration")]
    pub connect_timeout: Duration,
    /// Time allowed for one request, including its transfer.
    #[serde(serialize_with = "serialize_duration")]
    pub operation_timeout: Duration,
    /// Attempts per operation before giving up (walship's own retry layer).
    pub max_attempts: u32,
    /// The longest one storage request may take, every attempt and backoff included (a
    /// silent server fails the request after this long, not after `max_attempts` per-attempt
    /// timeouts).
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Multipart upload part size (5 MiB to 5 GiB).
    pub part_size: ByteSize,
    /// `s3.object_lock`: put every new object under S3 Object Lock in this mode.
    pub object_lock: ObjectLockSetting,
    /// `s3.object_lock_margin`: added to every lock's duration (default 1 day).
    #[serde(serialize_with = "serialize_duration")]
    pub object_lock_margin: Duration,
    /// `s3.sse`: server-side encryption the bucket applies to every object walship writes
    /// (`AES256` or `aws:kms`); unset sends no header (the bucket's default applies).
    pub sse: Option<crate::storage::ServerSideEncryption>,
    /// `s3.sse_kms_key_id`: the KMS key of `s3.sse = "aws:kms"` (unset: the account's
    /// default `aws/s3` key).
    pub sse_kms_key_id: Option<String>,
    /// `s3.ca_file`: PEM certificates trusted for an `https` endpoint, besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// `s3.object_lock`: `off`, `governance` or `compliance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockSetting {
    /// No Object Lock headers (the default).
    #[default]
    Off,
    /// GOVERNANCE mode.
    Governance,
    /// COMPLIANCE mode.
    Compliance,
}

impl ObjectLockSetting {
    /// The name in the configuration (`off`, `governance`, `compliance`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectLockSetting::Off => "off",
            ObjectLockSetting::Governance => "governance",
            ObjectLockSetting::Compliance => "compliance",
        }
    }

    /// The storage lock mode, `None` when off.
    pub fn mode(self) -> Option<crate::storage::LockMode> {
        match self {
            ObjectLockSetting::Off => None,
            ObjectLockSetting::Governance => Some(crate::storage::LockMode::Governance),
            ObjectLockSetting::Compliance => Some(crate::storage::LockMode::Compliance),
        }
    }
}

impl std::str::FromStr for ObjectLockSetting {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "none" => Ok(ObjectLockSetting::Off),
            "governance" => Ok(ObjectLockSetting::Governance),
            "compliance" => Ok(ObjectLockSetting::Compliance),
            _ => Err("expected off, governance or compliance".to_string()),
        }
    }
}

/// `walship archive` settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ArchiveConfig {
    /// Also push the next `.ready` files in the background.
    pub r#async: bool,
    /// Uploads in flight at once.
    pub parallel: usize,
    /// How many `.ready` files beyond the requested one to push ahead.
    pub read_ahead: usize,
}

/// `walship fetch` settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FetchConfig {
    /// How many following segments to download ahead (0: none).
    pub prefetch: usize,
    /// Downloads in flight at once.
    pub parallel: usize,
    /// Where prefetched segments wait; unset: the fetch command chooses, beside `pg_wal`.
    pub spool_dir: Option<PathBuf>,
    /// Deliver `<segment>.partial` when the complete segment is absent (`walship restore
    /// --target latest` sets it, to recover WAL that exists only as a streamed partial).
    pub allow_partial: bool,
    /// The longest one `walship fetch` spends on storage, all its requests together (the
    /// prefetch worker: per request); shorter than `s3.timeout`, since Postgres waits on
    /// every call.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
}

/// `walship backup` settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackupConfig {
    /// Target size of a bundle of small files.
    pub bundle_size: ByteSize,
    /// Uploads in flight at once.
    pub parallel: usize,
    /// Run `walship expire` after every successful backup.
    pub expire: bool,
    /// `backup.max_chain`: most incrementals on top of one full; past it,
    /// `backup --incremental` takes a full (and says so).
    pub max_chain: u32,
}

/// `walship restore` settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RestoreConfig {
    /// Bundle downloads in flight at once.
    pub parallel: usize,
}

/// `walship stream` settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamConfig {
    /// Physical replication slot name.
    pub slot: String,
    /// How often the partial tail segment is uploaded.
    #[serde(serialize_with = "serialize_duration")]
    pub partial_interval: Duration,
    /// `application_name` of the replication connection (what `synchronous_standby_names` lists).
    pub application_name: String,
    /// After SIGTERM/SIGINT, how long the stream keeps trying to store what it received
    /// before it gives up and exits (non-zero; nothing unstored was reported to the server).
    #[serde(serialize_with = "serialize_duration")]
    pub stop_timeout: Duration,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionConfig")
            .field("key_file", &self.key_file)
            .field(
                "passphrase_command",
                &self.passphrase_command.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

/// `[encryption]`: where the key-encryption keys come from. The paths and commands only: key
/// material is never held in `Config` (it is read when the repository is opened).
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EncryptionConfig {
    /// `encryption.key_file`: a keyring made by `walship key init`.
    pub key_file: Option<PathBuf>,
    /// `encryption.passphrase_command`: a command whose stdout is the passphrase. The command
    /// is configuration, but it may hold the passphrase (`echo ...`): never printed.
    #[serde(skip)]
    pub passphrase_command: Option<String>,
}

/// The command-line layer: what the binary's flags set (only keys that have a flag). The
/// binary fills it from clap (this crate does not depend on clap); every value is text, parsed
/// and checked like the same key from the environment or the file, so errors read the same
/// whichever layer set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // Each field is the key of the same name (`archive_parallel` is `archive.parallel`).
pub struct Options {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    pub repo: Option<String>,
    pub archive_async: Option<bool>,
    pub archive_parallel: Option<String>,
    pub archive_read_ahead: Option<String>,
    pub fetch_prefetch: Option<String>,
    pub fetch_parallel: Option<String>,
    pub fetch_allow_partial: Option<bool>,
    pub backup_bundle_size: Option<String>,
    pub backup_parallel: Option<String>,
    pub restore_parallel: Option<String>,
    pub stream_slot: Option<String>,
    pub stream_partial_interval: Option<String>,
    pub stream_application_name: Option<String>,
    pub stream_stop_timeout: Option<String>,
    pub backup_expire: Option<bool>,
    pub backup_max_chain: Option<String>,
    pub retention_pitr_window: Option<String>,
    pub retention_daily: Option<String>,
    pub retention_weekly: Option<String>,
    pub retention_monthly: Option<String>,
    pub retention_yearly: Option<String>,
    pub retention_min_backups: Option<String>,
    pub retention_timezone: Option<String>,
    /// `--fallback-repo`, repeated: the URLs joined by commas.
    pub fallback_repos: Option<String>,
}

/// Everything the configuration is made from. Tests build one by hand (an environment map, a
/// default path in a temporary directory) instead of touching the process environment.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The flag layer.
    pub options: Options,
    /// The environment (only `WALSHIP_*` variables matter).
    pub env: BTreeMap<String, String>,
    /// The file read when neither `--config` nor `WALSHIP_CONFIG` names one, if it exists.
    pub default_config_file: PathBuf,
}

impl Sources {
    /// The flags given, this process's `WALSHIP_*` environment, and [`DEFAULT_CONFIG_FILE`].
    pub fn from_process(options: Options) -> Result<Sources, ConfigError> {
        let mut env = BTreeMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with("WALSHIP_")) else {
                continue;
            };
            let value = value
                .into_string()
                .map_err(|_| ConfigError::EnvNotUnicode {
                    name: name.to_string(),
                })?;
            env.insert(name.to_string(), value);
        }
        Ok(Sources {
            options,
            env,
            default_config_file: PathBuf::from(DEFAULT_CONFIG_FILE),
        })
    }

    /// `WALSHIP_*` variables that walship does not read (probably typos), each with the
    /// nearest known name: the binary warns about them on stderr and goes on.
    pub fn unknown_env_vars(&self) -> Vec<UnknownEnvVar> {
        self.env
            .keys()
            .filter_map(|name| env_names::unknown(name))
            .collect()
    }
}

impl Default for Config {
    /// The defaults, with no repository.
    fn default() -> Self {
        Config {
            repo: String::new(),
            compression: Codec::Lz4,
            s3: S3Config {
                endpoint: None,
                region: None,
                path_style: false,
                connect_timeout: Duration::from_secs(10),
                operation_timeout: Duration::from_secs(120),
                max_attempts: 5,
                part_size: ByteSize::mib(64),
                sse: None,
                sse_kms_key_id: None,
                ca_file: None,
                timeout: Duration::from_secs(120),
                object_lock: ObjectLockSetting::Off,
                object_lock_margin: Duration::from_secs(86_400),
            },
            archive: ArchiveConfig {
                r#async: false,
                parallel: 4,
                read_ahead: 8,
            },
            fetch: FetchConfig {
                prefetch: 8,
                parallel: 4,
                spool_dir: None,
                allow_partial: false,
                timeout: Duration::from_secs(30),
            },
            backup: BackupConfig {
                bundle_size: ByteSize::mib(64),
                // One upload per core by default: compression is the CPU cost of a backup.
                parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
                expire: false,
                max_chain: 6,
            },
            restore: RestoreConfig { parallel: 4 },
            stream: StreamConfig {
                slot: "walship".to_string(),
                partial_interval: Duration::from_secs(1),
                application_name: "walship".to_string(),
                stop_timeout: Duration::from_secs(20),
            },
            retention: crate::retention::Policy::default(),
            encryption: EncryptionConfig::default(),
            fallback_repos: Vec::new(),
            copy: Vec::new(),
            config_file: None,
        }
    }
}

impl Config {
    /// Merges the defaults, the file, the environment and the flags, in that order, and checks
    /// the result.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut draft = Draft {
            repo: None,
            path_style: None,
            config: Config::default(),
        };
        let file = file::locate(
            sources.options.config.as_deref(),
            &sources.env,
            &sources.default_config_file,
        )?;
        if let Some((path, text)) = &file {
            for (key, value) in file::values(path, text)? {
                apply(&mut draft, key, &value, Origin::File(path.clone()))?;
            }
        }
        for key in KEYS {
            if let Some(value) = sources.env.get(key.env).filter(|v| !v.is_empty()) {
                apply(&mut draft, key, value, Origin::Env(key.env))?;
            }
        }
        for (name, value) in keys::flag_values(&sources.options) {
            if let Some(key) = keys::key(name)
                && let Some(flag) = key.flag
            {
                apply(&mut draft, key, &value, Origin::Flag(flag))?;
            }
        }
        let config_file = file.map(|(path, _)| path);
        let Some((repo, origin)) = draft.repo else {
            let file_hint = match &config_file {
                Some(path) => format!("{} was read", path.display()),
                None => format!("{} or --config FILE", sources.default_config_file.display()),
            };
            return Err(ConfigError::MissingRepo { file_hint });
        };
        check_repo(&repo, origin)?;
        let mut config = draft.config;
        config.s3.path_style = draft.path_style.unwrap_or(config.s3.endpoint.is_some());
        check_object_lock(&repo, &config)?;
        Ok(Config {
            repo,
            config_file,
            ..config
        })
    }
}

/// Refuses `s3.object_lock` where it cannot work: a local repository, or no retention
/// policy to derive the lock durations from.
fn check_object_lock(repo: &str, config: &Config) -> Result<(), ConfigError> {
    if config.s3.object_lock == ObjectLockSetting::Off {
        return Ok(());
    }
    if !repo.starts_with("s3://") {
        return Err(ConfigError::ObjectLock {
            reason: format!(
                "the repository {} is not on S3: Object Lock needs an s3:// repository in a bucket                  created with Object Lock enabled; set s3.object_lock = \"off\" (WALSHIP_S3_OBJECT_LOCK=off)",
                redact_userinfo(repo)
            ),
        });
    }
    config
        .lock_policy()
        .map(|_| ())
        .map_err(|reason| ConfigError::ObjectLock { reason })
}

impl Config {
    /// The Object Lock durations every new object gets, `Ok(None)` when `s3.object_lock` is
    /// off; an error when it is on and the retention policy does not say how long to lock.
    pub fn lock_policy(&self) -> Result<Option<crate::repo::lock::LockPolicy>, String> {
        let Some(mode) = self.s3.object_lock.mode() else {
            return Ok(None);
        };
        crate::retention::lock::lock_policy(mode, self.s3.object_lock_margin, &self.retention)
            .map(Some)
    }
}

/// Each key the command line can set, with its flag: `("archive.parallel", "--parallel")`.
/// The binary's tests check that every flag named here exists.
pub fn key_flags() -> impl Iterator<Item = (&'static str, &'static str)> {
    KEYS.iter().filter_map(|k| Some((k.name, k.flag?)))
}

/// The environment variable of a key (`s3.part_size` is `WALSHIP_S3_PART_SIZE`), if it is one.
pub fn env_var(key: &str) -> Option<&'static str> {
    keys::key(key).map(|k| k.env)
}

fn apply(
    draft: &mut Draft,
    key: &'static keys::Key,
    value: &str,
    origin: Origin,
) -> Result<(), ConfigError> {
    (key.apply)(draft, value, &origin).map_err(|reason| ConfigError::InvalidValue {
        key: key.name,
        origin,
        value: redact_userinfo(value),
        reason,
    })
}

/// Checks the repository URL's shape (storage parses it fully); refuses credentials in it
/// without echoing the URL.
pub(crate) fn check_repo(repo: &str, origin: Origin) -> Result<(), ConfigError> {
    let invalid = |origin: Origin, reason: &str| ConfigError::InvalidValue {
        key: "repo",
        origin,
        value: redact_userinfo(repo),
        reason: reason.to_string(),
    };
    let shape = "expected s3://bucket/prefix or file:///absolute/path";
    let url = url::Url::parse(repo).map_err(|_| invalid(origin.clone(), shape))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::CredentialsInRepo { origin });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            origin,
            "a repository URL has no ?query or #fragment",
        ));
    }
    match url.scheme() {
        "s3" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "s3" => Err(invalid(
            origin,
            "an s3:// URL names a bucket: s3://bucket/prefix",
        )),
        "file"
            if url
                .host_str()
                .is_none_or(|h| h.is_empty() || h == "localhost")
                && Path::new(url.path()).is_absolute() =>
        {
            Ok(())
        }
        "file" => Err(invalid(
            origin,
            "a file:// URL names an absolute local path: file:///var/lib/walship",
        )),
        _ => Err(invalid(origin, shape)),
    }
}

#[cfg(test)]
impl Options {
    /// Options with every key set, to check the key table covers them all.
    pub(crate) fn all_set() -> Options {
        let s = || Some(String::new());
        Options {
            config: None,
            repo: s(),
            archive_async: Some(true),
            archive_parallel: s(),
            archive_read_ahead: s(),
            fetch_prefetch: s(),
            fetch_parallel: s(),
            fetch_allow_partial: Some(true),
            backup_bundle_size: s(),
            backup_parallel: s(),
            restore_parallel: s(),
            stream_slot: s(),
            stream_partial_interval: s(),
            stream_application_name: s(),
            stream_stop_timeout: s(),
            backup_expire: Some(true),
            backup_max_chain: s(),
            retention_pitr_window: s(),
            retention_daily: s(),
            retention_weekly: s(),
            retention_monthly: s(),
            retention_yearly: s(),
            retention_min_backups: s(),
            retention_timezone: s(),
            fallback_repos: s(),
        }
    }
}

impl S3Config {
    /// The storage layer's S3 client options for these settings; credentials are left to
    /// the AWS SDK's standard chain.
    pub fn to_options(&self) -> crate::storage::S3Options {
        let defaults = crate::storage::S3Options::default();
        crate::storage::S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            force_path_style: Some(self.path_style),
            connect_timeout: self.connect_timeout,
            operation_timeout: self.operation_timeout,
            part_size: usize::try_from(self.part_size.0).unwrap_or(defaults.part_size),
            sse: self.sse,
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            ca_file: self.ca_file.clone(),
            retry: crate::storage::RetryPolicy {
                max_attempts: self.max_attempts,
                deadline: Some(self.timeout),
                ..defaults.retry.clone()
            },
            ..defaults
        }
    }
}
