//! `bench backup --incremental`: a block-level incremental backup (PostgreSQL 17+) of a
//! pgbench database (scale 200, about 3 GiB, by default) against the full it builds on, and
//! the restore of that chain against the restore of a full taken at the same moment, in one
//! run on one database (a filesystem repository; no peer: pgBackRest and pg_basebackup are
//! compared in `bench backup` and `bench restore`).
//!
//! The run: `walship backup` (the full), then 2% of `pgbench_accounts` updated (the rows
//! with the lowest `aid`, one contiguous range: changes that cluster, as in a table where
//! recent rows change; updates spread over every page would make the incremental as big as
//! the full, since Postgres sends a changed block whole), then `walship backup
//! --incremental`, then at once a second full (nothing changes in between). Both restores
//! (`--backup ID --target immediate`) are started and checked by Postgres (the primary's
//! pgbench rows and balances), `--rounds` times, tools taking turns, fastest kept.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::backup::add_rows;
use super::backup_db::{AIM_RSS_MIB, BenchDb, DbSetup, Run, recoveries_and_load};
use super::fetch::PGBENCH_CHECK;
use super::restore::{keep_fastest, walship_restore_with};
use super::{BenchTable, met};
use crate::{PgInstall, StopMode};

/// The aims: the incremental at most 0.2 times the full's time and 0.1 times its
/// stored bytes; the chain restored in at most 1.2 times the full's restore time.
const AIM_TIME_RATIO: f64 = 0.2;
const AIM_BYTES_RATIO: f64 = 0.1;
const AIM_RESTORE_RATIO: f64 = 1.2;
/// The share of `pgbench_accounts` rows updated after the full.
const UPDATED_PERCENT: u64 = 2;

/// What `bench backup --incremental` measured.
#[derive(Debug)]
pub struct IncrementalReport {
    /// pgbench scale.
    pub scale: usize,
    /// The PostgreSQL major the database ran on.
    pub major: u32,
    /// Bytes of the data directory without `pg_wal`.
    pub data_bytes: u64,
    /// Rows of `pgbench_accounts` updated after the full.
    pub updated_rows: u64,
    /// The full backup the incremental builds on.
    pub full: Run,
    /// The incremental backup.
    pub incremental: Run,
    /// The full taken right after the incremental.
    pub full_after: Run,
    /// `walship restore` of the chain (full + incremental), fastest round.
    pub chain_restore: Run,
    /// `walship restore` of the full taken at the same moment, fastest round.
    pub full_restore: Run,
    /// Rounds each restore ran.
    pub rounds: usize,
    /// Postgres's recovery of each restored directory.
    pub recoveries: Vec<(String, Duration)>,
    /// 1-minute load averages sampled along the run.
    pub load: Vec<f64>,
}

/// The install incrementals run on: 17 when installed, else the newest at 17 or later.
fn incremental_install() -> Result<PgInstall> {
    let installs = crate::installs();
    installs
        .iter()
        .find(|i| i.major == 17)
        .or_else(|| installs.iter().rev().find(|i| i.major >= 17))
        .cloned()
        .context("bench backup --incremental needs PostgreSQL 17 or later, and none is installed")
}

