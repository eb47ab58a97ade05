//! `Lsn`: a position in the write-ahead log.
//!
//! PostgreSQL prints LSNs as `%X/%X` (high and low 32 bits, no padding) in 13-18 and as
//! `%X/%08X` from 19 on; both parse here, and we always print the unpadded form that every
//! supported server accepts in `recovery_target_lsn`.

use std::fmt;
use std::str::FromStr;

/// A WAL location: a byte offset in the (conceptually infinite) WAL stream.
///
/// Serialises as the `X/X` string in human-readable formats (JSON manifests), so that a
/// manifest reads like Postgres's own output.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {text:?}: expected two hexadecimal numbers of at most 8 digits separated by '/', like 0/16B3748"
)]
pub struct LsnParseError {
    /// The text that failed to parse.
    pub text: String,
}

impl Lsn {
    /// `InvalidXLogRecPtr`: Postgres's "no position".
    pub const INVALID: Lsn = Lsn(0);

    /// True unless this is `InvalidXLogRecPtr` (0/0).
    pub fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// This LSN plus `bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError {
            text: s.to_string(),
        };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |part: &str| -> Result<u64, LsnParseError> {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u64::from_str_radix(part, 16).map_err(|_| err())
        };
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_unpadded_and_parses_both_forms() {
        let lsn = Lsn(0x0000_0001_0000_0028);
        assert_eq!(lsn.to_string(), "1/28");
        assert_eq!("1/28".parse::<Lsn>().unwrap(), lsn);
        assert_eq!("1/00000028".parse::<Lsn>().unwrap(), lsn);
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1",
            "/",
            "1/",
            "/1",
            "1/2/3",
            "g/0",
            "1/123456789",
            " 1/2",
            "1/2 ",
            "+1/2",
            "-1/2",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }
}
