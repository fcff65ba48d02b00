//! Test harness: runs the real `bulwark` binary as one or several processes,
//! with real certificates and storage, and talks to it the way clients do
//! (HTTP to the gateway, mTLS gRPC to a service).
//!
//! The binary is found next to the test executable (`target/<profile>/bulwark`)
//! or at `$BULWARK_BIN`; the README's test command builds it first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use serde_json::Value;

pub use bulwark_shared::storage::test_util::TestPg;

/// The `bulwark` binary under test.
pub fn bulwark_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BULWARK_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("bulwark");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build --bin bulwark) or set BULWARK_BIN",
        bin.display()
    );
    bin
}

/// A free loopback port for a server under test. Taken below the kernel's
/// ephemeral range (32768+), so that no `bind(0)` or outgoing connection of
/// another process can take it between here and the server's bind; never
/// handed out twice by one test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_000, "out of test ports");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One running `bulwark` process; killed on drop.
pub struct Proc {
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub name: String,
}

impl Proc {
    /// Starts `bulwark <args>` and waits for its "server started" line.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
        Proc::start_env(dir, name, args, &[])
    }

    /// [`Proc::start`] with extra environment variables.
    pub fn start_env(dir: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Proc {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let child = Command::new(bulwark_bin())
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("BULWARK_E2E_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn bulwark");
        let mut p = Proc {
            child,
            stdout,
            stderr,
            name: name.to_string(),
        };
        p.wait_for_output("Bulwark server started", Duration::from_secs(60));
        p
    }

    /// Waits for `needle` on stdout; panics with the process's output if it
    /// exits or does not say it in time.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            if out.contains(needle) {
                return out;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
                panic!(
                    "{} exited with {status} before saying {needle:?}\nstdout:\n{out}\nstderr:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not say {needle:?} within {timeout:?}\nstdout:\n{out}\nstderr:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// A line `Label: value` of the process's stdout.
    pub fn field(&self, label: &str) -> Option<String> {
        self.output()
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`HUP`, `TERM`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit on its own; `None` if it is still
    /// running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every token a test of this binary has sent (long enough not to be a
/// common word): no process may write one in its output.
static TOKENS_SENT: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn remember_token(token: &str) {
    if token.len() >= 16 {
        TOKENS_SENT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string());
    }
}

impl Proc {
    /// Panics if this process wrote any token a test sent (issue 13: no
    /// token in logs), outside the `-dev` banner that prints the root token
    /// on purpose, as Vault's does.
    fn check_no_token_written(&self) {
        let tokens = TOKENS_SENT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for file in [&self.stdout, &self.stderr] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for line in text
                .lines()
                .filter(|l| !l.trim_start().starts_with("Root Token:"))
            {
                if let Some(t) = tokens.iter().find(|t| line.contains(t.as_str())) {
                    panic!(
                        "{} wrote a token ({}…) in {}",
                        self.name,
                        &t[..8],
                        file.display()
                    );
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            self.check_no_token_written();
        }
    }
}

/// `bulwark server -dev` with the root token `root` on a free port, its
/// files in `dir`: the process and its API address (benchmarks).
pub fn dev_server(dir: &Path, env: &[(String, String)]) -> (Proc, String) {
    let server = Proc::start_env(
        dir,
        "dev",
        &[
            "server",
            "-dev",
            "-dev-root-token-id=root",
            "-dev-listen-address=127.0.0.1:0",
        ],
        env,
    );
    let addr = server.field("Api Address:").expect("api address");
    (server, addr)
}

/// A numeric field of `/proc/<pid>/status` (`VmRSS:`, `VmLck:` in kB,
/// `Threads:`), if the process and the field exist.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `BENCH_SECS` (default 5): the length of each benchmark run.
pub fn bench_secs() -> u64 {
    std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Where a cluster keeps its data.
#[derive(Clone)]
pub enum Store {
    SqliteFile,
    Postgres(String),
}

/// A Bulwark deployment under test: its processes, its files, its HTTP address.
impl Drop for Cluster {
    fn drop(&mut self) {
        // BULWARK_E2E_KEEP=1 keeps the processes' files for a post-mortem.
        if std::env::var_os("BULWARK_E2E_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub procs: Vec<Proc>,
    pub http: String,
    /// With an HTTPS listener: the CA that signed the gateway's certificate.
    pub http_ca: Option<String>,
    config: PathBuf,
    layout: Layout,
    env: Vec<(String, String)>,
}

/// How a test cluster is set up beyond its layout and storage.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Serve HTTPS (a certificate for 127.0.0.1 from a test CA); clients
    /// may present certificates (cert auth).
    pub https: bool,
    /// Appended to the generated config file (e.g. a `telemetry` block).
    pub extra_config: String,
    /// Extra lines inside the `listener "tcp"` block.
    pub listener_extra: String,
    /// Environment of every process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

/// A throwaway certificate authority for tests (rcgen).
pub struct TestCa {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf certificate and its key (PEM), for a server (`client: false`,
    /// SANs 127.0.0.1 and localhost) or a TLS client.
    pub fn leaf(&self, common_name: &str, client: bool) -> (String, String) {
        let sans = if client {
            vec![format!("{common_name}.example.com")]
        } else {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        };
        let mut params = rcgen::CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One process per service, the gateway included.
    Separate,
    /// Every service in one process, from a config file with `target = "all"`.
    AllInOne,
}

impl Cluster {
    pub fn start(layout: Layout, store: Store) -> Cluster {
        Cluster::start_with(layout, store, Options::default())
    }

    pub fn start_with(layout: Layout, store: Store, opts: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = dir.path().join("certs");
        let status = Command::new(bulwark_bin())
            .args(["certs", "-dir", certs.to_str().expect("utf-8 path")])
            .stdout(Stdio::null())
            .status()
            .expect("run bulwark certs");
        assert!(status.success(), "bulwark certs failed");
        let http_port = free_port();
        let storage = match &store {
            Store::SqliteFile => format!(
                "storage \"sqlite\" {{ path = \"{}\" }}",
                dir.path().join("bulwark.db").display()
            ),
            Store::Postgres(url) => {
                format!("storage \"postgresql\" {{ connection_url = \"{url}\" }}")
            }
        };
        let mut cluster_block = format!("  cert_dir = \"{}\"\n", certs.display());
        if layout == Layout::Separate {
            for name in ServiceName::ALL
                .iter()
                .filter(|n| **n != ServiceName::Gateway)
            {
                cluster_block.push_str(&format!(
                    "  {} = \"127.0.0.1:{}\"\n",
                    name.as_str(),
                    free_port()
                ));
            }
        }
        let (tls, scheme, http_ca) = if opts.https {
            let ca = TestCa::new("bulwark test HTTPS CA");
            let (cert, key) = ca.leaf("bulwark-gateway", false);
            let (cert_file, key_file) = (dir.path().join("http.crt"), dir.path().join("http.key"));
            std::fs::write(&cert_file, cert).expect("write cert");
            std::fs::write(&key_file, key).expect("write key");
            (
                format!(
                    "  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n",
                    cert_file.display(),
                    key_file.display()
                ),
                "https",
                Some(ca.cert_pem),
            )
        } else {
            ("  tls_disable = true\n".to_string(), "http", None)
        };
        let config = dir.path().join("bulwark.hcl");
        std::fs::write(
            &config,
            format!(
                "{storage}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{http_port}\"\n{tls}{}\n}}\ncluster {{\n{cluster_block}}}\n{}\n",
                opts.listener_extra, opts.extra_config
            ),
        )
        .expect("write config");
        let mut c = Cluster {
            dir,
            procs: vec![],
            http: format!("{scheme}://127.0.0.1:{http_port}"),
            http_ca,
            config,
            layout,
            env: opts.env,
        };
        c.start_processes();
        c
    }

    fn start_processes(&mut self) {
        let cfg = self.config.to_str().expect("utf-8 path").to_string();
        match self.layout {
            Layout::AllInOne => {
                self.procs.push(Proc::start_env(
                    self.dir.path(),
                    "all",
                    &["server", "-config", &cfg],
                    &self.env,
                ));
            }
            Layout::Separate => {
                for name in ServiceName::ALL {
                    let target = format!("--target={}", name.as_str());
                    self.procs.push(Proc::start_env(
                        self.dir.path(),
                        name.as_str(),
                        &["server", "-config", &cfg, &target],
                        &self.env,
                    ));
                }
            }
        }
    }

    /// Kills every process (SIGKILL: no graceful shutdown) and starts them again.
    pub fn restart(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
        self.procs.clear();
        self.start_processes();
    }

    /// The generated config file (every process reads it).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn identity(&self, name: ServiceName) -> ServiceIdentity {
        ServiceIdentity::load(&self.cert_dir(), name).expect("identity")
    }

    /// The gRPC address of a service, from the config file.
    pub fn grpc_addr(&self, name: ServiceName) -> String {
        let cfg = std::fs::read_to_string(&self.config).expect("config");
        let key = format!("  {} = \"", name.as_str());
        cfg.lines()
            .find_map(|l| {
                l.strip_prefix(&key)
                    .map(|v| v.trim_end_matches('"').to_string())
            })
            .expect("service address (separate layout only)")
    }

    pub fn client(&self) -> Api {
        match &self.http_ca {
            Some(ca) => Api::new_tls(&self.http, ca, None),
            None => Api::new(&self.http),
        }
    }

    /// A client presenting `identity` (certificate and key, PEM) to the
    /// HTTPS listener.
    pub fn client_with_identity(&self, cert_pem: &str, key_pem: &str) -> Api {
        let ca = self.http_ca.as_deref().expect("an HTTPS cluster");
        Api::new_tls(&self.http, ca, Some(format!("{cert_pem}{key_pem}")))
    }
}

/// A minimal Vault API client over reqwest.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    pub token: Option<String>,
    /// Sent with every request.
    pub headers: Vec<(String, String)>,
}

/// An HTTP answer: status, and the body parsed as JSON (`Null` if empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            token: None,
            headers: vec![],
        }
    }

    /// A client of an HTTPS listener whose certificate `ca_pem` signed,
    /// presenting `identity_pem` (certificate + key) when given.
    pub fn new_tls(base: &str, ca_pem: &str, identity_pem: Option<String>) -> Api {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"));
        if let Some(id) = identity_pem {
            b = b.identity(reqwest::Identity::from_pem(id.as_bytes()).expect("identity"));
        }
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: b.build().expect("http client"),
            token: None,
            headers: vec![],
        }
    }

    /// Sends `X-Vault-Wrap-TTL` with a PUT.
    pub async fn put_wrapped(&self, path: &str, body: Value, wrap_ttl: &str) -> Reply {
        let mut req = self
            .http
            .put(format!("{}/v1/{}", self.base, path))
            .header("X-Vault-Wrap-TTL", wrap_ttl)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).expect("json"));
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers,
        }
    }

    pub fn with_token(&self, token: &str) -> Api {
        remember_token(token);
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// This client, sending `name: value` with every request.
    pub fn with_header(&self, name: &str, value: &str) -> Api {
        let mut api = self.clone();
        api.headers.push((name.to_string(), value.to_string()));
        api
    }

    pub async fn raw(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}/v1/{}", self.base, path));
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            headers,
        }
    }

    /// A GET whose answer is not JSON: the status and the body as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let mut req = self.http.get(format!("{}/v1/{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.raw("GET", path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.raw("PUT", path, Some(serde_json::to_vec(&body).expect("json")))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.raw("DELETE", path, None).await
    }

    /// Polls `path` until `pred` holds (services converge after a restart).
    pub async fn wait_until(&self, path: &str, pred: impl Fn(&Reply) -> bool) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.get(path).await;
            if pred(&r) || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends a PUT with a 33 MiB body over a raw socket and returns the status
