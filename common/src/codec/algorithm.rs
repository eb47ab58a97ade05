//! [`Codec`]: which compression an object's payload uses, as chosen in configuration
//! (`none`, `lz4`, `zstd`, `zstd:N`) and as recorded in the object header.

use std::fmt;
use std::str::FromStr;

/// The zstd level used when the configuration says just `zstd`.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The compression of an object's payload.
///
/// Parsed from configuration strings: `none`, `lz4`, `zstd` (level 3) or `zstd:N` with
/// N in 1..=22. Displays in the same syntax, so a value round-trips through the config file
/// and a serialized `Config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Codec {
    /// Stored as is (still framed and checksummed).
    None,
    /// LZ4 frame format (lz4_flex), the fast default.
    #[default]
    Lz4,
    /// Zstandard at the given level; decoding does not depend on the level.
    Zstd {
        /// Compression level, 1..=22.
        level: i32,
    },
}

/// Why a string does not name a codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compression {text:?}: expected none, lz4, zstd or zstd:LEVEL with LEVEL 1-22")]
pub struct CodecParseError {
    /// The text that failed to parse.
    pub text: String,
}

impl Codec {
    /// The codec id byte stored in the object header.
    pub(crate) fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
            Codec::Zstd { .. } => 2,
        }
    }

    /// The codec parameter byte stored in the header (the zstd level; 0 otherwise).
    pub(crate) fn parameter(self) -> u8 {
        match self {
            // Levels are validated to 1..=22 at construction, so this never truncates.
            Codec::Zstd { level } => u8::try_from(level.clamp(0, 127)).unwrap_or(0),
            Codec::None | Codec::Lz4 => 0,
        }
    }

    /// The codec for a header's id and parameter bytes, or `None` for an unknown id.
    pub(crate) fn from_header(id: u8, parameter: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::None),
            1 => Some(Codec::Lz4),
            2 => Some(Codec::Zstd {
                level: i32::from(parameter as i8),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::None => f.write_str("none"),
            Codec::Lz4 => f.write_str("lz4"),
            Codec::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl FromStr for Codec {
    type Err = CodecParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CodecParseError {
            text: s.to_string(),
        };
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "none" => Ok(Codec::None),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => Ok(Codec::Zstd {
                level: DEFAULT_ZSTD_LEVEL,
            }),
            other => {
                let level = other.strip_prefix("zstd:").ok_or_else(err)?;
                let level: i32 = level.parse().map_err(|_| err())?;
                if (1..=22).contains(&level) {
                    Ok(Codec::Zstd { level })
                } else {
                    Err(err())
                }
            }
        }
    }
}

impl serde::Serialize for Codec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Codec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_strings() {
        assert_eq!("none".parse::<Codec>().unwrap(), Codec::None);
        assert_eq!("lz4".parse::<Codec>().unwrap(), Codec::Lz4);
        assert_eq!("LZ4".parse::<Codec>().unwrap(), Codec::Lz4);
        assert_eq!("zstd".parse::<Codec>().unwrap(), Codec::Zstd { level: 3 });
        assert_eq!(
            "zstd:19".parse::<Codec>().unwrap(),
            Codec::Zstd { level: 19 }
        );
        for bad in [
            "", "gzip", "zstd:", "zstd:0", "zstd:23", "zstd:-1", "zstd:x", "lz4:1",
        ] {
            let err = bad.parse::<Codec>().unwrap_err();
            assert_eq!(err.text, bad);
        }
    }

    #[test]
    fn display_round_trips() {
        for codec in [
            Codec::None,
            Codec::Lz4,
            Codec::Zstd { level: 1 },
            Codec::Zstd { level: 22 },
        ] {
            assert_eq!(codec.to_string().parse::<Codec>().unwrap(), codec);
            let (id, param) = (codec.id(), codec.parameter());
            assert_eq!(Codec::from_header(id, param), Some(codec));
        }
        assert_eq!(Codec::from_header(3, 0), None);
    }
}
