//! `walship check`: is this cluster archiving into this repository, end to end?
//!
//! Like `pgbackrest check`: reads the server's settings over an ordinary connection
//! (`archive_mode`, `archive_command` naming walship and this repository, `wal_level`,
//! `max_wal_senders`), checks that the repository is reachable and of this cluster, then
//! forces a WAL switch and waits (bounded) until the segment just completed is in the
//! repository. Each check says ok, or what is wrong and how to fix it. Whether the
//! repository is writable is proven by the caller writing its audit record.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Lsn;
use crate::pg::{ArchiveFileName, WalFileName, WalSegSize};
use crate::pgconn::{ConnParams, PgConnError, ReplicationClient};
use crate::repo::{Repository, layout};

/// One check and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    /// What was checked.
    pub name: String,
    /// Whether it is right.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty when ok).
    pub fix: String,
}

fn item(name: &str, ok: bool, detail: String, fix: &str) -> CheckItem {
    CheckItem {
        name: name.to_string(),
        ok,
        detail,
        fix: if ok { String::new() } else { fix.to_string() },
    }
}

/// What the check needs.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// How to connect.
    pub params: ConnParams,
    /// The repository URL, as configured here.
    pub repo_url: String,
    /// How long to wait for the switched segment.
    pub timeout: Duration,
}

/// Runs every check; an error is a connection that could not be made or a query that
/// failed, naming the server.
pub async fn run(repo: &Repository, request: &CheckRequest) -> Result<Vec<CheckItem>, PgConnError> {
    let mut client = ReplicationClient::connect_sql(&request.params).await?;
    let mut show = async |name: &str| -> Result<String, PgConnError> {
        let sets = client
            .simple_query(&format!("select current_setting('{name}')"))
            .await?;
        Ok(sets
            .first()
            .and_then(|s| s.text(0, 0))
            .unwrap_or_default()
            .to_string())
    };
    let mut items = Vec::new();
    let archive_mode = show("archive_mode").await?;
    items.push(item(
        "archive_mode",
        archive_mode == "on" || archive_mode == "always",
        format!("archive_mode = {archive_mode}"),
        "set archive_mode = on in postgresql.conf and restart Postgres",
    ));
    let archive_command = show("archive_command").await?;
    let (ok, detail) = names_this_repo(&archive_command, &request.repo_url);
    items.push(item(
        "archive_command",
        ok,
        detail,
        &format!(
            "set archive_command = 'walship --repo {} archive %p' (or --config FILE naming it) and reload",
            request.repo_url
        ),
    ));
    let wal_level = show("wal_level").await?;
    items.push(item(
        "wal_level",
        wal_level == "replica" || wal_level == "logical",
        format!("wal_level = {wal_level}"),
        "set wal_level = replica and restart Postgres",
    ));
    let senders: u32 = show("max_wal_senders").await?.parse().unwrap_or(0);
    items.push(item(
        "max_wal_senders",
        senders >= 2,
        format!("max_wal_senders = {senders}"),
        "set max_wal_senders to at least 2 (walship backup and walship stream each use one) and restart",
    ));
    let sysid = client
        .simple_query("select system_identifier::text from pg_control_system()")
        .await?
        .first()
        .and_then(|s| s.text(0, 0))
        .and_then(|t| t.parse::<u64>().ok());
    let identity = match repo.identity().await {
        Ok(identity) => {
            items.push(item(
                "repository reachable",
                true,
                format!("{} answers", repo.location()),
                "",
            ));
            identity
        }
        Err(e) => {
            items.push(item(
                "repository reachable",
                false,
                e.to_string(),
                "check the repository URL, credentials and network",
            ));
            return Ok(items);
        }
    };
    match (&identity, sysid) {
        (Some(id), Some(sysid)) => items.push(item(
            "repository of this cluster",
            id.system_identifier == sysid,
            format!(
                "repository system identifier {}, server {sysid}",
                id.system_identifier
            ),
            "this repository belongs to another cluster: give this cluster its own repository",
        )),
        (None, _) => items.push(item(
            "repository of this cluster",
            true,
            "the repository is not initialised yet; the first archived segment initialises it"
                .to_string(),
            "",
        )),
        (Some(_), None) => items.push(item(
            "repository of this cluster",
            false,
            "the server did not report its system identifier".to_string(),
            "connect as a role that may read pg_control_system()",
        )),
    }
    items.push(switch_and_wait(&mut client, repo, request.timeout).await?);
    Ok(items)
}

