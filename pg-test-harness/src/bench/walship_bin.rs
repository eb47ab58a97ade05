//! The `walship` binary the benches run, and the repositories they point it at.
//!
//! The benches run the real binary as a child process, as the cluster's OS user, exactly as
//! Postgres runs `archive_command` / `restore_command`. [`walship_binary`] takes `--walship PATH`
//! when given; otherwise it builds `walship` in the bench's own profile (like the demo) and
//! uses the binary beside the bench's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::S3Server;

/// The walship binary: `explicit` when given, else built beside the running executable.
pub fn walship_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        // Absolute: the children run in another working directory.
        return std::fs::canonicalize(path)
            .with_context(|| format!("--walship {}", path.display()));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the bench binary has no directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "walship"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().context("run cargo build -p walship")?;
    if !status.success() {
        bail!("cargo build -p walship failed");
    }
    Ok(dir.join("walship"))
}

/// A repository for walship: its URL, the config file naming it, and the environment every
/// call needs.
#[derive(Debug)]
pub struct WalshipRepo {
    /// `file:///...` or `s3://bucket/prefix`.
    pub url: String,
    /// The config file (`repo`, and `[s3]` for S3).
    pub config: PathBuf,
    env: Vec<(String, String)>,
}

impl WalshipRepo {
    /// A filesystem repository in `<dir>/<name>` (created, given to the cluster user), with
    /// its config file beside it.
    pub fn local(dir: &Path, name: &str) -> Result<WalshipRepo> {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
        crate::chown_to_owner_recursive(&root)?;
        let url = format!("file://{}", root.display());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, format!("repo = \"{url}\"\n"))?;
        // No environment: a filesystem repository never reads AWS settings, and Postgres's
        // command line is then exactly what a user writes.
        Ok(WalshipRepo {
            url,
            config,
            env: Vec::new(),
        })
    }

    /// A repository under `prefix` in the bucket of `s3`, config file in `dir`.
    pub fn s3(dir: &Path, s3: &S3Server, prefix: &str) -> Result<WalshipRepo> {
        let url = format!("s3://{}/{prefix}", s3.bucket);
        let config = dir.join(format!("{prefix}.toml"));
        let mut text = format!("repo = \"{url}\"\n[s3]\nregion = \"{}\"\n", s3.region);
        match s3.ca_file() {
            // Over TLS like a real S3, trusting the server's private CA (copied where the
            // cluster user, who runs archive_command, can read it).
            Some(ca) => {
                let copy = dir.join(format!("{prefix}-ca.pem"));
                std::fs::copy(&ca, &copy)?;
                crate::chown_to_owner_recursive(&copy)?;
                text.push_str(&format!(
                    "endpoint = \"{}\"\nca_file = \"{}\"\n",
                    s3.https_endpoint(),
                    copy.display()
                ));
            }
            None => text.push_str(&format!("endpoint = \"{}\"\n", s3.endpoint)),
        }
        std::fs::write(&config, text)?;
        let mut env = no_aws_files();
        env.extend(s3.env());
        if s3.ca_file().is_some() {
            for (name, value) in &mut env {
                if name == "AWS_ENDPOINT_URL" {
                    *value = s3.https_endpoint();
                }
            }
        }
        Ok(WalshipRepo { url, config, env })
    }

    /// Makes this (new, empty) repository encrypted: `walship key init` creates a key file
    /// beside the config (given to the cluster user, who runs archive and fetch) and the
    /// config names it (`[encryption] key_file`).
    pub fn encrypt(&self, walship: &Path) -> Result<()> {
        let key_file = self.config.with_extension("keys");
        let out = Command::new(walship)
            .args(["key", "init", "--key-file"])
            .arg(&key_file)
            .output()
            .context("run walship key init")?;
        if !out.status.success() {
            bail!("walship key init: {}", String::from_utf8_lossy(&out.stderr));
        }
        crate::chown_to_owner_recursive(&key_file)?;
        let mut text = std::fs::read_to_string(&self.config)?;
        text.push_str(&format!(
            "[encryption]\nkey_file = \"{}\"\n",
            key_file.display()
        ));
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    /// The root directory of a filesystem repository; None on S3.
    pub fn local_root(&self) -> Option<&Path> {
        self.url.strip_prefix("file://").map(Path::new)
    }

    /// `walship --config <cfg> <args>`, run as the cluster user with this repository's
    /// environment.
    pub fn command(&self, walship: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(walship);
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        crate::os_user::run_as_cluster_owner(&mut cmd);
        cmd
    }

    /// A shell command line for Postgres (`archive_command`, `restore_command`):
    /// `[env K=V...] walship --config <cfg> <args>` (`env` only when there is environment to
    /// give, that is for S3).
    pub fn shell_command(&self, walship: &Path, args: &str) -> String {
        let env: String = self.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let env = if env.is_empty() {
            env
        } else {
            format!("env {env}")
        };
        format!(
            "{env}{} --config {} {args}",
            walship.display(),
            self.config.display()
        )
    }

    /// Writes an executable script at `path` that runs `walship` with this repository's
    /// environment (S3 credentials): the `--walship-path` of a restore, so that the
    /// `restore_command` it writes works for a server started without that environment.
    pub fn wrapper_script(&self, walship: &Path, path: &Path) -> Result<PathBuf> {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}='{v}'")).collect();
        let text = format!(
            "#!/bin/sh\nexec env {} '{}' \"$@\"\n",
            env.join(" "),
            walship.display()
        );
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(path, mode)?;
        Ok(path.to_path_buf())
    }
}

