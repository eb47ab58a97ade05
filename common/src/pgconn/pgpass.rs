//! The password file (`~/.pgpass`, or `PGPASSFILE` / `passfile`), read the way libpq's
//! `passwordFromFile` reads it.
//!
//! Lines are `hostname:port:database:username:password`; `*` matches anything in the first
//! four fields; `\` escapes `:` and `\`; lines starting with `#` are comments; the first match
//! wins. A unix-socket host in the default socket directory matches `localhost`. The file is
//! ignored, with a warning, when it is not a regular file or when group or others may read it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::conninfo::{DEFAULT_SOCKET_DIR, Host, Password};

/// One parsed `.pgpass` line.
#[derive(Clone, PartialEq, Eq)]
pub struct PgpassEntry {
    /// Host field (`*` = any).
    pub host: String,
    /// Port field (`*` = any).
    pub port: String,
    /// Database field (`*` = any; `replication` matches physical replication connections).
    pub database: String,
    /// User field (`*` = any).
    pub user: String,
    /// The password (rest of the line, unescaped).
    pub password: Password,
}

impl std::fmt::Debug for PgpassEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgpassEntry({}:{}:{}:{}:<redacted>)",
            self.host, self.port, self.database, self.user
        )
    }
}

impl PgpassEntry {
    /// Parses one line; `None` for comments, blank lines and lines with fewer than five fields.
    pub fn parse_line(line: &str) -> Option<PgpassEntry> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = Vec::with_capacity(5);
        let mut current = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
        if fields.len() < 4 {
            return None;
        }
        let mut it = fields.into_iter();
        Some(PgpassEntry {
            host: it.next()?,
            port: it.next()?,
            database: it.next()?,
            user: it.next()?,
            password: Password::new(current),
        })
    }

    /// Whether this line applies to a connection with these values.
    pub fn matches(&self, host: &str, port: &str, database: &str, user: &str) -> bool {
        let field = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        field(&self.host, host)
            && field(&self.port, port)
            && field(&self.database, database)
            && field(&self.user, user)
    }
}

/// The first matching password in `contents` (the text of a password file).
pub fn lookup_in(
    contents: &str,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Option<Password> {
    let port = port.to_string();
    contents
        .lines()
        .filter_map(PgpassEntry::parse_line)
        .find(|e| e.matches(host, &port, database, user))
        .map(|e| e.password)
}

/// How libpq spells a host for password-file matching: the default socket directory (Debian's
/// or upstream's `/tmp`) counts as `localhost`.
pub fn pgpass_host(host: &Host) -> String {
    match host {
        Host::Tcp(h) => h.clone(),
        Host::Unix(dir) if dir == Path::new(DEFAULT_SOCKET_DIR) || dir == Path::new("/tmp") => {
            "localhost".to_string()
        }
        Host::Unix(dir) => dir.display().to_string(),
    }
}

/// Looks the password up in the file at `path`. A missing file is silence; an unreadable,
/// non-regular or group/world-accessible file is a warning and no password (libpq's rules).
pub fn lookup_file(
    path: &Path,
    host: &Host,
    port: u16,
    database: &str,
    user: &str,
) -> Option<Password> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!(path = %path.display(), "password file is not a plain file; ignoring it");
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "password file has group or world access; permissions should be u=rw (0600) or less; ignoring it"
        );
        return None;
    }
    let contents = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read password file");
            return None;
        }
    };
    lookup_in(&contents, &pgpass_host(host), port, database, user)
}
