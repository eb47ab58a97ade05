//! Benchmark skeleton behind the `bench` binary: a registry of named benches, the comparison
//! table, child-process measurement and peer-tool discovery.
//!
//! `bench <name> [args]` runs one bench; an unknown or missing name lists the available ones and
//! exits 2. Each bench runs walship and, when installed, a peer tool (pgbackrest, pg_basebackup,
//! barman-cloud) on the same work and prints a [`BenchTable`]. New benches add one entry to
//! [`BENCHES`].

pub mod archive;
pub mod backup;
pub mod backup_db;
pub mod copy;
mod decode_beside;
pub mod expire;
pub mod fetch;
pub mod incremental;
mod measure;
mod peers;
mod pgbackrest;
pub mod plan;
pub mod restore;
pub mod stats;
mod steal;
pub mod stream;
mod table;
pub mod verify;
pub mod wal_load;
pub mod walship_bin;

pub use measure::{Measurement, measure};
pub use peers::{PEER_TOOLS, PeerTool, find_peer};
pub use table::{BenchRow, BenchTable, format_value, met};

use std::process::ExitCode;

/// A named benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Bench {
    /// Name on the command line.
    pub name: &'static str,
    /// One line for the list of benches.
    pub about: &'static str,
    /// Runs the bench with the remaining arguments.
    pub run: fn(&[String]) -> anyhow::Result<()>,
}

/// Every bench the binary knows.
pub const BENCHES: &[Bench] = &[
    Bench {
        name: "peers",
        about: "list which peer tools (pgbackrest, pg_basebackup, barman-cloud) are installed",
        run: peers::run,
    },
    Bench {
        name: "archive",
        about: "push real segments through walship archive (sync, --async; file, S3) and pgbackrest archive-push [--segments N] [--no-s3]",
        run: archive::run,
    },
    Bench {
        name: "fetch",
        about: "replay segments through walship fetch vs the same recovery from pg_wal, crash recovery and cp [--segments N] [--rounds N] [--keep]",
        run: fetch::run,
    },
    Bench {
        name: "backup",
        about: "walship backup (file, S3) vs pg_basebackup -Ft client-lz4 and pgbackrest backup --type=full of a pgbench database [--scale N] [--no-s3]; with --incremental (PG17+): an incremental after 2% of rows changed vs its full, and the chain's restore vs a full's [--scale N] [--rounds N]",
        run: backup::run,
    },
    Bench {
        name: "restore",
        about: "walship restore (file, S3) vs pgbackrest restore of that database, each started and checked, fastest of N rounds [--scale N] [--rounds N] [--no-s3]",
        run: restore::run,
    },
    Bench {
        name: "plan",
        about: "walship restore --dry-run against an archive of 500+ (1 MiB) segments, file and S3 [--segments N] [--no-s3]",
        run: plan::run,
    },
    Bench {
        name: "copy",
        about: "walship copy between two SeaweedFS servers: MB/s of stored bytes, peak RSS [--segments N]",
        run: copy::run,
    },
    Bench {
        name: "stream",
        about: "walship stream under pgbench: repository lag, --synchronous vs pg_receivewal, RSS [--seconds N] [--clients N] [--no-s3]",
        run: stream::run,
    },
    Bench {
        name: "expire",
        about: "walship expire removing 100,000 expired segments from SeaweedFS (aim: under 60 s) [--segments N]",
        run: expire::run,
    },
    Bench {
        name: "verify",
        about: "walship verify (file, S3) vs pgbackrest verify of a full backup of a pgbench database plus 64 segments [--scale N] [--segments N] [--no-s3]",
        run: verify::run,
    },
];

/// The list of benches, for usage messages.
pub fn usage() -> String {
    let mut s = String::from("usage: bench <name> [args]\n\nbenches:\n");
    for b in BENCHES {
        s.push_str(&format!("  {:<10} {}\n", b.name, b.about));
    }
    s
}

/// Entry point of the `bench` binary; `args` excludes the program name.
pub fn main(args: &[String]) -> ExitCode {
    let Some(name) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    if name == "-h" || name == "--help" || name == "help" {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let Some(bench) = BENCHES.iter().find(|b| b.name == name) else {
        eprintln!("bench: unknown bench '{name}'\n");
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    match (bench.run)(&args[1..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench {name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
