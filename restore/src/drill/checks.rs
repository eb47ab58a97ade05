//! The checks a drill runs on the restored server once it accepts writes: replay reached
//! the planned LSN (always), `--check-sql FILE` (each statement returns one row whose first
//! column is true), `--amcheck` (every valid btree index of every database that accepts
//! connections, with `bt_index_check`).

use serde::{Deserialize, Serialize};
use tokio_postgres::SimpleQueryMessage;
use walship_common::Lsn;

use super::server::{DrillServer, first_value};

/// One check and its outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found (the failure, or a figure).
    pub detail: String,
}

impl CheckResult {
    fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> CheckResult {
        CheckResult {
            name: name.into(),
            passed,
            detail: detail.into(),
        }
    }
}

/// What recovery replayed, as the server says.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    /// `pg_last_wal_replay_lsn()`: the end of the last record replayed.
    pub lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()`, seconds since the epoch (fractional).
    pub last_xact_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// Reads what recovery replayed (both values stay set after recovery has ended).
pub async fn replayed(server: &DrillServer) -> Result<Replayed, tokio_postgres::Error> {
    let client = server.connect("postgres").await?;
    let rows = client
        .simple_query(
            "select pg_last_wal_replay_lsn()::text, \
             extract(epoch from pg_last_xact_replay_timestamp())::text",
        )
        .await?;
    let row = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    let lsn = row.and_then(|r| r.get(0)).and_then(|t| t.parse().ok());
    let last_xact_time = row
        .and_then(|r| r.get(1))
        .and_then(|t| t.parse::<f64>().ok())
        .and_then(|secs| {
            chrono::DateTime::from_timestamp_micros((secs * 1_000_000.0).round() as i64)
        });
    Ok(Replayed {
        lsn,
        last_xact_time,
    })
}

/// The always-run check: replay reached `planned` (the record recovery had to apply).
pub fn replay_reached(replayed: &Replayed, planned: Lsn) -> CheckResult {
    let name = "replay reached the planned LSN";
    match replayed.lsn {
        Some(lsn) if lsn >= planned => {
            CheckResult::new(name, true, format!("replayed to {lsn}, planned {planned}"))
        }
        Some(lsn) => CheckResult::new(
            name,
            false,
            format!("replay stopped at {lsn}, before the planned {planned}"),
        ),
        None => CheckResult::new(
            name,
            false,
            "the server reports no replayed WAL (pg_last_wal_replay_lsn is null)",
        ),
    }
}

/// Runs the statements of a `--check-sql` file (`label` names it): each must return exactly
/// one row whose first column is true.
pub async fn check_sql(server: &DrillServer, label: &str, sql: &str) -> Vec<CheckResult> {
    let client = match server.connect("postgres").await {
        Ok(c) => c,
        Err(e) => return vec![CheckResult::new(label, false, format!("connect: {e}"))],
    };
    let messages = match client.simple_query(sql).await {
        Ok(m) => m,
        Err(e) => return vec![CheckResult::new(label, false, e.to_string())],
    };
    let mut results = Vec::new();
    let mut rows: Vec<Option<String>> = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(row.get(0).map(str::to_string)),
            SimpleQueryMessage::CommandComplete(_) => {
                let n = results.len() + 1;
                let name = format!("{label}: statement {n}");
                let verdict = match rows.as_slice() {
                    [Some(v)] if v == "t" => CheckResult::new(name, true, "true"),
                    [value] => CheckResult::new(
                        name,
                        false,
                        format!("returned {}", value.as_deref().unwrap_or("NULL")),
                    ),
                    _ => CheckResult::new(
                        name,
                        false,
                        format!("returned {} rows, not one", rows.len()),
                    ),
                };
                results.push(verdict);
                rows.clear();
            }
            _ => {}
        }
    }
    if results.is_empty() {
        results.push(CheckResult::new(label, false, "holds no statement"));
    }
    results
}

/// `bt_index_check` on every valid btree index of every database accepting connections.
pub async fn amcheck(server: &DrillServer) -> Vec<CheckResult> {
    let mut results = Vec::new();
    let databases = match server.connect("postgres").await {
        Ok(client) => match client
            .simple_query("select datname from pg_database where datallowconn order by 1")
            .await
        {
            Ok(rows) => rows
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) => return vec![CheckResult::new("amcheck", false, e.to_string())],
        },
        Err(e) => return vec![CheckResult::new("amcheck", false, format!("connect: {e}"))],
    };
    for db in databases {
        let name = format!("amcheck: database {db}");
        let outcome = async {
            let client = server.connect(&db).await?;
            client
                .simple_query("create extension if not exists amcheck")
                .await?;
            let rows = client
                .simple_query(
                    "select count(bt_index_check(c.oid)) from pg_index i \
                     join pg_class c on c.oid = i.indexrelid \
                     join pg_am a on a.oid = c.relam \
                     where a.amname = 'btree' and i.indisvalid and i.indisready \
                     and c.relpersistence <> 't'",
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(first_value(&rows).unwrap_or_default())
        }
        .await;
        results.push(match outcome {
            Ok(count) => CheckResult::new(name, true, format!("{count} btree indexes checked")),
            Err(e) => CheckResult::new(name, false, describe(&e)),
        });
    }
    results
}

/// A query error with the server's message.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}
