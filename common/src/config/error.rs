//! [`ConfigError`]: why walship's configuration could not be put together. Each error names the
//! key, the value and where it came from (flag, environment variable, or file), but never the
//! value of an unknown key, which could be a secret someone put in the wrong place.

use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// The configuration file.
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No repository is set anywhere.
    #[error(
        "no repository configured: pass --repo s3://bucket/prefix (or file:///path), \
         or set WALSHIP_REPO=s3://bucket/prefix in the environment, \
         or put repo = \"s3://bucket/prefix\" in the config file ({file_hint})"
    )]
    MissingRepo {
        /// Which config file was read, or where one would be looked for.
        file_hint: String,
    },
    /// A value does not parse or is out of range.
    #[error("invalid {key} from {origin}: {value:?}: {reason}")]
    InvalidValue {
        /// The key, as written in the config file (`s3.connect_timeout`).
        key: &'static str,
        /// Where the value came from.
        origin: Origin,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The repository URL carries credentials, which walship never takes from its configuration.
    #[error(
        "the repository URL from {origin} contains credentials; walship does not take secrets from its \
         configuration: use the AWS credential chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity, ...)"
    )]
    CredentialsInRepo {
        /// Where the URL came from.
        origin: Origin,
    },
    /// The config file has a key walship does not know.
    #[error("unknown key {key:?} in config file {}{hint}", file.display())]
    UnknownKey {
        /// The key, with its section (`s3.endpint`).
        key: String,
        /// The file.
        file: PathBuf,
        /// A hint, such as where secrets belong instead.
        hint: String,
    },
    /// A config file named with `--config` or `WALSHIP_CONFIG` does not exist.
    #[error("config file {} (from {origin}) does not exist", path.display())]
    FileMissing {
        /// The path named.
        path: PathBuf,
        /// Where it was named.
        origin: Origin,
    },
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    FileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {} is not valid TOML: {message}", path.display())]
    FileSyntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// `s3.object_lock` is on where it cannot work.
    #[error("s3.object_lock is on, but {reason}")]
    ObjectLock {
        /// What is missing.
        reason: String,
    },
    /// A `WALSHIP_*` environment variable is not valid UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    EnvNotUnicode {
        /// The variable.
        name: String,
    },
}
