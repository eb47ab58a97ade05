//! Value types and parsers of the configuration: sizes (`64MiB`), durations (`1s`, `500ms`,
//! with humantime), booleans and counts. Each parser returns the reason a text
//! is refused; the caller adds the key, the value and where it came from.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A size in bytes, written `64MiB`, `1GiB`, `512KiB`, `65536` in configuration.
///
/// Units are powers of 1024, as in PostgreSQL's own settings: `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case-insensitive), or `B`/no unit for bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> ByteSize {
        ByteSize(n << 30)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let expected =
            || "expected a size like 64MiB, 512KiB, 1GiB or a number of bytes".to_string();
        let number: u64 = digits.parse().map_err(|_| expected())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(expected()),
        };
        number
            .checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| "size does not fit in 64 bits".to_string())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Parses a positive duration: `1s`, `500ms`, `2m 30s`. The one duration syntax of walship:
/// config keys, environment variables and duration flags (`--wal-timeout`, `--idle`) all use it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(text)?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    Ok(duration)
}

/// Parses a duration as [`parse_duration`] does, zero included: for an age where zero means
/// "now" (`walship list --incomplete --remove --idle 0s`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration like 10s, 500ms or 2m ({e})"))
}

/// Parses `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`, as environment variables use).
pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// Parses a whole number in `min..=max`.
pub(crate) fn parse_count<T>(text: &str, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let n: T = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number from {min} to {max}"))?;
    if n < min || n > max {
        return Err(format!("must be from {min} to {max}"));
    }
    Ok(n)
}

/// Parses a size in `min..=max`.
pub(crate) fn parse_size(text: &str, min: ByteSize, max: ByteSize) -> Result<ByteSize, String> {
    let size: ByteSize = text.parse()?;
    if size < min || size > max {
        return Err(format!("must be from {min} to {max}"));
    }
    Ok(size)
}

/// Serializes a duration as humantime text (`10s`), the syntax the config file takes.
pub(crate) fn serialize_duration<S: serde::Serializer>(
    d: &Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize::mib(64));
        assert_eq!("64 mb".parse::<ByteSize>().unwrap(), ByteSize::mib(64));
        assert_eq!("1GiB".parse::<ByteSize>().unwrap(), ByteSize::gib(1));
        assert_eq!("512k".parse::<ByteSize>().unwrap(), ByteSize(512 << 10));
        assert_eq!("1000".parse::<ByteSize>().unwrap(), ByteSize(1000));
        for bad in ["", "MiB", "1.5GiB", "-1", "10 parsecs", "99999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536");
        assert_eq!(ByteSize(0).to_string(), "0");
    }

    #[test]
    fn durations_bools_counts() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m 30s").unwrap(), Duration::from_secs(150));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_bool("yes").unwrap());
        assert!(!parse_bool("0").unwrap());
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_count::<u32>("4", 1, 8).unwrap(), 4);
        assert!(parse_count::<u32>("0", 1, 8).is_err());
        assert!(parse_count::<u32>("x", 1, 8).is_err());
    }
}
