//! Replication commands that answer with a result set: IDENTIFY_SYSTEM, SHOW,
//! TIMELINE_HISTORY, READ_REPLICATION_SLOT, CREATE_REPLICATION_SLOT and DROP_REPLICATION_SLOT,
//! each parsed into a typed answer.

use bytes::Bytes;

use super::client::ReplicationClient;
use super::error::PgConnError;
use super::query::ResultSet;
use crate::lsn::Lsn;
use crate::pg::timeline::TimelineId;

/// The answer to IDENTIFY_SYSTEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    /// The cluster's system identifier (`pg_control_system().system_identifier`).
    pub systemid: u64,
    /// The server's current timeline.
    pub timeline: TimelineId,
    /// The current WAL flush position (on a standby: replay position).
    pub xlogpos: Lsn,
    /// The database of a logical connection; `None` on a physical one.
    pub dbname: Option<String>,
}

/// A timeline history file as TIMELINE_HISTORY sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistoryFile {
    /// The file name, e.g. `00000002.history`.
    pub filename: String,
    /// The file's exact bytes (sent raw although the column is declared bytea).
    pub content: Bytes,
}

/// The answer to READ_REPLICATION_SLOT (PG15+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// `physical`; `None` when no slot of that name exists.
    pub slot_type: Option<String>,
    /// Where the slot holds WAL from; `None` when it has not reserved WAL yet.
    pub restart_lsn: Option<Lsn>,
    /// The timeline of `restart_lsn`.
    pub restart_tli: Option<TimelineId>,
}

/// The answer to CREATE_REPLICATION_SLOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub slot_name: String,
    /// For a physical slot reserving WAL: where the reservation starts (may be `None`).
    pub consistent_point: Option<Lsn>,
}

/// Checks a slot name the way `ReplicationSlotValidateName` does: 1-63 characters of
/// `a-z`, `0-9`, `_`. A valid name needs no quoting in replication commands.
pub fn validate_slot_name(name: &str) -> Result<(), PgConnError> {
    let ok = !name.is_empty()
        && name.len() < 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PgConnError::InvalidName {
            what: "replication slot",
            name: name.to_string(),
        })
    }
}