/// code and body of the answer. With `announce`, the size is declared in
/// Content-Length and no body is sent; otherwise the body streams in chunks
/// while the answer is read (the server may answer before it is all sent).
pub async fn oversized_put(base: &str, path: &str, announce: bool) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_string();
    let path = path.to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let size = 33 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        if announce {
            let head = format!("PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n");
            let _ = wr.write_all(head.as_bytes()).await;
        } else {
            let head = format!("PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            if wr.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 1024 * 1024];
            for _ in 0..34 {
                let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                if wr.write_all(&frame).await.is_err() {
                    return;
                }
            }
            let _ = wr.write_all(b"0\r\n\r\n").await;
        }
        // Keep the write half open until the answer has been read.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    });
                    if len.is_some_and(|l| body.len() >= l) {
                        break;
                    }
                }
            }
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Initializes with one share, unseals, and returns the root token.
pub async fn init_unsealed(api: &Api) -> String {
    let r = api
        .put(
            "sys/init",
            serde_json::json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "init: {:?}", r.body);
    let key = r.body["keys"][0].as_str().expect("key").to_string();
    let root = r.body["root_token"]
        .as_str()
        .expect("root token")
        .to_string();
    let r = api
        .put("sys/unseal", serde_json::json!({ "key": key }))
        .await;
    assert_eq!(r.body["sealed"], false, "unseal: {:?}", r.body);
    root
}

