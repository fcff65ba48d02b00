//! One writer task per device, fed by a channel: group commit.
//!
//! [`Writer::write`] queues a line with a one-shot for its result and waits.
//! The task takes everything queued, writes it as one batch, fsyncs once (file
//! devices) and answers every waiter of the batch: an fsync per batch, not
//! per entry. A failed write or fsync answers the whole batch with failure
//! and marks the device failed until a later batch succeeds (the sink is
//! closed on failure, so the next batch opens it again).
//!
//! Reopen, flush and close requests travel through the same queue, so lines
//! queued before a reopen go to the old file and lines queued after it to the
//! new one: none is dropped. Close finishes everything already queued.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::sink::Sink;

/// How many requests may wait for a device before `write` waits to queue.
const QUEUE: usize = 4096;
/// The most lines written (and fsync'd) together.
const MAX_BATCH: usize = 1024;

enum Command {
    /// Lines written in order, in one batch.
    Write {
        lines: Vec<Vec<u8>>,
        done: oneshot::Sender<bool>,
    },
    Reopen {
        done: oneshot::Sender<Result<(), String>>,
    },
    Flush {
        done: oneshot::Sender<()>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// The handle of one device's writer task. The task ends when the handle is
/// closed or dropped.
pub struct Writer {
    tx: mpsc::Sender<Command>,
    failed: Arc<AtomicBool>,
    batches: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer of the device at `path` over `sink`. With
    /// `open_now`, opens the sink at once (a failure is logged and counts the
    /// device failed until a batch succeeds).
    pub fn spawn(path: String, sink: Sink, open_now: bool) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let failed = Arc::new(AtomicBool::new(false));
        let batches = Arc::new(AtomicU64::new(0));
        let task = Task {
            path,
            sink,
            failed: failed.clone(),
            batches: batches.clone(),
        };
        tokio::spawn(task.run(rx, open_now));
        Writer {
            tx,
            failed,
            batches,
        }
    }

    /// Writes `line` durably; false if the device could not.
    #[cfg(test)]
    pub async fn write(&self, line: Vec<u8>) -> bool {
        self.write_all(vec![line]).await
    }

    /// Writes `lines` durably, in order and in the same batch (all or
    /// none); false if the device could not.
    pub async fn write_all(&self, lines: Vec<Vec<u8>>) -> bool {
        let (done, result) = oneshot::channel();
        if self.tx.send(Command::Write { lines, done }).await.is_err() {
            return false;
        }
        result.await.unwrap_or(false)
    }

    /// Closes and reopens the device, after everything queued before.
    pub async fn reopen(&self) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        if self.tx.send(Command::Reopen { done }).await.is_err() {
            return Err("device is closed".into());
        }
        result
            .await
            .unwrap_or_else(|_| Err("device is closed".into()))
    }

    /// Waits until everything queued before is written.
    pub async fn flush(&self) {
        let (done, result) = oneshot::channel();
        if self.tx.send(Command::Flush { done }).await.is_ok() {
            let _ = result.await;
        }
    }

    /// Writes everything queued, closes the device and ends the task; later
    /// writes fail.
    pub async fn close(&self) {
        let (done, result) = oneshot::channel();
        if self.tx.send(Command::Close { done }).await.is_ok() {
            let _ = result.await;
        }
    }

    /// Whether the last batch (or open) failed.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// How many batches were written so far (each one write and one fsync).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

struct Task {
    path: String,
    sink: Sink,
    failed: Arc<AtomicBool>,
    batches: Arc<AtomicU64>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, open_now: bool) {
        if open_now {
            if let Err(e) = self.sink.open().await {
                self.mark_failed(&e);
            }
        }
        let mut closers = Vec::new();
        let mut lines = Vec::new();
        let mut waiters = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(command) = next.take() {
                taken += 1;
                match command {
                    Command::Write { lines: more, done } => {
                        lines.extend(more);
                        waiters.push(done);
                    }
                    Command::Reopen { done } => {
                        self.commit(&mut lines, &mut waiters).await;
                        let result = self.sink.reopen().await;
                        match &result {
                            Ok(()) => self.mark_ok(),
                            Err(e) => self.mark_failed(e),
                        }
                        let _ = done.send(result);
                    }
                    Command::Flush { done } => {
                        self.commit(&mut lines, &mut waiters).await;
                        let _ = done.send(());
                    }
                    Command::Close { done } => {
                        // Refuse new requests; finish what is queued.
                        rx.close();
                        closers.push(done);
                    }
                }
                if taken < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut lines, &mut waiters).await;
        }
        self.sink.close();
        for done in closers {
            let _ = done.send(());
        }
    }

    /// Writes the pending lines as one batch and answers their waiters.
    async fn commit(&mut self, lines: &mut Vec<Vec<u8>>, waiters: &mut Vec<oneshot::Sender<bool>>) {
        if lines.is_empty() {
            return;
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        let ok = match self.sink.write(lines).await {
            Ok(()) => {
                self.mark_ok();
                true
            }
            Err(e) => {
                self.mark_failed(&e.to_string());
                false
            }
        };
        lines.clear();
        for done in waiters.drain(..) {
            let _ = done.send(ok);
        }
    }

    fn mark_failed(&self, error: &str) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(device = %self.path, error, "audit device failed");
        }
    }

    fn mark_ok(&self) {
        if self.failed.swap(false, Ordering::Relaxed) {
            tracing::info!(device = %self.path, "audit device recovered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::SinkSpec;

    fn file_writer(path: &std::path::Path) -> Writer {
        Writer::spawn(
            "file/".into(),
            Sink::new(&SinkSpec::File {
                path: path.to_path_buf(),
                mode: 0o600,
            }),
            true,
        )
    }

    #[tokio::test]
    async fn batches_in_order_and_closes_after_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let writer = Arc::new(file_writer(&path));
        let mut tasks = Vec::new();
        for i in 0..100 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.write(format!("{i}\n").into_bytes()).await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert!(writer.batches() < 100, "{} batches", writer.batches());
        writer.flush().await;
        writer.close().await;
        assert!(!writer.write(b"late\n".to_vec()).await);
        assert!(writer.reopen().await.is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        let mut got: Vec<u32> = text.lines().map(|l| l.parse().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn failure_marks_and_recovery_clears() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("a.log");
        let writer = file_writer(&path);
        assert!(writer.write(b"1\n".to_vec()).await);
        std::fs::remove_dir_all(&sub).unwrap();
        assert!(writer.reopen().await.is_err());
        assert!(writer.is_failed());
        assert!(!writer.write(b"2\n".to_vec()).await);
        // The directory comes back: the next batch reopens the file.
        std::fs::create_dir(&sub).unwrap();
        assert!(writer.write(b"3\n".to_vec()).await);
        assert!(!writer.is_failed());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "3\n");
    }
}