impl ReplicationClient {
    /// IDENTIFY_SYSTEM: system identifier, timeline, flush position.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, PgConnError> {
        const CMD: &str = "IDENTIFY_SYSTEM";
        let set = self.query_one_set(CMD).await?;
        let row = self.single_row(CMD, &set, 4)?;
        Ok(SystemIdentity {
            systemid: self.parse_value(CMD, "systemid", row.first())?,
            timeline: TimelineId(self.parse_value(CMD, "timeline", row.get(1))?),
            xlogpos: self.parse_value(CMD, "xlogpos", row.get(2))?,
            dbname: row.get(3).copied().flatten().map(str::to_string),
        })
    }

    /// `SHOW name`: a server setting as text (e.g. `wal_segment_size` = `16MB`,
    /// `server_version_num` = `150004`).
    pub async fn show(&mut self, name: &str) -> Result<String, PgConnError> {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            || name.is_empty()
        {
            return Err(PgConnError::InvalidName {
                what: "setting",
                name: name.to_string(),
            });
        }
        let cmd = format!("SHOW {name}");
        let set = self.query_one_set(&cmd).await?;
        let row = self.single_row(&cmd, &set, 1)?;
        row.first()
            .copied()
            .flatten()
            .map(str::to_string)
            .ok_or_else(|| self.unexpected_result(&cmd, "NULL value"))
    }

    /// `SHOW wal_segment_size` in bytes (the server reports e.g. `16MB` or `1GB`).
    pub async fn wal_segment_size(&mut self) -> Result<u64, PgConnError> {
        let text = self.show("wal_segment_size").await?;
        parse_size(&text).ok_or_else(|| {
            self.unexpected_result(
                "SHOW wal_segment_size",
                format!("cannot parse size \"{text}\""),
            )
        })
    }

    /// TIMELINE_HISTORY: the exact bytes of `<tli>.history` (there is none for timeline 1).
    pub async fn timeline_history(
        &mut self,
        tli: TimelineId,
    ) -> Result<TimelineHistoryFile, PgConnError> {
        let cmd = format!("TIMELINE_HISTORY {}", tli.0);
        let set = self.query_one_set(&cmd).await?;
        if set.rows.len() != 1 || set.columns.len() != 2 {
            return Err(self.unexpected_result(&cmd, "expected one row of (filename, content)"));
        }
        let filename = set.text(0, 0).map(str::to_string);
        let content = set.rows[0][1].clone();
        match (filename, content) {
            (Some(filename), Some(content)) => Ok(TimelineHistoryFile { filename, content }),
            _ => Err(self.unexpected_result(&cmd, "NULL filename or content")),
        }
    }

    /// READ_REPLICATION_SLOT (PG15+): a physical slot's type and restart position.
    pub async fn read_replication_slot(&mut self, slot: &str) -> Result<SlotInfo, PgConnError> {
        validate_slot_name(slot)?;
        let cmd = format!("READ_REPLICATION_SLOT {slot}");
        self.require_major(&cmd, 15)?;
        let set = self.query_one_set(&cmd).await?;
        let row = self.single_row(&cmd, &set, 3)?;
        Ok(SlotInfo {
            slot_type: row.first().copied().flatten().map(str::to_string),
            restart_lsn: self.parse_optional(&cmd, "restart_lsn", row.get(1))?,
            restart_tli: self
                .parse_optional(&cmd, "restart_tli", row.get(2))?
                .map(TimelineId),
        })
    }

    /// CREATE_REPLICATION_SLOT `slot` PHYSICAL, reserving WAL at once when `reserve_wal`
    /// (new option syntax on PG15+, keyword syntax before).
    pub async fn create_physical_replication_slot(
        &mut self,
        slot: &str,
        reserve_wal: bool,
    ) -> Result<CreatedSlot, PgConnError> {
        validate_slot_name(slot)?;
        let cmd = match (reserve_wal, self.server_major() >= 15) {
            (false, _) => format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL"),
            (true, true) => format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL (RESERVE_WAL)"),
            (true, false) => format!("CREATE_REPLICATION_SLOT {slot} PHYSICAL RESERVE_WAL"),
        };
        let set = self.query_one_set(&cmd).await?;
        let row = self.single_row(&cmd, &set, 2)?;
        Ok(CreatedSlot {
            slot_name: row.first().copied().flatten().unwrap_or(slot).to_string(),
            consistent_point: self.parse_optional(&cmd, "consistent_point", row.get(1))?,
        })
    }

    /// DROP_REPLICATION_SLOT `slot` (fails when it does not exist or is active).
    pub async fn drop_replication_slot(&mut self, slot: &str) -> Result<(), PgConnError> {
        validate_slot_name(slot)?;
        self.simple_query(&format!("DROP_REPLICATION_SLOT {slot}"))
            .await?;
        Ok(())
    }

    pub(crate) fn require_major(&self, command: &str, needed: u32) -> Result<(), PgConnError> {
        if self.server_major() >= needed {
            return Ok(());
        }
        Err(PgConnError::Unsupported {
            endpoint: self.endpoint.clone(),
            command: command.to_string(),
            needed,
            server_version_num: self.server_version_num(),
        })
    }

    /// The only row of `set`, as text, checking the column count.
    fn single_row<'s>(
        &self,
        command: &str,
        set: &'s ResultSet,
        columns: usize,
    ) -> Result<Vec<Option<&'s str>>, PgConnError> {
        if set.rows.len() != 1 || set.columns.len() < columns {
            return Err(self.unexpected_result(
                command,
                format!(
                    "{} rows of {} columns, expected 1 row of {columns}",
                    set.rows.len(),
                    set.columns.len()
                ),
            ));
        }
        Ok((0..set.columns.len()).map(|c| set.text(0, c)).collect())
    }

    fn parse_value<T: std::str::FromStr>(
        &self,
        command: &str,
        column: &str,
        value: Option<&Option<&str>>,
    ) -> Result<T, PgConnError> {
        self.parse_optional(command, column, value)?
            .ok_or_else(|| self.unexpected_result(command, format!("{column} is NULL")))
    }

    fn parse_optional<T: std::str::FromStr>(
        &self,
        command: &str,
        column: &str,
        value: Option<&Option<&str>>,
    ) -> Result<Option<T>, PgConnError> {
        match value.copied().flatten() {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                self.unexpected_result(command, format!("cannot parse {column} \"{text}\""))
            }),
        }
    }
}

/// A size as SHOW prints it: `16MB`, `1GB`, `8kB`, `512B` or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_show_prints_them() {
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("8kB"), Some(8192));
        assert_eq!(parse_size("8192"), Some(8192));
        assert_eq!(parse_size("16 MB"), Some(16 << 20));
        assert_eq!(parse_size("16XB"), None);
    }

    #[test]
    fn slot_names() {
        assert!(validate_slot_name("walship_1").is_ok());
        assert!(validate_slot_name("Walship").is_err());
        assert!(validate_slot_name("a;DROP").is_err());
        assert!(validate_slot_name("").is_err());
        assert!(validate_slot_name(&"a".repeat(64)).is_err());
    }
}
