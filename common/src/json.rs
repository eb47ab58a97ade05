//! Serde helpers shared by the repository's JSON documents (`walship.json`, manifests).

/// Serialises a `u64` as a decimal string: JSON readers that parse numbers as doubles
/// (JavaScript, jq) would silently round a system identifier otherwise.
pub(crate) mod u64_as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
