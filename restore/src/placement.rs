//! Where a restore writes, and whether it may: the data directory and every tablespace
//! directory, decided and checked before any data moves (the plan runs it, so `--dry-run`
//! shows where every tablespace goes and refuses what the restore would refuse).
//!
//! Rules (a restore must never harm what it does not own):
//! - A directory whose `postmaster.pid` names a running process is in use: refused, even
//!   with `--force` or `--delta`.
//! - A non-empty data directory needs `--force` or `--delta`, and then must be a Postgres
//!   data directory (`PG_VERSION` or `global/`); anything else is never cleared.
//!   `--delta` also refuses a data directory of another cluster.
//! - Only the tablespaces the backup lists are restored. A location comes from the backup
//!   only with `--tablespace-in-place`; otherwise the operator names it with
//!   `--tablespace OID=DIR`. Tablespace directories never overlap each other or the data
//!   directory.
//! - A non-empty tablespace directory is cleared (with `--force`/`--delta`) only when it is
//!   the tablespace of the data directory being replaced: that directory's
//!   `pg_tblspc/<oid>` link points to it and its `pg_control` (when present) is of this
//!   cluster. Otherwise the refusal names `--tablespace OID=DIR` as the way out.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use walship_common::catalog::BackupManifest;

use crate::materialise::{PG_CONTROL, control_system_identifier};
use crate::owner::Owner;
use crate::paths::TablespaceDirs;
use crate::plan::{Problem, ProblemKind};

/// Where the operator asked the restore to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest {
    /// The data directory (`--to`), absolute.
    pub to: PathBuf,
    /// `--force`: replace the contents of a data directory.
    pub force: bool,
    /// `--delta`: reuse matching files of a data directory.
    pub delta: bool,
    /// `--tablespace OID=DIR`.
    pub relocate: TablespaceDirs,
    /// `--tablespace-in-place`: restore the other tablespaces at the locations the backup
    /// recorded.
    pub in_place: bool,
    /// `--owner`.
    pub owner: Option<Owner>,
}

/// Where one tablespace goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TablespacePlacement {
    /// Its OID.
    pub oid: u32,
    /// Its location on the server backed up.
    pub backup_location: String,
    /// Where the restore writes it.
    pub directory: PathBuf,
    /// True when `--tablespace` named the directory.
    pub relocated: bool,
    /// Who will own its files (root restores; `None`: the caller).
    pub owner: Option<Owner>,
}

/// Where everything goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The data directory.
    pub data_directory: PathBuf,
    /// Who will own its files (root restores; `None`: the caller).
    pub owner: Option<Owner>,
    /// The tablespaces, by OID.
    pub tablespaces: Vec<TablespacePlacement>,
}

impl Placement {
    /// OID to directory.
    pub fn dirs(&self) -> TablespaceDirs {
        self.tablespaces
            .iter()
            .map(|t| (t.oid, t.directory.clone()))
            .collect()
    }
}

fn problem(kind: ProblemKind, message: String) -> Problem {
    Problem { kind, message }
}

/// The checks of the data directory alone (no manifest needed): in use, not empty, not a
/// data directory, another cluster's.
pub fn check_data_dir(request: &PlacementRequest, system_identifier: u64) -> Vec<Problem> {
    let dir = &request.to;
    let mut problems = Vec::new();
    if let Some(pid) = live_postmaster(dir) {
        problems.push(in_use(dir, pid));
    }
    let entry = match first_entry(dir) {
        Ok(None) => return problems,
        Ok(Some(entry)) => entry,
        Err(message) => {
            problems.push(problem(ProblemKind::TargetNotUsable, message));
            return problems;
        }
    };
    if !request.force && !request.delta {
        problems.push(problem(
            ProblemKind::TargetNotEmpty,
            format!(
                "target directory {} is not empty ({entry} and possibly more); refusing to overwrite it (nothing was written): pass --force to replace its contents or --delta to reuse matching files",
                dir.display()
            ),
        ));
        return problems;
    }
    if !is_data_dir(dir) {
        problems.push(problem(
            ProblemKind::TargetNotUsable,
            format!(
                "target directory {} is not empty ({entry} and possibly more) and is not a PostgreSQL data directory (no PG_VERSION): walship replaces only a data directory; restore into an empty or new directory (nothing was written)",
                dir.display()
            ),
        ));
        return problems;
    }
    if request.delta
        && let Some(found) = dir_system_identifier(dir)
        && found != system_identifier
    {
        problems.push(problem(
            ProblemKind::OtherCluster,
            format!(
                "{} holds a data directory of system identifier {found}, but the repository belongs to {system_identifier}; refusing to mix them (nothing was written)",
                dir.display()
            ),
        ));
    }
    problems
}

