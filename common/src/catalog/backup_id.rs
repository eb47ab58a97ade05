//! `BackupId`: a backup's name, the UTC time it started as `YYYYMMDDTHHMMSSZ`, so that ids
//! sort in time order as plain strings and as S3 keys.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The id of a base backup, e.g. `20261122T140300Z`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct BackupId(DateTime<Utc>);

/// Why a string is not a backup id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid backup id {text:?}: expected the UTC start time as YYYYMMDDTHHMMSSZ, like 20261122T140300Z"
)]
pub struct BackupIdError {
    /// The rejected text.
    pub text: String,
}

const FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl BackupId {
    /// The id for a backup started at `time` (sub-second precision is dropped).
    pub fn from_start_time(time: DateTime<Utc>) -> BackupId {
        let text = time.format(FORMAT).to_string();
        // Round-trips by construction; keeps exactly what the id shows.
        BackupId(parse(&text).unwrap_or(time))
    }

    /// The start time the id names.
    pub fn time(&self) -> DateTime<Utc> {
        self.0
    }
}

fn parse(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 16 {
        return None;
    }
    NaiveDateTime::parse_from_str(text, FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

impl FromStr for BackupId {
    type Err = BackupIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(BackupId).ok_or_else(|| BackupIdError {
            text: s.to_string(),
        })
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(FORMAT))
    }
}

impl serde::Serialize for BackupId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BackupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_by_time() {
        let a: BackupId = "20261122T140300Z".parse().unwrap();
        let b: BackupId = "20261122T140301Z".parse().unwrap();
        assert_eq!(a.to_string(), "20261122T140300Z");
        assert!(a < b && a.to_string() < b.to_string());
        for bad in [
            "",
            "20261122T140300",
            "20261122t140300Z",
            "2026-11-22T14:03:00Z",
            "20261322T140300Z",
            "../etc",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }
}