/// `PATCH` with Vault's merge-patch content type.
pub async fn patch(api: &Api, path: &str, body: serde_json::Value) -> Reply {
    let mut req = api
        .http
        .patch(format!("{}/v1/{}", api.base, path))
        .header("Content-Type", "application/merge-patch+json")
        .body(serde_json::to_vec(&body).expect("json"));
    if let Some(t) = &api.token {
        req = req.header("X-Vault-Token", t);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        headers,
    }
}

/// A closed-loop load generator for the benchmarks: `concurrency` clients
/// each send requests back to back for `secs` seconds.
pub mod otlp;

pub mod load {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Requests per second and latency percentiles of one run.
    pub struct Outcome {
        pub ok: u64,
        pub errors: u64,
        pub per_sec: f64,
        pub p50: Duration,
        pub p99: Duration,
    }

    impl std::fmt::Display for Outcome {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   errors {}",
                self.per_sec,
                self.p50.as_secs_f64() * 1e3,
                self.p99.as_secs_f64() * 1e3,
                self.errors
            )
        }
    }

    /// Runs `request(client_index, iteration)`; a request succeeds when it
    /// returns true.
    pub async fn run<F, Fut>(secs: u64, concurrency: u64, request: F) -> Outcome
    where
        F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let request = Arc::new(request);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..concurrency {
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if request(c, i).await {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                    i += 1;
                }
                (lat, errors)
            }));
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await.expect("load task");
            all.extend(l);
            errors += e;
        }
        all.sort();
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Outcome {
            ok: all.len() as u64,
            errors,
            per_sec: all.len() as f64 / secs as f64,
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}
