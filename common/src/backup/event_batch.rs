//! Handing [`BackupEvent`]s from the async source to the bundler thread in batches.
//!
//! A base backup arrives as one `Data` event per CopyData message (8 to 32 kB each), about a
//! hundred thousand of them for a few GiB. Sent one by one through a channel, each costs a
//! thread wake-up on either side, which cost more CPU than the compression. Batches of about
//! [`BATCH_BYTES`] of data cut that by two orders of magnitude; any event other than data or
//! progress is sent at once, so the consumer sees archive boundaries and positions in order
//! and without delay.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::event::BackupEvent;

/// Data bytes gathered before a batch is sent.
pub const BATCH_BYTES: usize = 1 << 20;
/// Batches queued between the source and the consumer (bounds the memory to about
/// `QUEUE_BATCHES * BATCH_BYTES`).
pub const QUEUE_BATCHES: usize = 8;

/// The async, producing end: [`BatchSender::push`] each event, then [`BatchSender::finish`].
#[derive(Debug)]
pub struct BatchSender {
    tx: mpsc::Sender<Vec<BackupEvent>>,
    batch: Vec<BackupEvent>,
    data_bytes: usize,
}

/// The blocking, consuming end, used on the bundler thread.
#[derive(Debug)]
pub struct EventBatches {
    rx: mpsc::Receiver<Vec<BackupEvent>>,
    pending: VecDeque<BackupEvent>,
}

/// A connected sender and receiver.
pub fn event_batches() -> (BatchSender, EventBatches) {
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let sender = BatchSender {
        tx,
        batch: Vec::new(),
        data_bytes: 0,
    };
    let receiver = EventBatches {
        rx,
        pending: VecDeque::new(),
    };
    (sender, receiver)
}

impl BatchSender {
    /// Adds `event`, sending the batch when it is full or `event` is not data. Returns false
    /// when the consumer has stopped (its own error says why).
    pub async fn push(&mut self, event: BackupEvent) -> bool {
        let urgent = match &event {
            BackupEvent::Data(data) => {
                self.data_bytes += data.len();
                false
            }
            BackupEvent::Progress(_) => false,
            _ => true,
        };
        self.batch.push(event);
        if urgent || self.data_bytes >= BATCH_BYTES {
            return self.send().await;
        }
        true
    }

    /// Sends what is left; the consumer then sees the end of the stream. Returns false when
    /// the consumer has stopped.
    pub async fn finish(mut self) -> bool {
        self.send().await
    }

    async fn send(&mut self) -> bool {
        self.data_bytes = 0;
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut self.batch);
        self.tx.send(batch).await.is_ok()
    }
}

impl EventBatches {
    /// The next event in the order it was pushed, blocking until one arrives; `None` at the
    /// end of the stream. Must not be called from async code.
    pub fn blocking_next(&mut self) -> Option<BackupEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            self.pending = self.rx.blocking_recv()?.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn events_arrive_in_order_and_batches_flush_on_control_events() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (mut tx, mut rx) = event_batches();
        let consumer = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while let Some(event) = rx.blocking_next() {
                seen.push(format!("{event:?}"));
            }
            seen
        });
        let mut expected = Vec::new();
        runtime.block_on(async {
            for i in 0..300u32 {
                let event = match i % 50 {
                    0 => BackupEvent::ArchiveEnd,
                    7 => BackupEvent::Progress(u64::from(i)),
                    _ => BackupEvent::Data(Bytes::from(vec![i as u8; 10_000])),
                };
                expected.push(format!("{event:?}"));
                assert!(tx.push(event).await);
            }
            assert!(tx.finish().await);
        });
        assert_eq!(consumer.join().unwrap(), expected);
    }

    #[test]
    fn a_stopped_consumer_is_reported() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (mut tx, rx) = event_batches();
        drop(rx);
        runtime.block_on(async {
            assert!(!tx.push(BackupEvent::ArchiveEnd).await);
        });
    }
}
