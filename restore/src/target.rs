//! Recovery targets as the operator gives them: parsing `--target-time` and friends into a
//! [`TargetSpec`], and what each one means for Postgres (`recovery_target_*` settings).
//!
//! Times without a zone are read as UTC (and the plan says so); times are always written
//! to Postgres with an explicit `+00` offset, so the server's `TimeZone` never shifts them.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use walship_common::Lsn;
use walship_common::catalog::BackupId;
use walship_common::pg::TimelineId;

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// `recovery_target_time`: stop before the first commit or abort after this time.
    Time(TargetTime),
    /// `recovery_target_lsn`.
    Lsn(Lsn),
    /// `recovery_target_xid`: the transaction as given (a 64-bit value with epoch is
    /// accepted; its low 32 bits are what WAL records carry).
    Xid(u64),
    /// `recovery_target_name`: a restore point made with `pg_create_restore_point`.
    Name(String),
    /// `recovery_target = 'immediate'`: stop as soon as the backup is consistent.
    Immediate,
    /// No target: replay everything the archive holds.
    Latest,
}

/// A target time and whether the operator gave its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetTime {
    /// The instant.
    pub time: DateTime<Utc>,
    /// False when the text had no zone and was read as UTC.
    pub zone_given: bool,
}

/// Which timeline to recover along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimelineChoice {
    /// The newest timeline the repository has a history file for.
    #[default]
    Latest,
    /// This timeline.
    Id(TimelineId),
}

/// What the server does when it reaches the target (`recovery_target_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    /// End recovery and accept connections (walship's default).
    #[default]
    Promote,
    /// Pause replay for inspection.
    Pause,
    /// Stop the server.
    Shutdown,
}

/// Everything that decides where recovery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// The target.
    pub target: RecoveryTarget,
    /// The timeline to follow.
    pub timeline: TimelineChoice,
    /// `recovery_target_inclusive = off`: stop just before the target instead of after it.
    pub exclusive: bool,
    /// Use this backup instead of choosing one.
    pub backup: Option<BackupId>,
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The time does not parse.
    #[error(
        "invalid target time {text:?}: expected RFC 3339 (2026-11-20T14:03:00Z) or 'YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]'"
    )]
    Time {
        /// The text given.
        text: String,
    },
    /// The transaction id does not parse.
    #[error("invalid target xid {text:?}: expected a transaction id (a number)")]
    Xid {
        /// The text given.
        text: String,
    },
    /// The restore point name is empty or too long for Postgres (`MAXFNAMELEN` 64).
    #[error("invalid restore point name {text:?}: it must be 1 to 63 bytes")]
    Name {
        /// The text given.
        text: String,
    },
    /// `--target` is neither `immediate` nor `latest`.
    #[error("invalid --target {text:?}: expected immediate or latest")]
    Keyword {
        /// The text given.
        text: String,
    },
}

/// Parses a target time: RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]` where the zone is
/// `Z`, `UTC`, `+HH`, `+HHMM` or `+HH:MM`; no zone means UTC.
pub fn parse_target_time(text: &str) -> Result<TargetTime, TargetError> {
    let err = || TargetError::Time {
        text: text.to_string(),
    };
    let trimmed = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(TargetTime {
            time: t.with_timezone(&Utc),
            zone_given: true,
        });
    }
    let normalised = match trimmed.get(10..11) {
        Some("T") => format!("{} {}", &trimmed[..10], &trimmed[11..]),
        _ => trimmed.to_string(),
    };
    let (body, zone) = split_zone(&normalised);
    let naive = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(body.trim_end(), f).ok())
    .ok_or_else(err)?;
    match zone {
        None => Ok(TargetTime {
            time: naive.and_utc(),
            zone_given: false,
        }),
        Some(offset_secs) => {
            let offset = chrono::FixedOffset::east_opt(offset_secs).ok_or_else(err)?;
            let local = naive.and_local_timezone(offset).single().ok_or_else(err)?;
            Ok(TargetTime {
                time: local.with_timezone(&Utc),
                zone_given: true,
            })
        }
    }
}