/// Where each tablespace of `manifest` goes, and every reason it may not go there.
pub fn place(
    manifest: &BackupManifest,
    request: &PlacementRequest,
    system_identifier: u64,
) -> (Placement, Vec<Problem>) {
    let mut problems = Vec::new();
    let to = &request.to;
    let data_owner = Owner::for_target(request.owner, to);
    let mut tablespaces = Vec::new();
    for (oid, dir) in &request.relocate {
        if !manifest.tablespaces.iter().any(|t| t.oid == *oid) {
            problems.push(problem(
                ProblemKind::Tablespace,
                format!(
                    "--tablespace {oid}={}: backup {} has no tablespace {oid} (it has {:?})",
                    dir.display(),
                    manifest.id,
                    manifest
                        .tablespaces
                        .iter()
                        .map(|t| t.oid)
                        .collect::<Vec<_>>()
                ),
            ));
        }
    }
    for ts in &manifest.tablespaces {
        let relocated = request.relocate.get(&ts.oid);
        let directory = relocated
            .cloned()
            .unwrap_or_else(|| PathBuf::from(&ts.location));
        if relocated.is_none() && !request.in_place {
            problems.push(problem(
                ProblemKind::Tablespace,
                format!(
                    "tablespace {} would be restored at {}, its location on the server backed up, outside {}: name a directory with --tablespace {}=DIR, or pass --tablespace-in-place to confirm that location",
                    ts.oid,
                    ts.location,
                    to.display(),
                    ts.oid
                ),
            ));
        }
        // A directory the restore creates belongs to the data directory's owner: the
        // server must be able to open it.
        let owner = if directory.exists() {
            Owner::for_target(request.owner, &directory)
        } else {
            data_owner
        };
        tablespaces.push(TablespacePlacement {
            oid: ts.oid,
            backup_location: ts.location.clone(),
            owner,
            directory,
            relocated: relocated.is_some(),
        });
    }
    overlap_problems(to, &tablespaces, &mut problems);
    for ts in &tablespaces {
        tablespace_dir_problems(request, ts, system_identifier, &mut problems);
    }
    let placement = Placement {
        data_directory: to.clone(),
        owner: data_owner,
        tablespaces,
    };
    (placement, problems)
}

/// No tablespace directory is, holds or lies inside the data directory or another one.
fn overlap_problems(to: &Path, tablespaces: &[TablespacePlacement], problems: &mut Vec<Problem>) {
    let nests = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
    for (i, ts) in tablespaces.iter().enumerate() {
        if nests(&ts.directory, to) {
            problems.push(problem(
                ProblemKind::Tablespace,
                format!(
                    "tablespace {} directory {} overlaps the data directory {}: pass --tablespace {}=DIR with a directory of its own",
                    ts.oid,
                    ts.directory.display(),
                    to.display(),
                    ts.oid
                ),
            ));
        }
        for other in &tablespaces[i + 1..] {
            if nests(&ts.directory, &other.directory) {
                problems.push(problem(
                    ProblemKind::Tablespace,
                    format!(
                        "tablespaces {} and {} would share {} and {}: give each a directory of its own with --tablespace OID=DIR",
                        ts.oid,
                        other.oid,
                        ts.directory.display(),
                        other.directory.display()
                    ),
                ));
            }
        }
    }
}

fn tablespace_dir_problems(
    request: &PlacementRequest,
    ts: &TablespacePlacement,
    system_identifier: u64,
    problems: &mut Vec<Problem>,
) {
    let dir = &ts.directory;
    if let Some(pid) = live_postmaster(dir) {
        problems.push(in_use(dir, pid));
    }
    let entry = match first_entry(dir) {
        Ok(None) => return,
        Ok(Some(entry)) => entry,
        Err(message) => {
            problems.push(problem(ProblemKind::TargetNotUsable, message));
            return;
        }
    };
    let way_out = format!(
        "pass --tablespace {}=DIR to restore it into an empty or new directory (nothing was written)",
        ts.oid
    );
    if !request.force && !request.delta {
        problems.push(problem(
            ProblemKind::TargetNotEmpty,
            format!(
                "tablespace {} directory {} is not empty ({entry} and possibly more): {way_out}",
                ts.oid,
                dir.display()
            ),
        ));
        return;
    }
    let link = request.to.join("pg_tblspc").join(ts.oid.to_string());
    let linked = fs::read_link(&link)
        .ok()
        .and_then(|target| fs::canonicalize(request.to.join("pg_tblspc").join(target)).ok())
        .zip(fs::canonicalize(dir).ok())
        .is_some_and(|(a, b)| a == b);
    let same_cluster = is_data_dir(&request.to)
        && dir_system_identifier(&request.to).is_none_or(|found| found == system_identifier);
    if !(linked && same_cluster) {
        problems.push(problem(
            ProblemKind::Tablespace,
            format!(
                "tablespace {} directory {} is not empty ({entry} and possibly more) and is not the tablespace of the data directory being replaced ({} does not point to it, or that directory is not of this cluster); walship clears only a tablespace of the same cluster: {way_out}",
                ts.oid,
                dir.display(),
                link.display()
            ),
        ));
    }
}

