//! Where each manifest entry goes on disk: paths from a manifest are outside input, so each
//! is checked (relative, no `..`, no empty or `.` component) before it is joined to the
//! target directory; files under `pg_tblspc/<oid>/` go to their tablespace's directory as
//! the [`Placement`] accepted it, and only for the tablespaces the backup lists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use walship_common::backup::entry_path::check_backup_path;

use crate::error::RestoreError;
use crate::owner::Owner;
use crate::placement::Placement;

/// Where the tablespaces of a backup go: OID to absolute directory.
pub type TablespaceDirs = BTreeMap<u32, PathBuf>;

/// The on-disk destination, and owner, of manifest entries for one restore.
#[derive(Debug, Clone)]
pub struct Destinations {
    root: PathBuf,
    root_owner: Option<Owner>,
    tablespaces: TablespaceDirs,
    owners: BTreeMap<u32, Option<Owner>>,
}

impl Destinations {
    /// The destinations of an accepted placement.
    pub fn new(placement: &Placement) -> Destinations {
        Destinations {
            root: placement.data_directory.clone(),
            root_owner: placement.owner,
            tablespaces: placement.dirs(),
            owners: placement
                .tablespaces
                .iter()
                .map(|t| (t.oid, t.owner))
                .collect(),
        }
    }

    /// The tablespace directories, OID to directory.
    pub fn tablespaces(&self) -> &TablespaceDirs {
        &self.tablespaces
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Who owns what is written in the data directory.
    pub fn root_owner(&self) -> Option<Owner> {
        self.root_owner
    }

    /// Who owns what is written in tablespace `oid`.
    pub fn tablespace_owner(&self, oid: u32) -> Option<Owner> {
        self.owners.get(&oid).copied().flatten()
    }

    /// Where the entry at manifest path `path` goes, and who owns it; `None` for
    /// `pg_tblspc/<oid>` itself (a link the restore creates). Refuses paths that could
    /// escape, and anything under `pg_tblspc/` but a listed tablespace.
    pub fn of(
        &self,
        backup: &str,
        path: &str,
    ) -> Result<Option<(PathBuf, Option<Owner>)>, RestoreError> {
        let bad = |message: String| RestoreError::BadManifest {
            backup: backup.to_string(),
            message,
        };
        if let Err(reason) = check_backup_path(path) {
            return Err(bad(format!("path {path:?}: {reason}")));
        }
        if let Some(rest) = path.strip_prefix("pg_tblspc/") {
            let (oid, rest) = rest.split_once('/').unwrap_or((rest, ""));
            let dir = oid
                .parse::<u32>()
                .ok()
                .and_then(|oid| Some((oid, self.tablespaces.get(&oid)?)));
            let Some((oid, dir)) = dir else {
                return Err(bad(format!(
                    "{path} is not in a tablespace the backup lists"
                )));
            };
            return Ok(match rest {
                "" => None,
                rest => Some((dir.join(rest), self.tablespace_owner(oid))),
            });
        }
        Ok(Some((self.root.join(path), self.root_owner)))
    }

    /// The `tablespace_map` to write, rebuilt from the accepted tablespaces (never the
    /// backup's text): Postgres creates the `pg_tblspc` links from this file. `None` when
    /// there is no tablespace and the backup had no map (13 and 14 send an empty one).
    pub fn tablespace_map(&self, backup_had_one: bool) -> Option<String> {
        if self.tablespaces.is_empty() && !backup_had_one {
            return None;
        }
        let lines: Vec<String> = self
            .tablespaces
            .iter()
            .map(|(oid, dir)| format!("{oid} {}\n", dir.display()))
            .collect();
        Some(lines.concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::TablespacePlacement;

    #[test]
    fn escaping_paths_are_refused() {
        let d = Destinations::new(&Placement {
            data_directory: PathBuf::from("/data"),
            owner: None,
            tablespaces: vec![TablespacePlacement {
                oid: 16400,
                backup_location: "/old".into(),
                directory: PathBuf::from("/ts"),
                relocated: true,
                owner: None,
            }],
        });
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "base/../../x",
            "base/./x",
            "pg_tblspc/99/x",
            "pg_tblspc/99",
        ] {
            assert!(d.of("b", bad).is_err(), "{bad}");
        }
        assert_eq!(
            d.of("b", "base/1/2").unwrap(),
            Some((PathBuf::from("/data/base/1/2"), None))
        );
        assert_eq!(d.of("b", "pg_tblspc/16400").unwrap(), None);
        assert_eq!(
            d.of("b", "pg_tblspc/16400/PG_15/5/1").unwrap(),
            Some((PathBuf::from("/ts/PG_15/5/1"), None))
        );
        assert_eq!(d.tablespace_map(false).unwrap(), "16400 /ts\n");
        let none = Destinations::new(&Placement {
            data_directory: PathBuf::from("/data"),
            owner: None,
            tablespaces: Vec::new(),
        });
        assert_eq!(none.tablespace_map(true).as_deref(), Some(""));
        assert_eq!(none.tablespace_map(false), None);
    }
}
