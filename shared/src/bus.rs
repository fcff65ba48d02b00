//! Change notices between replicas of a service that share one database.
//!
//! A replica that changes something other replicas cache (a revoked token,
//! the mount table) publishes a short notice on a topic; every replica
//! subscribed to the topic receives it, its own notices excepted. On
//! PostgreSQL this is `NOTIFY`/`LISTEN` (delivered at commit, to every
//! process on the database); on SQLite notices stay inside the process
//! (replicas on SQLite are not supported: one process owns the file).
//!
//! Delivery is at most once. When the listening connection drops, notices
//! may have been lost: subscribers then get [`Notice::Resync`] and must
//! drop whatever they cache from that topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::storage::{Database, StorageError};

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Another replica's payload.
    Message(String),
    /// Notices may have been missed (reconnect, lag): forget cached state.
    Resync,
}

/// Largest payload: PostgreSQL refuses NOTIFY payloads of 8000 bytes or
/// more; the topic prefix and sender id take the rest.
pub const MAX_PAYLOAD: usize = 7000;

/// A replica's handle on the notice bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    db: Database,
    /// This process's id, carried in every notice so that a replica skips
    /// its own.
    sender: Arc<str>,
}

/// A notice and the id of the replica that sent it.
type Sent = (Arc<str>, Notice);

/// In-process topics (SQLite, and replicas sharing this process).
fn local(topic: &str) -> broadcast::Sender<Sent> {
    static TOPICS: OnceLock<Mutex<HashMap<String, broadcast::Sender<Sent>>>> = OnceLock::new();
    let mut topics = TOPICS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    topics
        .entry(topic.to_string())
        .or_insert_with(|| broadcast::channel(1024).0)
        .clone()
}

impl Bus {
    pub fn new(db: Database) -> Bus {
        Bus {
            db,
            sender: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
        }
    }

    /// Sends `payload` (at most [`MAX_PAYLOAD`] bytes; longer is refused)
    /// to the other replicas subscribed to `topic` (`[a-z_]+`).
    pub async fn publish(&self, topic: &str, payload: &str) -> Result<(), StorageError> {
        if payload.len() > MAX_PAYLOAD || !valid_topic(topic) {
            return Err(StorageError::Invalid("bus notice too long or bad topic"));
        }
        match self.db.pg_pool() {
            Some(pool) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel(self.db.prefix(), topic))
                    .bind(format!("{}:{payload}", self.sender))
                    .execute(pool)
                    .await?;
            }
            None => {
                let _ =
                    local(topic).send((self.sender.clone(), Notice::Message(payload.to_string())));
            }
        }
        Ok(())
    }

    /// Notices on `topic` from other replicas, until the receiver is dropped.
    pub fn subscribe(&self, topic: &str) -> tokio::sync::mpsc::Receiver<Notice> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let me = self.sender.clone();
        let mut local_rx = local(topic).subscribe();
        // In-process notices (SQLite, or replicas sharing this process).
        let tx_local = tx.clone();
        let me_local = me.clone();
        tokio::spawn(async move {
            loop {
                let notice = match local_rx.recv().await {
                    Ok((from, _)) if from == me_local => continue,
                    Ok((_, n)) => n,
                    Err(broadcast::error::RecvError::Lagged(_)) => Notice::Resync,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx_local.send(notice).await.is_err() {
                    return;
                }
            }
        });
        if let Some(pool) = self.db.pg_pool().cloned() {
            tokio::spawn(listen_pg(pool, channel(self.db.prefix(), topic), me, tx));
        }
        rx
    }
}

fn valid_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= 40 && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn channel(prefix: &str, topic: &str) -> String {
    format!("{prefix}{topic}")
}

/// Follows a PostgreSQL channel, reconnecting with backoff; every
/// (re)connection after the first is announced as [`Notice::Resync`].
async fn listen_pg(
    pool: sqlx::PgPool,
    channel: String,
    me: Arc<str>,
    tx: tokio::sync::mpsc::Sender<Notice>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if tx.is_closed() {
            return;
        }
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "bus: cannot listen; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(error = %e, "bus: LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        if !first && tx.send(Notice::Resync).await.is_err() {
            return;
        }
        first = false;
        loop {
            let received = tokio::select! {
                r = listener.try_recv() => r,
                () = tx.closed() => return,
            };
            match received {
                Ok(Some(n)) => {
                    let Some((from, payload)) = n.payload().split_once(':') else {
                        continue;
                    };
                    if from == &*me {
                        continue;
                    }
                    if tx.send(Notice::Message(payload.to_string())).await.is_err() {
                        return;
                    }
                }
                // The connection dropped: reconnect, then resync.
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageConfig;

    async fn exchange(a: Bus, b: Bus) {
        let mut rx_b = b.subscribe("test_topic");
        let mut rx_a = a.subscribe("test_topic");
        // Subscriptions are in place once a probe gets through.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            a.publish("test_topic", "probe").await.unwrap();
            match tokio::time::timeout(Duration::from_millis(200), rx_b.recv()).await {
                Ok(Some(Notice::Message(m))) if m == "probe" => break,
                _ => assert!(tokio::time::Instant::now() < deadline, "no delivery"),
            }
        }
        a.publish("test_topic", "revoked:acc1,acc2").await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), rx_b.recv())
                .await
                .unwrap(),
            Some(Notice::Message("revoked:acc1,acc2".into()))
        );
        // A replica never hears itself.
        while let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(300), rx_a.recv()).await
        {
            assert_ne!(n, Notice::Message("revoked:acc1,acc2".into()));
        }
        assert!(a
            .publish("test_topic", &"x".repeat(MAX_PAYLOAD + 1))
            .await
            .is_err());
        assert!(a.publish("Bad-Topic", "x").await.is_err());
    }

    #[tokio::test]
    async fn notices_reach_other_replicas_in_process() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        exchange(Bus::new(db.clone()), Bus::new(db)).await;
    }

    #[tokio::test]
    async fn notices_reach_other_replicas_over_postgres() {
        let pg = crate::storage::test_util::TestPg::new().await;
        let a = Database::connect(&pg.config()).await.unwrap();
        let b = Database::connect(&pg.config()).await.unwrap();
        exchange(Bus::new(a), Bus::new(b)).await;
    }
}
