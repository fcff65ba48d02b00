//! The HTTP side: one pooled keep-alive HTTP/1.1 client shared by setup, the
//! measured scenarios and the baseline, and the few setup calls the tool makes
//! against the target's Vault API.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::Value;

/// The client every request of a run goes through. HTTP/1.1 only, because
/// that is what Vault clients speak and what the baseline answers; the idle
/// pool is unbounded per host so that every closed-loop client keeps its own
/// connection alive instead of reconnecting.
pub fn http_client(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        // A standby's 307 would hide where the time went: count it as is.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("bulwark-bench/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).context("reading -ca-cert")?;
        if certs.is_empty() {
            bail!("-ca-cert holds no PEM certificate");
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}

/// Sends of a setup or cleanup call before giving up.
const SEND_ATTEMPTS: u32 = 3;

/// A Vault-API server and the token that sets it up.
#[derive(Clone)]
pub struct Target {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Target {
    /// `address` is the server's base URL (`http://127.0.0.1:8200`), as in `VAULT_ADDR`.
    pub fn new(address: &str, token: &str, http: reqwest::Client) -> Target {
        Target {
            base: address.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same server with another token (the measured requests' token).
    pub fn with_token(&self, token: &str) -> Target {
        Target {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// One API call; any non-2xx answer is an error carrying the server's
    /// `errors` (never the token). Returns the JSON body, `None` for a 204.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let (status, bytes) = self.raw(method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            let errors = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("errors").cloned())
                .map(|e| e.to_string())
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            bail!("{method} /v1/{path}: HTTP {status}: {errors}");
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{method} /v1/{path}: the answer is not JSON"))
    }

    /// One API call, whatever its status: `(status, body)`.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, bytes::Bytes)> {
        let url = format!("{}/v1/{}", self.base, path);
        let mut attempt = 1;
        let resp = loop {
            let mut req = self.http.request(method.clone(), &url);
            if !self.token.is_empty() {
                req = req.header("X-Vault-Token", &self.token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            match req.send().await {
                Ok(resp) => break resp,
                // A pooled connection the server closed while idle fails the
                // first send after a long measurement: try a fresh one.
                Err(_) if attempt < SEND_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => bail!("{method} /v1/{path}: cannot reach {}: {e}", self.base),
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| anyhow!("{method} /v1/{path}: reading the answer: {e}"))?;
        Ok((status, bytes))
    }

    /// `POST /v1/<path>` with a JSON body.
    pub async fn write(&self, path: &str, body: &Value) -> Result<Option<Value>> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `GET /v1/<path>`; a 2xx without a body is an error here.
    pub async fn read(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None)
            .await?
            .ok_or_else(|| anyhow!("GET /v1/{path}: empty answer"))
    }

    /// `DELETE /v1/<path>`.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call(Method::DELETE, path, None).await.map(|_| ())
    }
}
