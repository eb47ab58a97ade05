//! The retention policy: what `[retention]` in the configuration says to keep, and the rules
//! that name why a backup is kept.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, Offset, Utc};

/// What to keep. Every field is optional on its own, but [`Policy::is_set`] must hold before
/// `expire` removes anything: with no policy it refuses rather than guess.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Policy {
    /// Every moment from `now - pitr_window` to the end of the archive stays restorable.
    #[serde(serialize_with = "serialize_window")]
    pub pitr_window: Option<Duration>,
    /// In each of the N most recent calendar days that have a backup, keep the newest one.
    pub daily: u32,
    /// The same per ISO week.
    pub weekly: u32,
    /// The same per calendar month.
    pub monthly: u32,
    /// The same per calendar year.
    pub yearly: u32,
    /// The newest N complete backups are always kept (`None`: the default, 1).
    pub min_backups: Option<u32>,
    /// The zone calendar buckets are cut in.
    pub timezone: Timezone,
}

impl Policy {
    /// True when at least one rule that decides what to keep is configured (`pitr_window` or
    /// one of the calendar counts). `min_backups` and `timezone` alone are not a policy.
    pub fn is_set(&self) -> bool {
        self.pitr_window.is_some()
            || self.daily > 0
            || self.weekly > 0
            || self.monthly > 0
            || self.yearly > 0
    }

    /// `min_backups`, with its default of 1.
    pub fn min_backups(&self) -> u32 {
        self.min_backups.unwrap_or(1)
    }

    /// The configuration keys that make a policy, for the refusal when none is set.
    pub const KEYS: &'static str = "retention.pitr_window, retention.daily, retention.weekly, retention.monthly, retention.yearly";
}

fn serialize_window<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.collect_str(&humantime::format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// The zone calendar buckets (days, weeks, months, years) are cut in: UTC, a fixed offset from
/// it (`+02:00`), or an IANA zone name (`Europe/Paris`, with its daylight-saving rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timezone {
    /// A fixed offset (UTC is offset 0).
    Fixed(FixedOffset),
    /// An IANA zone.
    Named(chrono_tz::Tz),
}

impl Default for Timezone {
    /// UTC.
    fn default() -> Self {
        Timezone::Fixed(Utc.fix())
    }
}

impl Timezone {
    /// Parses `UTC`, `Z`, an offset `+HH:MM` / `-HH:MM` / `+HH`, or an IANA zone name.
    pub fn parse(text: &str) -> Result<Timezone, String> {
        let text = text.trim();
        let expected = || {
            format!(
                "expected UTC, a fixed offset like +02:00 or a zone name like Europe/Paris, not {text:?}"
            )
        };
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Ok(Timezone::default());
        }
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => {
                return text
                    .parse::<chrono_tz::Tz>()
                    .map(Timezone::Named)
                    .map_err(|_| expected());
            }
        };
        let (hours, minutes) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None => (rest, "0"),
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(hours) || !digits(minutes) {
            return Err(expected());
        }
        let hours: i32 = hours.parse().map_err(|_| expected())?;
        let minutes: i32 = minutes.parse().map_err(|_| expected())?;
        if hours > 14 || minutes > 59 {
            return Err(expected());
        }
        FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
            .map(Timezone::Fixed)
            .ok_or_else(expected)
    }

    /// The calendar bucket of `time` for `period` (a day, ISO week, month or year) in this zone.
    pub(crate) fn bucket(self, time: DateTime<Utc>, period: Period) -> (i32, u32) {
        match self {
            Timezone::Fixed(offset) => bucket_of(&time.with_timezone(&offset), period),
            Timezone::Named(zone) => bucket_of(&time.with_timezone(&zone), period),
        }
    }
}

fn bucket_of(local: &impl Datelike, period: Period) -> (i32, u32) {
    match period {
        Period::Day => (local.year(), local.ordinal()),
        Period::Week => {
            let week = local.iso_week();
            (week.year(), week.week())
        }
        Period::Month => (local.year(), local.month()),
        Period::Year => (local.year(), 0),
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timezone::Fixed(offset) if offset.local_minus_utc() == 0 => f.write_str("UTC"),
            Timezone::Fixed(offset) => write!(f, "{offset}"),
            Timezone::Named(zone) => f.write_str(zone.name()),
        }
    }
}

impl serde::Serialize for Timezone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A calendar period of the GFS rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Period {
    Day,
    Week,
    Month,
    Year,
}

/// Why a backup is kept. A backup may be kept by several rules; `list` and `expire` show all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Pinned with `walship pin`.
    Pinned,
    /// Needed for the point-in-time-recovery window (the window's anchor or a later backup).
    Pitr,
    /// The newest backup of one of the `daily` most recent days.
    Daily,
    /// The newest backup of one of the `weekly` most recent ISO weeks.
    Weekly,
    /// The newest backup of one of the `monthly` most recent months.
    Monthly,
    /// The newest backup of one of the `yearly` most recent years.
    Yearly,
    /// Kept so that at least `min_backups` complete backups remain.
    MinBackups,
    /// It ended after the time the policy was evaluated at (`expire --now` in the past).
    AfterNow,
    /// A kept incremental backup is built on it (directly or through other incrementals).
    ChainParent,
}

impl Rule {
    /// The name shown in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Pinned => "pinned",
            Rule::Pitr => "pitr",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
            Rule::MinBackups => "min_backups",
            Rule::AfterNow => "after_now",
            Rule::ChainParent => "chain_parent",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezones_parse() {
        assert_eq!(Timezone::parse("UTC").unwrap().to_string(), "UTC");
        assert_eq!(Timezone::parse("+02:00").unwrap().to_string(), "+02:00");
        assert_eq!(Timezone::parse("-05").unwrap().to_string(), "-05:00");
        assert_eq!(
            Timezone::parse("Europe/Paris").unwrap().to_string(),
            "Europe/Paris"
        );
        for bad in ["Europe/Atlantis", "2", "+25:00", "+1:60", ""] {
            assert!(Timezone::parse(bad).is_err(), "{bad}");
        }
    }
}
