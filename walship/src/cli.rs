//! The command line: global options and one subcommand per user-facing command.
//!
//! Parsing only; each subcommand's work lives in `cmd/<name>.rs` over the libraries.

use clap::{Args, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// PostgreSQL WAL archiving and point-in-time recovery.
///
/// Postgres setup:
///   archive_command = 'walship archive %p'
///   restore_command = 'walship fetch %f %p'
///
/// The repository is `s3://bucket/prefix` or `file:///absolute/path`, set with --repo,
/// WALSHIP_REPO, or `repo = "..."` in the config file (/etc/walship/walship.toml by default).
#[derive(Debug, Parser)]
#[command(name = "walship", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line (program name first).
    pub fn parse_args(args: &[OsString]) -> Result<Cli, clap::Error> {
        match Cli::parse_fetch(args) {
            Some(cli) => Ok(cli),
            None => Cli::try_parse_from(args),
        }
    }

    /// `walship fetch`, parsed by a command line that holds only the global options and
    /// `fetch`'s own: Postgres runs `restore_command` once per segment, and building every
    /// command's arguments took about 0.5 ms of each call's ~2 ms of CPU (BENCHMARKS.md,
    /// "Replay through fetch: the calls themselves"). The same argument definitions and the
    /// same parser; `None` for anything else (another command, `--help`, `--version`, any
    /// error), which the whole command line then parses, explains or refuses.
    fn parse_fetch(args: &[OsString]) -> Option<Cli> {
        let fetch = crate::cmd::fetch::FetchArgs::augment_args(clap::Command::new("fetch"));
        let command = GlobalArgs::augment_args(clap::Command::new("walship"))
            .subcommand(fetch)
            .subcommand_required(true);
        let matches = command.try_get_matches_from(args).ok()?;
        let cli = Cli::from_arg_matches(&matches).ok()?;
        matches!(cli.command, Command::Fetch(_)).then_some(cli)
    }
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository URL: s3://bucket/prefix or file:///absolute/path [env: WALSHIP_REPO]
    #[arg(long, global = true, value_name = "URL")]
    pub repo: Option<String>,
    /// Configuration file [env: WALSHIP_CONFIG; default: /etc/walship/walship.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// fetch and restore: a repository to read when the ones before it are unreachable;
    /// repeatable, tried in order [config: fallback_repos; default: none]
    #[arg(long = "fallback-repo", global = true, value_name = "URL")]
    pub fallback_repo: Vec<String>,
    /// More log output (-v info, -vv debug, -vvv trace). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The walship commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive one WAL file (archive_command = 'walship archive %p').
    ///
    /// Checks the file's page headers against its name, compresses it, and stores it in the
    /// repository as one object written atomically (never a half-written file under its
    /// final name), exiting 0 only once the storage has confirmed the object's checksum. A
    /// file already archived with identical content is a success (Postgres may call twice);
    /// different content under the same name is refused. With --async, one call also pushes
    /// the next `.ready` files, so Postgres's later calls return at once.
    ///
    /// Exit codes (any non-zero code makes Postgres keep the file and call again):
    ///   0    stored durably with its checksum confirmed, or already archived identically
    ///   2    bad flags or arguments
    ///   3    failed (storage, configuration, an unreadable file)
    ///   4    refused: different content already archived, another cluster's repository,
    ///        or a file that is not the WAL its name says
    #[command(verbatim_doc_comment)]
    Archive(crate::cmd::archive::ArchiveArgs),
    /// Deliver one archived WAL file to Postgres (restore_command = 'walship fetch %f %p').
    ///
    /// The file is decoded, its crc32c and page headers verified, and written through a
    /// temporary file and a rename. While a segment is delivered, the next ones are fetched
    /// ahead into pg_wal/walship/fetch by a background worker.
    ///
    /// Exit codes (what Postgres needs to never end recovery early on a network error):
    ///   0    delivered
    ///   1    the repository definitively does not have the file
    ///   200  anything else: storage failing after retries, a corrupt or oversized object,
    ///        something other than a file under the key, a repository without a valid
    ///        walship.json, a destination that is not a regular file, a configuration or
    ///        command-line error: Postgres stops recovery
    ///
    /// A lone `<segment>.partial` is "absent" unless --allow-partial.
    #[command(verbatim_doc_comment)]
    Fetch(crate::cmd::fetch::FetchArgs),
    /// Stream WAL over the replication protocol into the repository (sidecar).
    ///
    /// Creates its physical slot if missing, starts where the slot and the repository say
    /// (never leaving a gap), stores every complete segment exactly as `walship archive`
    /// would (both may run against one repository), uploads the tail of the current segment
    /// as `<segment>.partial` every --partial-interval, and reports as `flush` only WAL that
    /// is durably in the repository. Follows timeline switches (the .history first) and
    /// reconnects with backoff. SIGTERM: stores and reports what was received, exits 0;
    /// while the storage fails it keeps trying for --stop-timeout (20 s), then exits 3; a
    /// second SIGTERM/SIGINT exits at once (130). WAL not stored was never reported to the
    /// server as flushed, so its slot keeps it for the next start.
    ///
    /// Exit codes:
    ///   0    stopped by SIGTERM/SIGINT after storing everything received
    ///   2    bad flags, connection string or --metrics-addr
    ///   3    the repository failed, or the connection cannot work (authentication,
    ///        unsupported server); lost connections are retried, not fatal; or the
    ///        storage kept failing for --stop-timeout after a signal
    ///   130  a second signal: stopped at once
    ///   4    refused: different content already archived, another cluster's repository,
    ///        or WAL the repository needs is gone from the server (a gap)
    #[command(verbatim_doc_comment)]
    Stream(crate::cmd::stream::StreamArgs),
    // Help text: the doc comment of the argument struct.
    Backup(crate::cmd::backup::BackupArgs),
    // Help text: the doc comment of the argument struct.
    List(crate::cmd::list::ListArgs),
    // Help text: the doc comment of the argument struct.
    Info(crate::cmd::info::InfoArgs),
    // Help text: the doc comment of the argument struct.
    Restore(crate::cmd::restore::RestoreArgs),
    // Help text: the doc comment of the argument struct.
    Drill(crate::cmd::drill::DrillArgs),
    // Help text: the doc comment of the argument struct.
    Audit(crate::cmd::audit::AuditArgs),
    // Help text: the doc comment of the argument struct.
    Status(crate::cmd::status::StatusArgs),
    // Help text: the doc comment of the argument struct.
    Exporter(crate::cmd::exporter::ExporterArgs),
    // Help text: the doc comment of the argument struct.
    Key(crate::cmd::key::KeyArgs),
    /// Verify every object in the repository, WAL continuity and freshness.
    ///
    /// Every object decodes and its checksums match; every backup's files are in its bundles
    /// at the stated offset, size and crc32c and agree with Postgres's backup_manifest; its WAL
    /// from start to stop is present; WAL is continuous on every timeline from the oldest
    /// backup on, or with a [retention] policy configured from the floor it keeps (older
    /// backups kept by a calendar rule or a pin need only their own WAL, so the gaps expire
    /// leaves between them are not problems); gaps are named as ranges; every timeline's
    /// .history and its parents' exist.
    /// Stale backups or WAL, incomplete backups and orphaned objects are warnings.
    ///
    /// Exit codes:
    ///   0    sound (warnings may be printed)
    ///   1    --backup names no backup
    ///   5    a problem was found (each is printed, or listed in --json)
    ///   200  the repository could not be read (storage failing, no walship.json)
    #[command(verbatim_doc_comment)]
    Verify(crate::cmd::verify::VerifyArgs),
    /// Remove backups and WAL no retention rule keeps ([retention] in the config).
    ///
    /// The policy: pitr_window (every moment of the last DURATION stays restorable, on every
    /// timeline), daily, weekly, monthly, yearly (the newest backup of each of the N most
    /// recent days, ISO weeks, months, years that have one), min_backups (the newest N are
    /// always kept; default 1), timezone (UTC, +HH:MM or a zone name). Pinned backups are
    /// always kept. Without a policy nothing is removed (exit 2).
    ///
    /// A backup is removed manifest first (it stops existing at once), then its bundles; WAL
    /// last, in batches. Objects the storage refuses to delete are reported and skipped. Safe
    /// to interrupt: the next run finishes the work.
    ///
    /// Exit codes: 0 done (refused objects are reported, not a failure), 2 no policy or bad
    /// flags, 3 the repository or storage failed.
    #[command(verbatim_doc_comment)]
    Expire(crate::cmd::expire::ExpireArgs),
    // Help text: the doc comment of the argument struct.
    Copy(crate::cmd::copy::CopyArgs),
    Pin(crate::cmd::pin::PinArgs),
    Unpin(crate::cmd::pin::UnpinArgs),
    // Help text: the doc comment of the argument struct.
    Check(crate::cmd::check::CheckArgs),
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::error::ErrorKind;
    use clap::{CommandFactory, Parser};
    use std::ffi::OsString;

    fn os_args(argv: &[&str]) -> Vec<OsString> {
        argv.iter().map(OsString::from).collect()
    }

    /// `walship fetch` parsed by the short command line (`Cli::parse_fetch`) is exactly what
    /// the whole one parses, in every form; everything else is left to the whole one.
    #[test]
    fn fetch_is_parsed_alike_by_the_short_and_the_whole_command_line() {
        let fetches: &[&[&str]] = &[
            &[
                "walship",
                "fetch",
                "000000010000000000000001",
                "pg_wal/RECOVERYXLOG",
            ],
            &[
                "walship",
                "--config",
                "/etc/w.toml",
                "fetch",
                "00000002.history",
                "x",
            ],
            &[
                "walship",
                "fetch",
                "--config=/etc/w.toml",
                "--repo",
                "file:///r",
                "a",
                "b",
            ],
            &[
                "walship",
                "-vv",
                "fetch",
                "--prefetch",
                "0",
                "--parallel",
                "4",
                "a",
                "b",
            ],
            &[
                "walship",
                "fetch",
                "--allow-partial",
                "--as-of",
                "2026-12-01T00:00:00Z",
                "a",
                "b",
            ],
            &[
                "walship",
                "--fallback-repo",
                "s3://x/y",
                "fetch",
                "--fallback-repo",
                "file:///z",
                "-q",
                "a",
                "b",
            ],
            &[
                "walship",
                "fetch",
                "--prefetch-worker",
                "--prefetch",
                "8",
                "--caller-pid",
                "4242",
                "a",
                "/spool",
            ],
            &["walship", "fetch", "--", "-a", "b"],
        ];
        for argv in fetches {
            let args = os_args(argv);
            let short = Cli::parse_fetch(&args)
                .unwrap_or_else(|| panic!("{argv:?} was not parsed by the short command line"));
            let whole = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{short:?}"), format!("{whole:?}"), "{argv:?}");
        }
        let others: &[&[&str]] = &[
            &["walship", "archive", "pg_wal/000000010000000000000001"],
            &["walship", "--version"],
            &["walship", "--help"],
            &["walship", "fetch", "--help"],
            &["walship", "fetch", "a"],
            &["walship", "fetch", "--prefetch", "many", "a", "b"],
            &["walship", "fetch", "-v", "-q", "a", "b"],
            &["walship", "fetch", "--bogus", "a", "b"],
            &["walship", "fetch", "a", "b", "c"],
            &["walship"],
        ];
        for argv in others {
            let args = os_args(argv);
            assert!(Cli::parse_fetch(&args).is_none(), "{argv:?}");
            // The whole command line gives its own verdict: a command, help, version or error.
            let whole = Cli::try_parse_from(&args).map(|cli| format!("{cli:?}"));
            let through = Cli::parse_args(&args).map(|cli| format!("{cli:?}"));
            match (whole, through) {
                (Ok(whole), Ok(through)) => assert_eq!(whole, through, "{argv:?}"),
                (Err(whole), Err(through)) => {
                    assert_eq!(whole.kind(), through.kind(), "{argv:?}");
                    assert_eq!(whole.to_string(), through.to_string(), "{argv:?}");
                }
                (whole, through) => panic!("{argv:?}: {whole:?} against {through:?}"),
            }
        }
    }

    /// What `walship <name> --help` prints.
    fn long_help(name: &str) -> String {
        match Cli::command().try_get_matches_from(["walship", name, "--help"]) {
            Err(e) if e.kind() == ErrorKind::DisplayHelp => e.render().to_string(),
            other => panic!("`walship {name} --help` did not print help: {other:?}"),
        }
    }

    /// Issue 19, item 9: one name per concept. A flag spelled the same in two commands
    /// (`--dbname`, `--parallel`, `--json`...) takes the same kind of value, shown under the
    /// same name, and is backed by the configuration in all of them or in none.
    #[test]
    fn a_flag_means_one_thing_in_every_command() {
        use std::collections::BTreeMap;
        let mut cli = Cli::command();
        cli.build();
        // long name -> (command, value names, config-backed)
        let mut seen: BTreeMap<String, (String, Vec<String>, bool)> = BTreeMap::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
                let Some(long) = arg.get_long() else { continue };
                let names: Vec<String> = arg
                    .get_value_names()
                    .unwrap_or_default()
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let backed = help.contains("[config:");
                let this = (sub.get_name().to_string(), names, backed);
                // DESIGN.md fixes both `restore --to DIR` and `copy --to URL`.
                if long == "to" {
                    continue;
                }
                if let Some(first) = seen.get(long) {
                    assert_eq!(
                        (&first.1, first.2),
                        (&this.1, this.2),
                        "--{long} differs between `walship {}` and `walship {}` \
                         (value name, config-backed)",
                        first.0,
                        this.0
                    );
                } else {
                    seen.insert(long.to_string(), this);
                }
            }
        }
        assert!(seen.contains_key("parallel") && seen.contains_key("dbname"));
    }

    /// Issue 19, item 8: the configuration's key table named ten flags walship did not
    /// have. Every flag it names exists, and (but for the global --repo) its help names the
    /// key, so that the error "invalid value for flag --x" points at a real flag.
    #[test]
    fn every_flag_the_configuration_names_exists() {
        let mut cli = Cli::command();
        cli.build();
        let mut flags = walship_common::config::key_flags().peekable();
        assert!(flags.peek().is_some());
        for (key, flag) in flags {
            let long = flag.trim_start_matches("--");
            let found = cli
                .get_subcommands()
                .flat_map(|sub| sub.get_arguments())
                .chain(cli.get_arguments())
                .filter(|arg| arg.get_long() == Some(long))
                .any(|arg| {
                    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                    key == "repo" || help.contains(&format!("[config: {key}"))
                });
            assert!(found, "no {flag} whose help says [config: {key}]");
        }
    }

    /// Issue 19, item 9: exit codes are documented in one place, README's table; a
    /// command's `--help` that lists its exit codes lists only codes the table gives that
    /// command.
    #[test]
    fn exit_codes_in_help_agree_with_the_readme_table() {
        let rows = crate::exit::readme_table();
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        let mut checked = 0;
        for name in names {
            let help = long_help(&name);
            let Some((_, codes)) = help.split_once("Exit codes") else {
                continue;
            };
            let codes = codes.split("Usage:").next().unwrap_or_default();
            for line in codes.lines() {
                let Some(code) = line
                    .strip_prefix("  ")
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|c| c.parse::<u8>().ok())
                else {
                    continue;
                };
                let row = rows.iter().find(|(c, _)| *c == code);
                let commands = &row
                    .unwrap_or_else(|| {
                        panic!("`walship {name} --help` lists exit code {code}, README does not")
                    })
                    .1;
                let named = commands.contains(&format!("`{name}`"));
                let all_but = commands.strip_prefix("all but ");
                assert!(
                    commands == "all" || all_but.map_or(named, |_| !named),
                    "`walship {name} --help` lists exit code {code}; README gives it to {commands}"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 10,
            "only {checked} exit codes found in the help texts"
        );
    }

    /// Issue 19, item 9: one duration syntax. Duration flags refuse what the same text in
    /// the configuration refuses (zero, a bare number).
    #[test]
    fn duration_flags_parse_like_the_configuration() {
        for argv in [
            ["walship", "backup", "--wal-timeout", "0s"],
            ["walship", "list", "--idle", "10"],
        ] {
            assert!(
                Cli::command().try_get_matches_from(argv).is_err(),
                "{argv:?}"
            );
        }
        let ok = Cli::command().try_get_matches_from(["walship", "list", "--idle", " 1h 30m"]);
        assert!(ok.is_ok(), "{ok:?}");
        // An age, not a timeout: zero means "now" (the documented way to remove every
        // incomplete backup when none is running).
        let zero = Cli::command().try_get_matches_from(["walship", "list", "--idle", "0s"]);
        assert!(zero.is_ok(), "{zero:?}");
    }

    /// Issue 19, item 7: a variant's one-line doc used to replace the argument struct's
    /// explanation, so `walship restore --help` said one line. Every subcommand's `--help`
    /// must explain it (more than the one-line summary) before the usage line.
    #[test]
    fn every_subcommand_help_explains_it_before_usage() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert!(names.len() >= 7, "subcommands: {names:?}");
        for name in names {
            let help = long_help(&name);
            let (before, _) = help
                .split_once("Usage:")
                .unwrap_or_else(|| panic!("`walship {name} --help` has no usage line:\n{help}"));
            let paragraphs = before
                .split("\n\n")
                .filter(|p| !p.trim().is_empty())
                .count();
            assert!(
                paragraphs >= 2,
                "`walship {name} --help` shows only its summary before the usage line:\n{help}"
            );
        }
    }
}
