//! SQL on a running [`Cluster`] through the synchronous `postgres` crate over TCP.
//!
//! Every helper opens its own connection as the superuser, so tests need no client plumbing.
//! Errors panic naming the SQL, the Postgres error and the server log.

use std::time::Duration;

use postgres::{Client, NoTls, SimpleQueryMessage};

use super::Cluster;

impl Cluster {
    /// Reloads postgresql.conf, pg_hba.conf and pg_ident.conf, and returns once the
    /// postmaster has applied them, so that every connection made afterwards sees them: it
    /// waits until a new backend reports a newer `pg_conf_load_time()`. A backend inherits
    /// that time from the postmaster, which handles SIGHUP whole (settings, then pg_hba.conf
    /// and pg_ident.conf) before it forks another backend. A poll, not a sleep: fast when the
    /// machine is idle, still right when it is busy. Panics after 30 s.
    pub fn reload(&self) {
        let loaded = "select pg_conf_load_time()::text";
        let before = self.query_string(loaded);
        self.execute("select pg_reload_conf()");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.query_string(loaded) == before {
            if std::time::Instant::now() > deadline {
                self.fail("the configuration was not reloaded within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A new connection as the superuser `postgres`. Panics with the server log on failure.
    pub fn client(&self) -> Client {
        let mut config: postgres::Config = self
            .connstr()
            .parse()
            .unwrap_or_else(|e| panic!("parsing connstr {}: {e}", self.connstr()));
        config.connect_timeout(Duration::from_secs(30));
        match config.connect(NoTls) {
            Ok(client) => client,
            Err(e) => self.fail(&format!(
                "connecting to {}: {}",
                self.connstr(),
                pg_error(&e)
            )),
        }
    }

    /// Runs `sql` (one or more statements) with the simple query protocol; panics naming the
    /// SQL and the error.
    pub fn execute(&self, sql: &str) {
        if let Err(e) = self.client().batch_execute(sql) {
            self.fail(&format!("executing `{sql}`: {}", pg_error(&e)));
        }
    }

    /// The first column of the first row, as text. Panics when there is no row or it is NULL.
    pub fn query_string(&self, sql: &str) -> String {
        let rows = self.query_rows(sql);
        match rows.first().and_then(|row| row.first()) {
            Some(Some(value)) => value.clone(),
            Some(None) => self.fail(&format!("`{sql}` returned NULL")),
            None => self.fail(&format!("`{sql}` returned no rows")),
        }
    }

    /// Every row of every statement in `sql`, each column as text (None for NULL).
    pub fn query_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let messages = match self.client().simple_query(sql) {
            Ok(m) => m,
            Err(e) => self.fail(&format!("querying `{sql}`: {}", pg_error(&e))),
        };
        messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}

/// A Postgres error with severity, message, detail and hint when the server sent them.
fn pg_error(e: &postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("{e} ({e:?})");
    };
    let mut s = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(detail) = db.detail() {
        s.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        s.push_str(&format!("\nHINT: {hint}"));
    }
    s
}
