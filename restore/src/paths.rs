//! Where each manifest entry goes on disk: paths from a manifest are outside input, so each
//! is checked (relative, no `..`, no empty or `.` component) before it is joined to the
//! target directory; files under `pg_tblspc/<oid>/` go to their tablespace's directory,
//! relocated by `--tablespace OID=DIR`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use walship_common::backup::entry_path::{check_backup_path, tablespace_link_oid};
use walship_common::catalog::{BackupManifest, FileKind};

use crate::error::RestoreError;

/// Where the tablespaces of a backup go: OID to absolute directory.
pub type TablespaceDirs = BTreeMap<u32, PathBuf>;

/// The on-disk destination of manifest entries for one restore.
#[derive(Debug, Clone)]
pub struct Destinations {
    root: PathBuf,
    tablespaces: TablespaceDirs,
}

impl Destinations {
    /// Resolves each tablespace's directory: `relocate` first, then the location the backup
    /// recorded (`tablespaces`, or the `pg_tblspc/<oid>` link target). Every one must be
    /// absolute.
    pub fn new(
        root: &Path,
        manifest: &BackupManifest,
        relocate: &TablespaceDirs,
    ) -> Result<Destinations, RestoreError> {
        let bad = |message: String| RestoreError::BadManifest {
            backup: manifest.id.to_string(),
            message,
        };
        let mut tablespaces = TablespaceDirs::new();
        for ts in &manifest.tablespaces {
            tablespaces.insert(ts.oid, PathBuf::from(&ts.location));
        }
        for entry in &manifest.files {
            if let (FileKind::Symlink, Some(oid), Some(target)) = (
                entry.kind,
                tablespace_link_oid(&entry.path),
                &entry.link_target,
            ) {
                tablespaces
                    .entry(oid)
                    .or_insert_with(|| PathBuf::from(target));
            }
        }
        for (oid, dir) in relocate {
            if !tablespaces.contains_key(oid) {
                return Err(bad(format!(
                    "--tablespace {oid}={}: the backup has no tablespace {oid} (it has {:?})",
                    dir.display(),
                    tablespaces.keys().collect::<Vec<_>>()
                )));
            }
            tablespaces.insert(*oid, dir.clone());
        }
        for (oid, dir) in &tablespaces {
            if !dir.is_absolute() || !clean_components(dir) {
                return Err(bad(format!(
                    "tablespace {oid} location {} is not a clean absolute path",
                    dir.display()
                )));
            }
        }
        Ok(Destinations {
            root: root.to_path_buf(),
            tablespaces,
        })
    }

    /// The tablespace directories, OID to directory.
    pub fn tablespaces(&self) -> &TablespaceDirs {
        &self.tablespaces
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry at manifest path `path` goes; `None` for `pg_tblspc/<oid>` itself
    /// (a link the restore creates). Refuses paths that could escape.
    pub fn of(&self, backup: &str, path: &str) -> Result<Option<PathBuf>, RestoreError> {
        let rel = Path::new(path);
        if let Err(reason) = check_backup_path(path) {
            return Err(RestoreError::BadManifest {
                backup: backup.to_string(),
                message: format!("path {path:?}: {reason}"),
            });
        }
        if let Some(oid) = tablespace_oid(path)
            && let Some(dir) = self.tablespaces.get(&oid)
        {
            let prefix = format!("pg_tblspc/{oid}");
            return Ok(match path.strip_prefix(&prefix).unwrap_or("") {
                "" => None,
                rest => Some(dir.join(rest.trim_start_matches('/'))),
            });
        }
        Ok(Some(self.root.join(rel)))
    }

    /// The `tablespace_map` to write: the backup's, with relocated lines pointing at their
    /// new directory (Postgres creates the `pg_tblspc` links from this file).
    pub fn tablespace_map(&self, original: &str) -> String {
        let mut out = String::new();
        for line in original.lines() {
            let oid = line
                .split_once(' ')
                .and_then(|(oid, _)| oid.parse::<u32>().ok());
            match oid.and_then(|oid| self.tablespaces.get(&oid).map(|dir| (oid, dir))) {
                Some((oid, dir)) => out.push_str(&format!("{oid} {}\n", dir.display())),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// The OID of `pg_tblspc/<oid>[/...]`.
fn tablespace_oid(path: &str) -> Option<u32> {
    let rest = path.strip_prefix("pg_tblspc/")?;
    rest.split('/').next()?.parse().ok()
}

/// True when every component of an absolute directory is a plain name.
fn clean_components(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::RootDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_paths_are_refused() {
        let d = Destinations {
            root: PathBuf::from("/data"),
            tablespaces: [(16400, PathBuf::from("/ts"))].into(),
        };
        for bad in ["", "/etc/passwd", "../x", "base/../../x", "base/./x"] {
            assert!(d.of("b", bad).is_err(), "{bad}");
        }
        assert_eq!(
            d.of("b", "base/1/2").unwrap(),
            Some(PathBuf::from("/data/base/1/2"))
        );
        assert_eq!(d.of("b", "pg_tblspc/16400").unwrap(), None);
        assert_eq!(
            d.of("b", "pg_tblspc/16400/PG_15/5/1").unwrap(),
            Some(PathBuf::from("/ts/PG_15/5/1"))
        );
        assert_eq!(d.tablespace_map("16400 /old\n"), "16400 /ts\n");
    }
}
