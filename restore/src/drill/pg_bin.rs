//! Which Postgres server binaries a drill starts: those of the backup's major version.
//!
//! Looked for in order: `--pg-bin DIR`; Debian's `/usr/lib/postgresql/<major>/bin`; the
//! test-deps cache the harness fills (`$WALSHIP_TEST_DEPS/postgres/<major>/native/bin`,
//! default `/opt/walship-test-deps`, whose binaries need `LD_LIBRARY_PATH=native/lib`); a
//! `postgres` on `PATH`. Every candidate's `postgres --version` must name the major: a
//! drill on the wrong major would prove nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Server binaries of one major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// Directory holding `postgres`.
    pub bin_dir: PathBuf,
    /// Directory to put in `LD_LIBRARY_PATH` (the npm builds of the test-deps cache).
    pub lib_dir: Option<PathBuf>,
    /// The major version `postgres --version` printed.
    pub major: u32,
}

/// No binaries of the major were found.
#[derive(Debug, thiserror::Error)]
#[error(
    "no PostgreSQL {major} server binaries found (looked in: {}); install them or pass --pg-bin DIR",
    searched.join(", ")
)]
pub struct NoBinaries {
    /// The major needed.
    pub major: u32,
    /// Every place looked at, with why it did not fit.
    pub searched: Vec<String>,
}

impl PgBinaries {
    /// A command running `tool` of these binaries, with `LD_LIBRARY_PATH` when needed.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(tool));
        if let Some(lib) = &self.lib_dir {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        cmd
    }
}

/// Finds the server binaries of `major`; `explicit` is `--pg-bin`, the only place looked
/// at when given.
pub fn find(major: u32, explicit: Option<&Path>) -> Result<PgBinaries, NoBinaries> {
    let mut candidates: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    if let Some(dir) = explicit {
        candidates.push((dir.to_path_buf(), sibling_lib(dir)));
    } else {
        candidates.push((
            PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
            None,
        ));
        let cache = std::env::var_os("WALSHIP_TEST_DEPS")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/opt/walship-test-deps"), PathBuf::from);
        let native = cache.join(format!("postgres/{major}/native"));
        candidates.push((native.join("bin"), Some(native.join("lib"))));
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                candidates.push((dir, None));
            }
        }
    }
    let mut searched = Vec::new();
    for (bin_dir, lib_dir) in candidates {
        if !bin_dir.join("postgres").is_file() {
            if explicit.is_some() || searched.len() < 2 {
                searched.push(format!("{} (no postgres)", bin_dir.display()));
            }
            continue;
        }
        let found = PgBinaries {
            bin_dir: bin_dir.clone(),
            lib_dir: lib_dir.filter(|l| l.is_dir()),
            major: 0,
        };
        match probe_major(&found) {
            Some(m) if m == major => return Ok(PgBinaries { major: m, ..found }),
            Some(m) => searched.push(format!("{} (version {m})", bin_dir.display())),
            None => searched.push(format!("{} (postgres --version failed)", bin_dir.display())),
        }
    }
    Err(NoBinaries { major, searched })
}

/// `lib` beside `bin`, as the npm builds lay them out.
fn sibling_lib(bin_dir: &Path) -> Option<PathBuf> {
    let lib = bin_dir.parent()?.join("lib");
    lib.join("libpq.so.5").exists().then_some(lib)
}

fn probe_major(bins: &PgBinaries) -> Option<u32> {
    let out = bins.command("postgres").arg("--version").output().ok()?;
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

/// The major of `postgres --version` output: `postgres (PostgreSQL) 15.8 (Debian ...)`.
pub fn parse_major(version: &str) -> Option<u32> {
    let after = version.split(')').nth(1)?.trim_start();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.8 (Debian 15.8-1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1\n"), Some(18));
        assert_eq!(parse_major("nonsense"), None);
    }

    #[test]
    fn explicit_dir_without_postgres_is_named() {
        let err = find(15, Some(Path::new("/nonexistent/bin"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bin"), "{err}");
    }
}