fn in_use(dir: &Path, pid: i32) -> Problem {
    problem(
        ProblemKind::TargetInUse,
        format!(
            "{} is in use: its postmaster.pid names process {pid}, which is running; stop that server first, or remove postmaster.pid if no server uses the directory (nothing was written)",
            dir.display()
        ),
    )
}

/// The running process a directory's `postmaster.pid` names, if any.
pub fn live_postmaster(dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    // A standalone backend writes its pid negated.
    let pid = text
        .lines()
        .next()?
        .trim()
        .parse::<i32>()
        .ok()?
        .checked_abs()?;
    if pid == 0 {
        return None;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Some(pid),
        Err(_) => None,
    }
}

/// The name of one entry of `dir`; `None` when it is empty or absent.
fn first_entry(dir: &Path) -> Result<Option<String>, String> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(None),
            Some(Ok(e)) => Ok(Some(e.file_name().to_string_lossy().into_owned())),
            Some(Err(e)) => Err(format!("cannot read {}: {e}", dir.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot use {}: {e}", dir.display())),
    }
}

/// A Postgres data directory, or what a walship restore that failed left of one.
fn is_data_dir(dir: &Path) -> bool {
    dir.join("PG_VERSION").is_file() || dir.join("global").is_dir()
}

fn dir_system_identifier(dir: &Path) -> Option<u64> {
    control_system_identifier(&fs::read(dir.join(PG_CONTROL)).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use walship_common::catalog::TablespaceInfo;

    fn request(to: &Path) -> PlacementRequest {
        PlacementRequest {
            to: to.to_path_buf(),
            force: false,
            delta: false,
            relocate: TablespaceDirs::new(),
            in_place: false,
            owner: None,
        }
    }

    fn kinds(problems: &[Problem]) -> Vec<ProblemKind> {
        problems.iter().map(|p| p.kind).collect()
    }

    fn manifest(location: &str) -> BackupManifest {
        let json = serde_json::json!({
            "format_version": 1, "id": "20261120T140300Z", "label": "t",
            "system_identifier": "1", "pg_major": 15, "pg_version_num": 150000,
            "wal_segment_size": 16777216, "start_timeline": 1, "stop_timeline": 1,
            "start_lsn": "0/2000028", "stop_lsn": "0/2000100",
            "start_time": "2026-11-20T14:03:00Z", "stop_time": "2026-11-20T14:03:01Z",
            "duration_ms": 1, "backup_label": "", "tablespace_map": null,
            "tablespaces": [], "pg_backup_manifest": null, "bytes_raw": 0,
            "bytes_stored": 0, "walship_version": "t", "bundles": [], "files": []
        });
        let mut m: BackupManifest = serde_json::from_value(json).unwrap();
        m.tablespaces = vec![TablespaceInfo {
            oid: 16400,
            location: location.into(),
        }];
        m
    }

    #[test]
    fn data_directory_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let to = tmp.path().join("data");
        assert!(check_data_dir(&request(&to), 1).is_empty(), "absent");
        std::fs::create_dir(&to).unwrap();
        std::fs::write(to.join("keep-me"), "x").unwrap();
        let mut req = request(&to);
        assert_eq!(
            kinds(&check_data_dir(&req, 1)),
            [ProblemKind::TargetNotEmpty]
        );
        req.force = true;
        assert_eq!(
            kinds(&check_data_dir(&req, 1)),
            [ProblemKind::TargetNotUsable]
        );
        std::fs::write(to.join("PG_VERSION"), "15\n").unwrap();
        assert!(check_data_dir(&req, 1).is_empty(), "a data directory");
        // This process is running: its pid in postmaster.pid means "in use".
        std::fs::write(
            to.join("postmaster.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(kinds(&check_data_dir(&req, 1)), [ProblemKind::TargetInUse]);
    }

    #[test]
    fn tablespaces_need_a_named_or_confirmed_place() {
        let tmp = tempfile::tempdir().unwrap();
        let to = tmp.path().join("data");
        let original = tmp.path().join("original");
        let m = manifest(original.to_str().unwrap());
        let mut req = request(&to);
        let (placed, problems) = place(&m, &req, 1);
        assert_eq!(kinds(&problems), [ProblemKind::Tablespace]);
        assert!(problems[0].message.contains("--tablespace 16400=DIR"));
        assert_eq!(placed.tablespaces[0].directory, original);
        req.in_place = true;
        assert!(place(&m, &req, 1).1.is_empty(), "confirmed");
        std::fs::create_dir(&original).unwrap();
        std::fs::write(original.join("PG_15_1"), "").unwrap();
        req.force = true;
        let (_, problems) = place(&m, &req, 1);
        assert!(
            problems[0]
                .message
                .contains("not the tablespace of the data directory"),
            "{problems:?}"
        );
        req.relocate.insert(16400, to.join("spc"));
        let (_, problems) = place(&m, &req, 1);
        assert!(problems[0].message.contains("overlaps"), "{problems:?}");
        req.relocate.insert(7, tmp.path().join("seven"));
        let (_, problems) = place(&m, &req, 1);
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("no tablespace 7"))
        );
    }
}
