//! The baseline: a bare HTTP server in this process that answers every
//! request with one fixed kv v2-shaped JSON body of the same size as the
//! target's answer. Measured by the same client at the same concurrency, it
//! is the ceiling of the HTTP path on this machine, and dividing by it keeps
//! results comparable across noisy runs and machines.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A running baseline server; stops when dropped.
pub struct Baseline {
    addr: SocketAddr,
    body_len: usize,
    stop: Option<oneshot::Sender<()>>,
}

impl Baseline {
    /// Binds 127.0.0.1 on a free port and serves `body` to every request.
    pub async fn start(body: bytes::Bytes) -> Result<Baseline> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the baseline server")?;
        let addr = listener.local_addr().context("baseline address")?;
        let body_len = body.len();
        let app = axum::Router::new().fallback(move || {
            let body = body.clone();
            async move {
                (
                    [
                        (CONTENT_TYPE, "application/json"),
                        (CACHE_CONTROL, "no-store"),
                    ],
                    body,
                )
            }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Baseline {
            addr,
            body_len,
            stop: Some(stop),
        })
    }

    /// Its base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The size of the body it answers, in bytes.
    pub fn body_len(&self) -> usize {
        self.body_len
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A kv v2 read answer (envelope, `data.data`, `data.metadata`) of exactly
/// `size` bytes, the padding going into `data.data.password`; never shorter
/// than [`min_body_len`].
pub fn vault_shaped_body(size: usize) -> bytes::Bytes {
    let pad = size.saturating_sub(min_body_len());
    bytes::Bytes::from(shaped(pad).to_string())
}

/// The smallest body [`vault_shaped_body`] makes (an empty password).
pub fn min_body_len() -> usize {
    shaped(0).to_string().len()
}

fn shaped(pad: usize) -> Value {
    json!({
        "request_id": "5a0e7c1e-2f4b-4c55-9d1a-0b6f3e2d8c41",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": {
            "data": {"password": "p".repeat(pad), "username": "bench-user-0"},
            "metadata": {
                "created_time": "2026-01-01T00:00:00.000000000Z",
                "custom_metadata": null,
                "deletion_time": "",
                "destroyed": false,
                "version": 1
            }
        },
        "wrap_info": null,
        "warnings": null,
        "auth": null,
        "mount_type": "kv"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_size() {
        let min = min_body_len();
        assert_eq!(vault_shaped_body(0).len(), min);
        for size in [min, min + 1, min + 700] {
            assert_eq!(vault_shaped_body(size).len(), size);
        }
    }
}
