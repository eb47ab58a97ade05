//! One audit record and where it lives.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::{InvalidKey, ObjectKey};

/// Prefix of the audit trail in a repository.
pub const AUDIT_PREFIX: &str = "audit/";

/// The most a record may hold when read back.
pub const RECORD_LIMIT: u64 = 1 << 20;

/// What one operation did. Unknown fields are ignored when read (newer writers may add).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Always 1 for this layout.
    pub format_version: u32,
    /// When the operation ended.
    pub time: DateTime<Utc>,
    /// `backup`, `restore`, `drill`, ...
    pub operation: String,
    /// The command line after the program name, secrets removed ([`super::args`]).
    pub arguments: Vec<String>,
    /// The OS user that ran it.
    pub os_user: String,
    /// The host it ran on.
    pub host: String,
    /// The walship version.
    pub walship_version: String,
    /// `ok` or `failed`.
    pub result: String,
    /// The process exit code.
    pub exit_code: u8,
    /// What it did, in figures: backup id, bytes, target, duration, ...
    pub figures: serde_json::Map<String, serde_json::Value>,
    /// The key of the record before this one (none for the first).
    pub previous_key: Option<String>,
    /// The sha256 (hex) of that record's bytes as stored.
    pub previous_sha256: Option<String>,
}

impl AuditRecord {
    /// A record of `operation`, ending now, run by this process's user on this host.
    pub fn now(
        operation: &str,
        arguments: Vec<String>,
        exit_code: u8,
        figures: serde_json::Map<String, serde_json::Value>,
    ) -> AuditRecord {
        AuditRecord {
            format_version: 1,
            time: Utc::now(),
            operation: operation.to_string(),
            arguments,
            os_user: os_user(),
            host: host(),
            walship_version: env!("CARGO_PKG_VERSION").to_string(),
            result: if exit_code == 0 { "ok" } else { "failed" }.to_string(),
            exit_code,
            figures,
            previous_key: None,
            previous_sha256: None,
        }
    }

    /// `audit/<YYYY>/<YYYYMMDDTHHMMSS.ffffffZ>-<host>-<operation>-<random>.json`: keys sort
    /// in time order; the random part keeps two records of one microsecond apart.
    pub fn key(&self, random: u32) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::new(format!(
            "{AUDIT_PREFIX}{}/{}-{}-{}-{random:08x}.json",
            self.time.format("%Y"),
            self.time.format("%Y%m%dT%H%M%S%.6fZ"),
            key_part(&self.host),
            key_part(&self.operation),
        ))
    }
}

/// `text` reduced to characters safe in a key (`[A-Za-z0-9.]`, the rest `_`), at most 63.
fn key_part(text: &str) -> String {
    let part: String = text
        .chars()
        .take(63)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if part.is_empty() {
        "unknown".into()
    } else {
        part
    }
}

fn os_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_and_are_valid() {
        let mut a = AuditRecord::now("backup", vec![], 0, Default::default());
        a.host = "db-1/../x".into();
        let mut b = a.clone();
        b.time = a.time + chrono::Duration::microseconds(1);
        let (ka, kb) = (a.key(u32::MAX).unwrap(), b.key(0).unwrap());
        assert!(ka.as_str() < kb.as_str(), "{ka} {kb}");
        assert!(ka.as_str().starts_with("audit/20"), "{ka}");
        assert!(ka.as_str().contains("-db_1_.._x-backup-"), "{ka}");
    }
}
