//! Timeline IDs (`TimeLineID` in `src/include/access/xlogdefs.h`).

use std::fmt;

/// A Postgres timeline ID. Timeline 1 is the cluster's first; each promotion or archive
/// recovery that ends creates the next one, recorded in a `.history` file.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TimelineId(pub u32);

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