/// Splits a trailing zone (`Z`, `UTC`, `GMT`, `+HH[[:]MM]`, `-HH[[:]MM]`) off `text`; returns
/// the rest and the offset in seconds east of UTC.
fn split_zone(text: &str) -> (&str, Option<i32>) {
    for name in [" UTC", "UTC", " GMT", "Z"] {
        if let Some(body) = text.strip_suffix(name) {
            return (body, Some(0));
        }
    }
    // The time part is after the space; a sign there starts the offset.
    let Some(space) = text.find(' ') else {
        return (text, None);
    };
    let time_part = &text[space..];
    let Some(at) = time_part.rfind(['+', '-']) else {
        return (text, None);
    };
    let at = space + at;
    let (body, zone) = text.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return (text, None);
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok(), Some(0)),
        4 => (digits[..2].parse().ok(), digits[2..].parse().ok()),
        _ => (None, None),
    };
    match (h, m) {
        (Some(h), Some(m)) if h <= 15 && m < 60 => (body, Some(sign * (h * 3600 + m * 60))),
        _ => (text, Some(i32::MAX)),
    }
}

/// Parses `--target-xid`.
pub fn parse_xid(text: &str) -> Result<u64, TargetError> {
    text.trim().parse().map_err(|_| TargetError::Xid {
        text: text.to_string(),
    })
}

/// Checks `--target-name`.
pub fn parse_name(text: &str) -> Result<String, TargetError> {
    if text.is_empty() || text.len() >= 64 {
        return Err(TargetError::Name {
            text: text.to_string(),
        });
    }
    Ok(text.to_string())
}

/// Parses `--target immediate|latest`.
pub fn parse_keyword(text: &str) -> Result<RecoveryTarget, TargetError> {
    match text {
        "immediate" => Ok(RecoveryTarget::Immediate),
        "latest" => Ok(RecoveryTarget::Latest),
        _ => Err(TargetError::Keyword {
            text: text.to_string(),
        }),
    }
}

/// The form Postgres reads unambiguously: `YYYY-MM-DD HH:MM:SS.ffffff+00`.
pub fn postgres_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Time(t) => {
                write!(f, "time {}", postgres_time(t.time))?;
                if !t.zone_given {
                    write!(f, " (no zone given: read as UTC)")?;
                }
                Ok(())
            }
            RecoveryTarget::Lsn(lsn) => write!(f, "LSN {lsn}"),
            RecoveryTarget::Xid(xid) => write!(f, "transaction {xid}"),
            RecoveryTarget::Name(name) => write!(f, "restore point {name:?}"),
            RecoveryTarget::Immediate => write!(f, "immediate (the backup's consistency point)"),
            RecoveryTarget::Latest => write!(f, "latest (the end of the archive)"),
        }
    }
}

impl fmt::Display for TargetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_parse_with_and_without_zone() {
        let cases = [
            ("2026-11-20T14:03:00Z", "2026-11-20T14:03:00Z", true),
            ("2026-11-20T16:03:00+02:00", "2026-11-20T14:03:00Z", true),
            ("2026-11-20 14:03:00", "2026-11-20T14:03:00Z", false),
            (
                "2026-11-20 14:03:00.250000",
                "2026-11-20T14:03:00.25Z",
                false,
            ),
            ("2026-11-20 14:03:00+00", "2026-11-20T14:03:00Z", true),
            ("2026-11-20 15:03:00+01", "2026-11-20T14:03:00Z", true),
            ("2026-11-20 09:33:00-0430", "2026-11-20T14:03:00Z", true),
            ("2026-11-20 14:03:00.5 UTC", "2026-11-20T14:03:00.5Z", true),
        ];
        for (text, want, zone) in cases {
            let t = parse_target_time(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.time, utc(want), "{text}");
            assert_eq!(t.zone_given, zone, "{text}");
        }
        for bad in [
            "",
            "yesterday",
            "2026-13-01 00:00:00",
            "2026-11-20 14:03:00+99",
        ] {
            assert!(parse_target_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn postgres_time_is_explicit_utc() {
        assert_eq!(
            postgres_time(utc("2026-11-20T14:03:00.123456Z")),
            "2026-11-20 14:03:00.123456+00"
        );
    }

    #[test]
    fn names_xids_and_keywords() {
        assert_eq!(parse_xid(" 742 ").unwrap(), 742);
        assert!(parse_xid("x").is_err());
        assert!(parse_name("").is_err() && parse_name(&"a".repeat(64)).is_err());
        assert_eq!(parse_keyword("latest").unwrap(), RecoveryTarget::Latest);
        assert!(parse_keyword("soon").is_err());
    }
}
