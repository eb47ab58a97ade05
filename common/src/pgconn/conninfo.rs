//! Connection settings the libpq way: a connection string (`key=value ...` or a
//! `postgresql://` URI), then the `PG*` environment, then defaults, into one validated
//! [`ConnParams`].
//!
//! Precedence is libpq's: a setting in the connection string wins over its environment variable,
//! which wins over the default. The password, wherever it came from, lives in a [`Password`]
//! that never prints. A missing password is looked up in the password file at connect time,
//! per host (see [`super::pgpass`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default TCP port.
pub const DEFAULT_PORT: u16 = 5432;
/// Default unix socket directory (Debian's build; upstream's is `/tmp`, used when this is absent).
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// Connect timeout when none is set. libpq waits forever; a backup tool must not.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the next message from the server outside of streaming.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The connection-string keys we understand (libpq names).
const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "application_name",
    "fallback_application_name",
    "passfile",
    "connect_timeout",
    "channel_binding",
];

/// libpq keys walship does not implement: refused by name rather than as unknown.
const UNSUPPORTED_KEYS: &[&str] = &[
    "hostaddr",
    "options",
    "client_encoding",
    "replication",
    "service",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
    "sslnegotiation",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requirepeer",
    "require_auth",
    "gssencmode",
    "gssdelegation",
    "krbsrvname",
    "gsslib",
    "target_session_attrs",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
];

/// Why connection settings were refused. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnInfoError {
    /// The connection string does not parse.
    #[error("invalid connection string at byte {position}: {message}")]
    Syntax {
        /// Byte offset of the problem.
        position: usize,
        /// What was expected.
        message: String,
    },
    /// A key libpq would not know either (or one we do not support).
    #[error("invalid connection option \"{key}\"")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A libpq key that walship does not implement (client certificates, GSSAPI, ...).
    #[error("connection option \"{key}\" is not supported by walship")]
    UnsupportedKey {
        /// The key.
        key: String,
    },
    /// A value that does not parse for its key.
    #[error("invalid value for {key}: \"{value}\" ({message})")]
    BadValue {
        /// The key (or environment variable) it came from.
        key: String,
        /// The value (never a password's).
        value: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A password that never appears in `Debug` output, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The secret itself, for the authentication exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// libpq's `sslmode` (except `allow`, which walship does not support).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, without verifying the certificate (libpq's default).
    #[default]
    Prefer,
    /// Always encrypt; do not verify the certificate (unless a root CA file is configured and
    /// exists, in which case libpq, and so walship, behaves as `verify-ca`).
    Require,
    /// Encrypt and verify the certificate chain against `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling.
    pub fn parse(s: &str) -> Result<SslMode, ConnInfoError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnInfoError::BadValue {
                    key: "sslmode".into(),
                    value: other.into(),
                    message: "expected disable, prefer, require, verify-ca or verify-full".into(),
                });
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// libpq's `channel_binding`: whether SCRAM must, may or must not bind to the TLS channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBindingMode {
    /// Never use channel binding.
    Disable,
    /// Use it when on TLS and the server offers SCRAM-SHA-256-PLUS (libpq's default).
    #[default]
    Prefer,
    /// Refuse to authenticate any other way (also refuses trust, password and md5).
    Require,
}

impl ChannelBindingMode {
    fn parse(s: &str) -> Result<ChannelBindingMode, ConnInfoError> {
        match s {
            "disable" => Ok(ChannelBindingMode::Disable),
            "prefer" => Ok(ChannelBindingMode::Prefer),
            "require" => Ok(ChannelBindingMode::Require),
            other => Err(ConnInfoError::BadValue {
                key: "channel_binding".into(),
                value: other.into(),
                message: "expected disable, prefer or require".into(),
            }),
        }
    }
}

/// Where one server listens: a TCP host name/address, or a unix socket directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address.
    Tcp(String),
    /// A directory holding `.s.PGSQL.<port>` (a host starting with `/`).
    Unix(PathBuf),
}

impl Host {
    fn parse(s: &str) -> Host {
        if s.starts_with('/') {
            Host::Unix(PathBuf::from(s))
        } else {
            Host::Tcp(s.to_string())
        }
    }

