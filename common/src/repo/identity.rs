//! `walship.json`: which cluster a repository belongs to.
//!
//! Written once, by the first command that archives a segment (the page header of that
//! segment says which cluster it is); read and checked by every command afterwards, so that
//! WAL of two clusters can never be mixed in one repository.

use serde::{Deserialize, Serialize};

/// The identity format this build writes and reads.
pub const IDENTITY_FORMAT_VERSION: u32 = 1;

/// The contents of `walship.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoIdentity {
    /// Format version of the repository ([`IDENTITY_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The cluster's system identifier (`pg_control`'s `system_identifier`, also in every WAL
    /// segment's long page header). A string in JSON: it does not fit a double.
    #[serde(with = "crate::json::u64_as_string")]
    pub system_identifier: u64,
    /// PostgreSQL major version (13..=18) when the repository was created.
    pub pg_major: u32,
    /// The cluster's `wal_segment_size` in bytes.
    pub wal_segment_size: u32,
    /// Present when the repository is encrypted (set at creation by a walship with a key, never
    /// changed): `{"scheme": "walship-envelope-v1"}`. Absent in plain repositories, so their
    /// `walship.json` is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<IdentityEncryption>,
}

/// How an encrypted repository is encrypted (`walship.json`'s `encryption`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityEncryption {
    /// The object scheme; only `walship-envelope-v1` is read.
    pub scheme: String,
}

impl RepoIdentity {
    /// Parses `walship.json`, refusing unknown fields and any `format_version` but
    /// [`IDENTITY_FORMAT_VERSION`]: a repository written by another format (a newer walship)
    /// must not be read by guessing. The error says what is wrong, for
    /// `RepoError::BadIdentity`.
    pub fn from_json(bytes: &[u8]) -> Result<RepoIdentity, String> {
        let identity: RepoIdentity = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if let Some(enc) = &identity.encryption
            && enc.scheme != super::encryption::SCHEME
        {
            return Err(format!(
                "encryption scheme {:?} is not one this walship reads (it reads {})",
                enc.scheme,
                super::encryption::SCHEME
            ));
        }
        if identity.format_version != IDENTITY_FORMAT_VERSION {
            return Err(format!(
                "format_version {} is not one this walship reads (it reads {IDENTITY_FORMAT_VERSION}); a newer walship may have written it",
                identity.format_version
            ));
        }
        Ok(identity)
    }

    /// An identity for a cluster, in the current format.
    pub fn new(system_identifier: u64, pg_major: u32, wal_segment_size: u32) -> RepoIdentity {
        RepoIdentity {
            format_version: IDENTITY_FORMAT_VERSION,
            system_identifier,
            pg_major,
            wal_segment_size,
            encryption: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_all_64_bits() {
        let id = RepoIdentity::new(7_312_345_678_901_234_567, 17, 16 << 20);
        let json = serde_json::to_string(&id).unwrap();
        assert!(json.contains("\"7312345678901234567\""), "{json}");
        assert_eq!(serde_json::from_str::<RepoIdentity>(&json).unwrap(), id);
    }

    #[test]
    fn only_format_version_1_is_read() {
        let json = |v: u32| {
            format!(
                r#"{{"format_version":{v},"system_identifier":"1","pg_major":15,"wal_segment_size":16777216}}"#
            )
        };
        assert!(RepoIdentity::from_json(json(1).as_bytes()).is_ok());
        for v in [0, 2] {
            let err = RepoIdentity::from_json(json(v).as_bytes()).unwrap_err();
            assert!(err.contains(&format!("format_version {v}")), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"format_version":1,"system_identifier":"1","pg_major":15,"wal_segment_size":16777216,"x":1}"#;
        assert!(serde_json::from_str::<RepoIdentity>(json).is_err());
    }
}