/// Builds the database at `scale` on 17+, takes the full, updates 2% of the accounts, takes
/// the incremental and a second full, and restores the chain and the second full `rounds`
/// times each.
pub fn run_incremental(
    scale: usize,
    rounds: usize,
    walship: Option<&Path>,
) -> Result<IncrementalReport> {
    let setup = DbSetup {
        install: incremental_install()?,
        settings: vec![("summarize_wal", "on")],
        peers: false,
    };
    let mut db = BenchDb::create_with(setup, scale, None, walship, false)?;
    // WAL summaries cover what follows the checkpoint after summarizing began.
    db.cluster.execute("checkpoint");
    let (full, full_json) = db.walship_backup_with(&db.file_repo, "full", &[])?;
    db.sample_load();

    let accounts: u64 = db
        .cluster
        .query_string("select count(*) from pgbench_accounts")
        .parse()
        .context("count pgbench_accounts")?;
    let updated_rows = accounts * UPDATED_PERCENT / 100;
    eprintln!("bench: updating {updated_rows} of {accounts} accounts (aid 1 to {updated_rows})");
    db.cluster.execute(&format!(
        "update pgbench_accounts set abalance = abalance + 1 where aid <= {updated_rows}"
    ));
    db.expected = db.cluster.query_string(PGBENCH_CHECK);

    let (incremental, incr_json) =
        db.walship_backup_with(&db.file_repo, "incremental", &["--incremental"])?;
    if incr_json["parent"] != full_json["id"] {
        bail!("the incremental's parent is not the full: {incr_json}");
    }
    db.sample_load();
    let (full_after, after_json) = db.walship_backup_with(&db.file_repo, "full-after", &[])?;
    db.sample_load();
    db.archive_all()?;
    db.cluster.stop(StopMode::Fast);

    let incr_id = incr_json["id"].as_str().context("incremental id")?;
    let after_id = after_json["id"].as_str().context("full id")?;
    let mut recoveries = Vec::new();
    let (mut chain_restore, mut full_restore) = (None, None);
    for round in 1..=rounds.max(1) {
        eprintln!("bench: restore round {round} of {rounds}");
        // The order alternates: on this VM a restore into memory just freed by the one
        // before it runs faster than one into memory the host has reclaimed, so the same
        // restore always going second would always be favoured.
        let chain_first = round % 2 == 1;
        for chain in [chain_first, !chain_first] {
            if chain {
                let args = ["--backup", incr_id];
                let run =
                    walship_restore_with(&db, &db.file_repo, "chain", &args, &mut recoveries)?;
                keep_fastest(&mut chain_restore, run);
            } else {
                let args = ["--backup", after_id];
                let run = walship_restore_with(&db, &db.file_repo, "full", &args, &mut recoveries)?;
                keep_fastest(&mut full_restore, run);
            }
        }
        db.sample_load();
    }
    Ok(IncrementalReport {
        scale,
        major: db.install.major,
        data_bytes: db.data_bytes,
        updated_rows,
        full,
        incremental,
        full_after,
        chain_restore: chain_restore.context("no chain restore ran")?,
        full_restore: full_restore.context("no full restore ran")?,
        rounds: rounds.max(1),
        recoveries,
        load: db.load.clone(),
    })
}

impl IncrementalReport {
    /// The two tables (incremental vs full backup, chain vs full restore) and the verdicts.
    pub fn render(&self) -> String {
        let gib = self.data_bytes as f64 / (1u64 << 30) as f64;
        let what = format!(
            "pgbench scale {} ({gib:.2} GiB) on PostgreSQL {}, {}% of accounts ({} rows) updated after the full",
            self.scale, self.major, UPDATED_PERCENT, self.updated_rows
        );
        let mut backup =
            BenchTable::new(&format!("incremental backup vs its full: {what}"), "full");
        add_rows(
            &mut backup,
            "filesystem",
            &self.incremental,
            Some(&self.full),
            self.data_bytes,
        );
        let mut out = backup.render();
        out.push_str(&format!(
            "second full right after the incremental: {:.1} s, {:.1} MiB stored\n\n",
            self.full_after.run.wall.as_secs_f64(),
            self.full_after.stored_bytes as f64 / (1u64 << 20) as f64
        ));
        let mut restore = BenchTable::new(
            &format!(
                "restore of the chain (full + incremental) vs a full of the same moment: {what}"
            ),
            "full",
        );
        add_rows(
            &mut restore,
            "filesystem",
            &self.chain_restore,
            Some(&self.full_restore),
            self.data_bytes,
        );
        out.push_str(&restore.render().replace("stored MiB", "restored MiB"));
        out.push_str(&format!(
            "fastest of {} rounds for each restore (taking turns)\n",
            self.rounds
        ));
        out.push_str(&recoveries_and_load(&self.recoveries, &self.load));
        out.push_str(&self.verdicts());
        out
    }

    fn verdicts(&self) -> String {
        let wall = |r: &Run| r.run.wall.as_secs_f64();
        let time = wall(&self.incremental) / wall(&self.full);
        let bytes = self.incremental.stored_bytes as f64 / self.full.stored_bytes as f64;
        let restore = wall(&self.chain_restore) / wall(&self.full_restore);
        let rss = [&self.incremental, &self.chain_restore]
            .iter()
            .map(|r| r.run.peak_rss_mib())
            .fold(0.0, f64::max);
        format!(
            "aims:\n  \
             incremental backup time <= {AIM_TIME_RATIO}x the full's: {time:.2}x -> {}\n  \
             incremental stored bytes <= {AIM_BYTES_RATIO}x the full's: {bytes:.3}x -> {}\n  \
             chain restore time <= {AIM_RESTORE_RATIO}x a full's restore: {restore:.2}x -> {}\n  \
             peak RSS of walship backup --incremental and of the chain restore <= {AIM_RSS_MIB} MiB: {rss:.1} MiB -> {}\n",
            met(time <= AIM_TIME_RATIO),
            met(bytes <= AIM_BYTES_RATIO),
            met(restore <= AIM_RESTORE_RATIO),
            met(rss <= AIM_RSS_MIB),
        )
    }
}