    /// The host as libpq spells it (used for `.pgpass` matching and messages).
    pub fn as_conninfo(&self) -> String {
        match self {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        }
    }
}

/// One server to try: a host and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name, address or socket directory.
    pub host: Host,
    /// TCP port, or the number in the socket file name.
    pub port: u16,
}

impl Target {
    /// `host:port`, or the socket file path: how errors name this server.
    pub fn endpoint(&self) -> String {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Unix(dir) => dir
                .join(format!(".s.PGSQL.{}", self.port))
                .display()
                .to_string(),
        }
    }
}

/// Validated connection settings. `Debug` shows everything but the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParams {
    /// Servers to try, in order (libpq's comma-separated `host`/`port` lists).
    pub targets: Vec<Target>,
    /// Role name.
    pub user: String,
    /// Password from the connection string or `PGPASSWORD`; `None` means "ask the password file".
    pub password: Option<Password>,
    /// Database name; a physical replication connection ignores it except for `.pgpass`
    /// matching, where `None` counts as `replication` (as pg_basebackup does).
    pub dbname: Option<String>,
    /// TLS policy.
    pub sslmode: SslMode,
    /// Channel-binding policy for SCRAM.
    pub channel_binding: ChannelBindingMode,
    /// Root CA certificates (PEM) for verifying the server; `None` = `~/.postgresql/root.crt`.
    pub sslrootcert: Option<PathBuf>,
    /// `application_name` sent at startup (what `synchronous_standby_names` lists).
    pub application_name: Option<String>,
    /// Password file; `None` = `~/.pgpass`.
    pub passfile: Option<PathBuf>,
    /// Limit for TCP/socket connect plus startup and authentication, per host.
    pub connect_timeout: Duration,
    /// Limit for waiting on each server message outside streaming.
    pub read_timeout: Duration,
}

impl ConnParams {
    /// Parses a connection string (either form; empty means "all from the environment") and
    /// completes it from the process environment and defaults.
    pub fn parse(conninfo: &str) -> Result<ConnParams, ConnInfoError> {
        Self::parse_with_env(conninfo, &|name| std::env::var(name).ok())
    }

