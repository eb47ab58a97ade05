//! The PostgreSQL major versions walship understands, and how to recognise each one's WAL.
//!
//! `XLOG_PAGE_MAGIC` (`src/include/access/xlog_internal.h`) changes with every major release
//! whose WAL format changed; `PG_CONTROL_VERSION` (`src/include/catalog/pg_control.h`) with
//! every change to `global/pg_control`. Each value below was checked against a real server
//! of that major by `common/tests/page_header_real.rs`. A magic that is not in the table is a
//! refusal, never a guess: a new major needs a new row (and a test run against it).

/// What walship knows about one PostgreSQL major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgVersion {
    /// The major version number (13, 14, ...).
    pub major: u32,
    /// `XLOG_PAGE_MAGIC`: the `xlp_magic` of every WAL page this major writes.
    pub xlog_page_magic: u16,
    /// `PG_CONTROL_VERSION`: `pg_control_version` at offset 8 of `global/pg_control`.
    pub pg_control_version: u32,
    /// `CATALOG_VERSION_NO` of the release (`src/include/catalog/catversion.h`):
    /// `catalog_version_no` at offset 12 of `global/pg_control`. Fixed within a major.
    pub catalog_version_no: u32,
}

/// Every supported major, oldest first.
pub const SUPPORTED_VERSIONS: &[PgVersion] = &[
    PgVersion {
        major: 13,
        xlog_page_magic: 0xD106,
        pg_control_version: 1300,
        catalog_version_no: 202007201,
    },
    PgVersion {
        major: 14,
        xlog_page_magic: 0xD10D,
        pg_control_version: 1300,
        catalog_version_no: 202107181,
    },
    PgVersion {
        major: 15,
        xlog_page_magic: 0xD110,
        pg_control_version: 1300,
        catalog_version_no: 202209061,
    },
    PgVersion {
        major: 16,
        xlog_page_magic: 0xD113,
        pg_control_version: 1300,
        catalog_version_no: 202307071,
    },
    PgVersion {
        major: 17,
        xlog_page_magic: 0xD116,
        pg_control_version: 1700,
        catalog_version_no: 202406281,
    },
    PgVersion {
        major: 18,
        xlog_page_magic: 0xD118,
        pg_control_version: 1800,
        catalog_version_no: 202506291,
    },
];

impl PgVersion {
    /// The supported major whose WAL pages carry `magic`, if any.
    pub fn from_xlog_page_magic(magic: u16) -> Option<PgVersion> {
        SUPPORTED_VERSIONS
            .iter()
            .copied()
            .find(|v| v.xlog_page_magic == magic)
    }

    /// The supported major `major`, if any.
    pub fn from_major(major: u32) -> Option<PgVersion> {
        SUPPORTED_VERSIONS
            .iter()
            .copied()
            .find(|v| v.major == major)
    }

    /// The major of a `server_version_num` (`150004` -> 15), if supported.
    pub fn from_server_version_num(num: u32) -> Option<PgVersion> {
        PgVersion::from_major(num / 10000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for pair in SUPPORTED_VERSIONS.windows(2) {
            assert!(pair[0].major < pair[1].major);
            assert!(pair[0].xlog_page_magic < pair[1].xlog_page_magic);
        }
        for v in SUPPORTED_VERSIONS {
            assert_eq!(PgVersion::from_xlog_page_magic(v.xlog_page_magic), Some(*v));
            assert_eq!(PgVersion::from_major(v.major), Some(*v));
        }
        assert_eq!(
            PgVersion::from_server_version_num(150004).map(|v| v.major),
            Some(15)
        );
        assert_eq!(
            PgVersion::from_xlog_page_magic(0xD120),
            None,
            "PG19 is not supported yet"
        );
        assert_eq!(PgVersion::from_major(12), None);
    }
}