/// No AWS profile files and no instance metadata: only the credentials the bench gives.
fn no_aws_files() -> Vec<(String, String)> {
    vec![
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("AWS_CONFIG_FILE".to_owned(), "/dev/null".to_owned()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_owned(),
            "/dev/null".to_owned(),
        ),
    ]
}

/// Total size in bytes of the regular files under `dir`.
pub fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Parses `--name value` pairs and bare `--flag`s of a bench's arguments.
#[derive(Debug, Default)]
pub struct BenchArgs {
    /// `--segments N`.
    pub segments: Option<usize>,
    /// `--walship PATH`.
    pub walship: Option<PathBuf>,
    /// `--rounds N`.
    pub rounds: Option<usize>,
    /// `--no-s3`.
    pub no_s3: bool,
    /// `--keep`: leave the bench's scratch directory (repositories, base copy, segments) in
    /// place and print where, to repeat a measurement by hand.
    pub keep: bool,
    /// `--scale N` (pgbench scale of the backup and restore benches).
    pub scale: Option<usize>,
    /// `--encrypt`: also measure walship with client-side encryption (and pgBackRest with
    /// `repo-cipher-type=aes-256-cbc` where it is the peer), in the same run.
    pub encrypt: bool,
    /// `--incremental`: `bench backup` measures an incremental backup (PostgreSQL 17+)
    /// against its full, and the chain's restore against a full's.
    pub incremental: bool,
}

/// A SeaweedFS server for a bench's S3 series, or none with `--no-s3`.
pub fn s3_unless(no_s3: bool) -> Result<Option<S3Server>> {
    if no_s3 {
        Ok(None)
    } else {
        Ok(Some(S3Server::start()?))
    }
}

/// [`s3_unless`] serving HTTPS with a private CA ([`S3Server::start_https`]): for the benches
/// that compare walship with pgBackRest on SeaweedFS, since pgBackRest speaks S3 only over
/// TLS; walship's repositories on it then use TLS too, so both pay the same.
pub fn s3_https_unless(no_s3: bool) -> Result<Option<S3Server>> {
    if no_s3 {
        Ok(None)
    } else {
        Ok(Some(S3Server::start_https()?))
    }
}

impl BenchArgs {
    /// Parses `args`; unknown options are errors naming them.
    pub fn parse(args: &[String]) -> Result<BenchArgs> {
        let mut out = BenchArgs::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .with_context(|| format!("{arg} needs a value"))
                    .cloned()
            };
            match arg.as_str() {
                "--segments" => out.segments = Some(parse_count(arg, &value()?)?),
                "--rounds" => out.rounds = Some(parse_count(arg, &value()?)?),
                "--scale" => out.scale = Some(parse_count(arg, &value()?)?),
                "--walship" => out.walship = Some(PathBuf::from(value()?)),
                "--no-s3" => out.no_s3 = true,
                "--keep" => out.keep = true,
                "--encrypt" => out.encrypt = true,
                "--incremental" => out.incremental = true,
                other => bail!(
                    "unknown argument {other:?} (known: --segments N, --rounds N, --scale N, --walship PATH, --no-s3, --keep, --encrypt, --incremental)"
                ),
            }
        }
        Ok(out)
    }
}

fn parse_count(flag: &str, value: &str) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} {value:?}: expected a positive number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_bench_arguments() {
        let a = BenchArgs::parse(&strings(&[
            "--segments",
            "4",
            "--no-s3",
            "--walship",
            "/x",
            "--scale",
            "3",
            "--encrypt",
            "--incremental",
        ]))
        .unwrap();
        assert!(a.encrypt && a.incremental);
        assert_eq!(a.segments, Some(4));
        assert_eq!(a.scale, Some(3));
        assert!(a.no_s3);
        assert_eq!(a.walship, Some(PathBuf::from("/x")));
        assert!(BenchArgs::parse(&strings(&["--segments", "0"])).is_err());
        assert!(BenchArgs::parse(&strings(&["--segments"])).is_err());
        let err = BenchArgs::parse(&strings(&["--bogus"])).unwrap_err();
        assert!(err.to_string().contains("--bogus"));
    }
}