    /// As [`ConnParams::parse`], reading the environment through `env` (for tests).
    pub fn parse_with_env(
        conninfo: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnParams, ConnInfoError> {
        let settings = parse_settings(conninfo)?;
        Self::from_settings(&settings, env)
    }

    /// Builds the parameters from already split `key=value` settings plus the environment.
    pub fn from_settings(
        settings: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnParams, ConnInfoError> {
        if let Some(key) = settings.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(if UNSUPPORTED_KEYS.contains(&key.as_str()) {
                ConnInfoError::UnsupportedKey { key: key.clone() }
            } else {
                ConnInfoError::UnknownKey { key: key.clone() }
            });
        }
        let get = |key: &str, var: &str| -> Option<String> {
            settings
                .get(key)
                .cloned()
                .or_else(|| env(var))
                .filter(|v| !v.is_empty())
        };
        let hosts = get("host", "PGHOST").unwrap_or_default();
        let ports = get("port", "PGPORT").unwrap_or_default();
        let targets = build_targets(&hosts, &ports)?;
        let user = match get("user", "PGUSER") {
            Some(u) => u,
            None => os_user_name().ok_or_else(|| ConnInfoError::BadValue {
                key: "user".into(),
                value: String::new(),
                message: "no user given and the OS user name is unknown".into(),
            })?,
        };
        let sslmode = match get("sslmode", "PGSSLMODE") {
            Some(mode) => SslMode::parse(&mode)?,
            None => SslMode::default(),
        };
        let connect_timeout = match get("connect_timeout", "PGCONNECT_TIMEOUT") {
            Some(v) => {
                let secs: i64 = v.trim().parse().map_err(|_| ConnInfoError::BadValue {
                    key: "connect_timeout".into(),
                    value: v.clone(),
                    message: "expected whole seconds".into(),
                })?;
                // libpq: 0 or negative means "wait forever"; we keep a generous bound instead.
                if secs <= 0 {
                    Duration::from_secs(3600)
                } else {
                    // libpq raises values below 2 s to 2 s.
                    Duration::from_secs(secs.max(2).unsigned_abs())
                }
            }
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        Ok(ConnParams {
            targets,
            user,
            password: settings
                .get("password")
                .cloned()
                .or_else(|| env("PGPASSWORD"))
                .filter(|p| !p.is_empty())
                .map(Password),
            dbname: get("dbname", "PGDATABASE"),
            sslmode,
            channel_binding: match get("channel_binding", "PGCHANNELBINDING") {
                Some(mode) => ChannelBindingMode::parse(&mode)?,
                None => ChannelBindingMode::default(),
            },
            sslrootcert: get("sslrootcert", "PGSSLROOTCERT").map(PathBuf::from),
            application_name: get("application_name", "PGAPPNAME")
                .or_else(|| settings.get("fallback_application_name").cloned()),
            passfile: get("passfile", "PGPASSFILE").map(PathBuf::from),
            connect_timeout,
            read_timeout: DEFAULT_READ_TIMEOUT,
        })
    }

    /// Sets `application_name` unless the connection string or `PGAPPNAME` already did
    /// (libpq's `fallback_application_name`).
    pub fn with_fallback_application_name(mut self, name: &str) -> ConnParams {
        if self.application_name.is_none() {
            self.application_name = Some(name.to_string());
        }
        self
    }
}

/// Splits a connection string (`key=value ...` or `postgresql://...`) into settings, without
/// consulting the environment. Later duplicates win, as in libpq.
pub fn parse_settings(conninfo: &str) -> Result<BTreeMap<String, String>, ConnInfoError> {
    let trimmed = conninfo.trim_start();
    if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
        super::conninfo_uri::parse_uri(trimmed)
    } else {
        parse_key_values(conninfo)
    }
}

/// libpq's `conninfo_parse`: `key = value` pairs separated by whitespace; values may be
/// single-quoted; backslash escapes the next character.
fn parse_key_values(s: &str) -> Result<BTreeMap<String, String>, ConnInfoError> {
    let bytes = s.as_bytes();
    let mut out = BTreeMap::new();
    let mut i = 0;
    let syntax = |position: usize, message: &str| ConnInfoError::Syntax {
        position,
        message: message.to_string(),
    };
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(syntax(i, &format!("missing \"=\" after \"{key}\"")));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(syntax(i, "unterminated quoted string")),
                    Some(b'\\') if i + 1 < bytes.len() => {
                        value.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value).map_err(|_| syntax(i, "value is not UTF-8"))?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// libpq's host/port list rules: `host` and `port` may both be comma-separated; a single port
/// applies to every host; an empty entry means the default.
fn build_targets(hosts: &str, ports: &str) -> Result<Vec<Target>, ConnInfoError> {
    let host_list: Vec<&str> = hosts.split(',').collect();
    let port_list: Vec<&str> = ports.split(',').collect();
    if port_list.len() != 1 && port_list.len() != host_list.len() {
        return Err(ConnInfoError::BadValue {
            key: "port".into(),
            value: ports.into(),
            message: format!(
                "could not match {} port numbers to {} hosts",
                port_list.len(),
                host_list.len()
            ),
        });
    }
    host_list
        .iter()
        .enumerate()
        .map(|(n, host)| {
            let port_text = port_list
                .get(n)
                .or(port_list.first())
                .copied()
                .unwrap_or("");
            let port = if port_text.trim().is_empty() {
                DEFAULT_PORT
            } else {
                port_text
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| ConnInfoError::BadValue {
                        key: "port".into(),
                        value: port_text.into(),
                        message: "expected a number from 1 to 65535".into(),
                    })?
            };
            let host = if host.is_empty() {
                default_host()
            } else {
                Host::parse(host)
            };
            Ok(Target { host, port })
        })
        .collect()
}

/// The default when no host is given: the unix socket directory.
fn default_host() -> Host {
    if std::path::Path::new(DEFAULT_SOCKET_DIR).is_dir() {
        Host::Unix(PathBuf::from(DEFAULT_SOCKET_DIR))
    } else {
        Host::Unix(PathBuf::from("/tmp"))
    }
}

/// The effective OS user's name (libpq's default role name).
fn os_user_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
}

/// The effective OS user's home directory (for `~/.pgpass` and `~/.postgresql/root.crt`).
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}
