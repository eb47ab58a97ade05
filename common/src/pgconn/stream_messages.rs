//! The messages inside CopyData during physical streaming (walsender.c, walreceiver.c):
//! `'w'` XLogData and `'k'` primary keepalive from the server, `'r'` standby status update
//! from the client. Integers are big-endian; times are microseconds since 2000-01-01 UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::lsn::Lsn;

/// Seconds from the Unix epoch to the Postgres epoch (2000-01-01 00:00:00 UTC).
const POSTGRES_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// A WAL chunk (`'w'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// WAL position of the first byte of `data`.
    pub data_start: Lsn,
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock at sending (µs since 2000-01-01 UTC).
    pub send_time: i64,
    /// WAL bytes, which may cross page and segment boundaries.
    pub data: Bytes,
}

impl XLogData {
    /// The position just past the last byte of `data`.
    pub fn data_end(&self) -> Lsn {
        Lsn(self.data_start.0 + self.data.len() as u64)
    }
}

/// A primary keepalive (`'k'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The server's current end of WAL.
    pub wal_end: Lsn,
    /// Server clock at sending (µs since 2000-01-01 UTC).
    pub send_time: i64,
    /// The server wants a status update now, or it will disconnect at `wal_sender_timeout`.
    pub reply_requested: bool,
}

/// A message from the server during streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// WAL data.
    XLogData(XLogData),
    /// Keepalive.
    Keepalive(PrimaryKeepalive),
}

/// Why a CopyData body is not a streaming message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamMessageError {
    /// Unknown first byte.
    #[error("unknown streaming message type {0:#04x}")]
    UnknownType(u8),
    /// Too short for its type.
    #[error("streaming message '{kind}' is {len} bytes, shorter than its {needed}-byte header")]
    Truncated {
        /// The type byte as a char.
        kind: char,
        /// Actual length.
        len: usize,
        /// Header length required.
        needed: usize,
    },
}

impl ReplicationMessage {
    /// Parses a CopyData body received during START_REPLICATION.
    pub fn parse(mut body: Bytes) -> Result<ReplicationMessage, StreamMessageError> {
        let len = body.len();
        let Some(&kind) = body.first() else {
            return Err(StreamMessageError::Truncated {
                kind: '?',
                len,
                needed: 1,
            });
        };
        let need = |needed: usize| {
            if len < needed {
                Err(StreamMessageError::Truncated {
                    kind: kind as char,
                    len,
                    needed,
                })
            } else {
                Ok(())
            }
        };
        match kind {
            b'w' => {
                need(25)?;
                body.advance(1);
                let data_start = Lsn(body.get_u64());
                let wal_end = Lsn(body.get_u64());
                let send_time = body.get_i64();
                Ok(ReplicationMessage::XLogData(XLogData {
                    data_start,
                    wal_end,
                    send_time,
                    data: body,
                }))
            }
            b'k' => {
                need(18)?;
                body.advance(1);
                Ok(ReplicationMessage::Keepalive(PrimaryKeepalive {
                    wal_end: Lsn(body.get_u64()),
                    send_time: body.get_i64(),
                    reply_requested: body.get_u8() != 0,
                }))
            }
            other => Err(StreamMessageError::UnknownType(other)),
        }
    }
}

/// A standby status update (`'r'`): positions are "last byte + 1"; `Lsn::INVALID` means
/// "unknown" (pg_receivewal sends Invalid for apply, and for flush without a slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Received and written.
    pub write: Lsn,
    /// Durably stored (what synchronous replication waits for).
    pub flush: Lsn,
    /// Applied (a WAL archiver applies nothing: Invalid).
    pub apply: Lsn,
    /// Ask the server to answer with a keepalive at once.
    pub reply_requested: bool,
}

impl StandbyStatusUpdate {
    /// The CopyData body, stamped with the current clock.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(34);
        buf.put_u8(b'r');
        buf.put_u64(self.write.0);
        buf.put_u64(self.flush.0);
        buf.put_u64(self.apply.0);
        buf.put_i64(postgres_now());
        buf.put_u8(u8::from(self.reply_requested));
        buf.freeze()
    }
}

/// Now, in microseconds since 2000-01-01 UTC (Postgres `TimestampTz`).
pub fn postgres_now() -> i64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    unix - POSTGRES_EPOCH_UNIX_SECS * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlogdata_and_keepalive_parse() {
        let mut w = BytesMut::new();
        w.put_u8(b'w');
        w.put_u64(0x1_0000_0000);
        w.put_u64(0x1_0000_0010);
        w.put_i64(42);
        w.put_slice(b"walbytes");
        let ReplicationMessage::XLogData(x) = ReplicationMessage::parse(w.freeze()).unwrap() else {
            panic!("not XLogData");
        };
        assert_eq!(
            (x.data_start, x.wal_end, x.send_time),
            (Lsn(0x1_0000_0000), Lsn(0x1_0000_0010), 42)
        );
        assert_eq!(&x.data[..], b"walbytes");
        assert_eq!(x.data_end(), Lsn(0x1_0000_0008));

        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(7);
        k.put_i64(9);
        k.put_u8(1);
        assert_eq!(
            ReplicationMessage::parse(k.freeze()).unwrap(),
            ReplicationMessage::Keepalive(PrimaryKeepalive {
                wal_end: Lsn(7),
                send_time: 9,
                reply_requested: true
            })
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(
            ReplicationMessage::parse(Bytes::from_static(b"k\0\0")),
            Err(StreamMessageError::Truncated {
                kind: 'k',
                len: 3,
                needed: 18
            })
        );
        assert_eq!(
            ReplicationMessage::parse(Bytes::from_static(b"z")),
            Err(StreamMessageError::UnknownType(b'z'))
        );
    }

    #[test]
    fn status_update_layout() {
        let body = StandbyStatusUpdate {
            write: Lsn(1),
            flush: Lsn(2),
            apply: Lsn::INVALID,
            reply_requested: false,
        }
        .encode();
        assert_eq!(body.len(), 34);
        assert_eq!(body[0], b'r');
        assert_eq!(&body[1..9], &1u64.to_be_bytes());
        assert_eq!(&body[9..17], &2u64.to_be_bytes());
        assert_eq!(body[33], 0);
    }
}