/// Whether `command` runs `walship ... archive` for `repo_url`: the URL itself, or a
/// `--config FILE` whose `repo` is that URL.
fn names_this_repo(command: &str, repo_url: &str) -> (bool, String) {
    let shown = format!("archive_command = '{command}'");
    if !command.contains("walship") || !command.contains("archive") {
        return (false, format!("{shown} does not run walship archive"));
    }
    let trimmed = repo_url.trim_end_matches('/');
    // The URL as a whole word: `s3://b/p` must not match `s3://b/p2`.
    let whole = command.match_indices(trimmed).any(|(at, _)| {
        let next = command[at + trimmed.len()..].chars().next();
        next.is_none_or(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '/'))
    });
    if whole {
        return (true, shown);
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let file = match w.strip_prefix("--config=") {
            Some(f) => Some(f),
            None if *w == "--config" => words.get(i + 1).copied(),
            None => None,
        };
        if let Some(file) = file.map(|f| f.trim_matches(|c| c == '\'' || c == '"')) {
            let repo = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .and_then(|t| t.get("repo").and_then(|r| r.as_str()).map(str::to_string));
            return match repo {
                Some(r) if r.trim_end_matches('/') == trimmed => (
                    true,
                    format!("{shown} (its --config {file} names this repository)"),
                ),
                Some(r) => (
                    false,
                    format!("{shown}: its --config {file} names {r}, not {repo_url}"),
                ),
                None => (
                    false,
                    format!("{shown}: cannot read repo from its --config {file}"),
                ),
            };
        }
    }
    (
        false,
        format!("{shown} names neither {repo_url} nor a --config file naming it"),
    )
}

/// `pg_switch_wal()`, then wait until the segment it completed is in the repository.
async fn switch_and_wait(
    client: &mut ReplicationClient,
    repo: &Repository,
    timeout: Duration,
) -> Result<CheckItem, PgConnError> {
    let name = "WAL switch archived";
    let first = |sets: Vec<crate::pgconn::ResultSet>| {
        sets.first()
            .and_then(|s| s.text(0, 0))
            .unwrap_or_default()
            .to_string()
    };
    // A record first, so that the switch completes a segment archived by this check, not
    // one archived long ago (with no WAL since the last switch, pg_switch_wal does nothing).
    // It fails where archiving cannot work anyway (wal_level minimal): that is named above.
    let _ = client
        .simple_query("select pg_create_restore_point('walship check')")
        .await;
    let switched: Option<Lsn> = first(client.simple_query("select pg_switch_wal()::text").await?)
        .parse()
        .ok();
    let seg_size: Option<u64> = first(
        client
            .simple_query("select setting from pg_settings where name = 'wal_segment_size'")
            .await?,
    )
    .parse()
    .ok();
    let timeline: Option<u32> = first(
        client
            .simple_query("select timeline_id::text from pg_control_checkpoint()")
            .await?,
    )
    .parse()
    .ok();
    let (Some(switched), Some(seg_size), Some(timeline)) = (switched, seg_size, timeline) else {
        return Ok(item(
            name,
            false,
            "the server did not report the switch".into(),
            "",
        ));
    };
    // wal_segment_size is in bytes on 11+ (the unit is B), but older units were 8 kB pages.
    let seg_size = if seg_size < 8192 {
        seg_size * 8192
    } else {
        seg_size
    };
    let Ok(size) = WalSegSize::new(seg_size) else {
        return Ok(item(
            name,
            false,
            format!("odd wal_segment_size {seg_size}"),
            "",
        ));
    };
    // The byte before the switch point is in the segment just completed.
    let last = Lsn(switched.0.saturating_sub(1));
    let Ok(segment) = WalFileName::new(crate::pg::TimelineId(timeline), last.segno(size), size)
    else {
        return Ok(item(
            name,
            false,
            format!("timeline {timeline} is not valid"),
            "",
        ));
    };
    let key = layout::wal_key(&ArchiveFileName::Segment(segment));
    let started = Instant::now();
    loop {
        if let Ok(true) = repo.exists(&key).await {
            return Ok(item(
                name,
                true,
                format!(
                    "{segment} reached the repository in {:.1} s",
                    started.elapsed().as_secs_f64()
                ),
                "",
            ));
        }
        if started.elapsed() >= timeout {
            let failed = first(
                client
                    .simple_query(
                        "select coalesce(last_failed_wal, '') || ' at ' || coalesce(last_failed_time::text, '') from pg_stat_archiver where failed_count > 0",
                    )
                    .await?,
            );
            let why = if failed.is_empty() {
                String::new()
            } else {
                format!("; the archiver last failed on {failed} (see the server log)")
            };
            return Ok(item(
                name,
                false,
                format!(
                    "{segment} was not in the repository after {} s{why}",
                    timeout.as_secs()
                ),
                "look at the Postgres log for archive_command's errors",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::names_this_repo;

    #[test]
    fn archive_command_must_name_this_repository_as_a_whole() {
        let cmd = "walship --repo s3://b/p archive %p";
        assert!(names_this_repo(cmd, "s3://b/p").0);
        assert!(names_this_repo(cmd, "s3://b/p/").0);
        assert!(!names_this_repo("walship --repo s3://b/p2 archive %p", "s3://b/p").0);
        assert!(!names_this_repo("cp %p /archive/%f", "s3://b/p").0);
        let detail = names_this_repo("walship --config /nonexistent.toml archive %p", "s3://b/p").1;
        assert!(detail.contains("cannot read repo"), "{detail}");
    }
}
