//! Fault tests (issue 13): the real processes under a steady load of kv v2
//! writes while things break, each write acknowledged (2xx) remembered and
//! read back at the end with its exact value (`acked N, readable N`).
//!
//! * every service killed (-9) in turn, then the gateway itself: while one
//!   is dead the gateway answers Vault-shaped 5xx (or, for the gateway,
//!   clients cannot connect), never hangs; restarted on the same config and
//!   ports it unseals itself (`seal "static"`) and traffic resumes;
//! * a private PostgreSQL stopped and started under load: 5xx meanwhile, the
//!   pools reconnect;
//! * the audit device's file gone (its directory removed) or its disk full
//!   (`/dev/full`): requests fail closed and nothing refused is stored, and
//!   service resumes once the file can be written again (SIGHUP reopens);
//! * `sys/seal` with requests in flight: 503 `Vault is sealed`, no 500;
//! * a stopped service (SIGSTOP): the gateway's per-call deadline
//!   (`default_max_request_duration`) answers each request 504 in bounded
//!   time, nothing piles up, and SIGCONT resumes traffic.
//!
//! A failure is checked as it happens: Vault's shape (`{"errors":[…]}`,
//! 5xx), and a bounded latency. Writes not acknowledged are checked too:
//! each is either absent or stored whole (never half-written).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_dynamic_db::testing::PrivatePg;
use bulwark_e2e::{Cluster, Layout, Options, Proc, Store, TestPg};
use serde_json::{json, Value};

/// No answer may take longer than this (a hang would).
const MAX_LATENCY: Duration = Duration::from_secs(10);

/// How long each killed process stays dead.
const DEAD_FOR: Duration = Duration::from_millis(1500);

/// The client gives up here: well past [`MAX_LATENCY`], so a hang is seen
/// as a slow answer rather than waited for forever.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The value written at `key`: derived from the key, so a read proves the
/// write it belongs to.
fn value_of(key: &str) -> String {
    format!("value-of:{key}:{}", key.len() * 7919)
}

/// One HTTP answer as the fault tests see it; `status` 0 means no answer
/// (the connection failed).
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    error: String,
    took: Duration,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A 5xx in Vault's shape: `{"errors": [strings…]}`, at least one.
    fn vault_5xx(&self) -> bool {
        (500..600).contains(&self.status)
            && self.body["errors"]
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
    }

    fn errors(&self) -> String {
        self.body["errors"].to_string()
    }
}

/// A Vault API client that reports connection failures instead of
/// panicking, and times every request.
#[derive(Clone)]
struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    fn new(base: &str, token: &str) -> Client {
        Client {
            base: base.to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        let start = Instant::now();
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.base))
            .header("X-Vault-Token", &self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.unwrap_or_default();
                Answer {
                    status,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    error: String::new(),
                    took: start.elapsed(),
                }
            }
            Err(e) => Answer {
                status: 0,
                body: Value::Null,
                error: e.to_string(),
                took: start.elapsed(),
            },
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(&body)).await
    }

    /// Writes `key` (below `secret/`) with its derived value.
    async fn write(&self, key: &str) -> Answer {
        self.put(
            &format!("secret/data/{key}"),
            json!({"data": {"v": value_of(key)}}),
        )
        .await
    }

    /// Retries `f` until it answers `code`; panics with the last answer
    /// after `within`.
    async fn until(
        &self,
        what: &str,
        within: Duration,
        code: u16,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let deadline = Instant::now() + within;
        loop {
            let method = if body.is_some() {
                reqwest::Method::PUT
            } else {
                reqwest::Method::GET
            };
            let a = self.send(method, path, body.as_ref()).await;
            if a.status == code {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no {code} within {within:?}: {} {} {}",
                a.status,
                a.body,
                a.error
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A failed write, remembered with the fault in force when it happened.
#[derive(Debug)]
struct Failure {
    phase: String,
    key: String,
    answer: Answer,
}

/// What the writers saw.
#[derive(Default)]
struct Ledger {
    acked: Vec<String>,
    unacked: Vec<String>,
    failures: Vec<Failure>,
    slowest: Duration,
}

/// Writers: `writers` tasks each writing `load/<writer>/<n>` back to back
/// (pausing briefly after a failure), recording every outcome.
struct Load {
    ledger: Arc<Mutex<Ledger>>,
    phase: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client, writers: usize) -> Load {
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        let phase = Arc::new(Mutex::new("steady".to_string()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..writers)
            .map(|w| {
                let (client, ledger, phase, stop) =
                    (client.clone(), ledger.clone(), phase.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("load/{w}/{n}");
                        n += 1;
                        let a = client.write(&key).await;
                        let failed = !a.ok();
                        {
                            let mut l = ledger.lock().unwrap();
                            l.slowest = l.slowest.max(a.took);
                            if a.ok() {
                                l.acked.push(key);
                            } else {
                                let phase = phase.lock().unwrap().clone();
                                l.unacked.push(key.clone());
                                l.failures.push(Failure {
                                    phase,
                                    key,
                                    answer: a,
                                });
                            }
                        }
                        if failed {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            ledger,
            phase,
            stop,
            tasks,
        }
    }

    fn set_phase(&self, p: &str) {
        *self.phase.lock().unwrap() = p.to_string();
    }

    fn acked(&self) -> usize {
        self.ledger.lock().unwrap().acked.len()
    }

    /// Waits until `more` further writes are acknowledged (traffic flows).
    async fn flowing(&self, more: usize, within: Duration, what: &str) {
        let start = self.acked();
        let deadline = Instant::now() + within;
        while self.acked() < start + more {
            assert!(
                Instant::now() < deadline,
                "{what}: writes did not resume within {within:?} ({} acked)",
                self.acked() - start
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(mut self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            t.await.expect("writer task");
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

/// Every failure seen by the writers is a Vault-shaped 5xx (or, during a
/// phase in `no_answer_ok`, no answer at all); none took too long.
fn check_failures(ledger: &Ledger, no_answer_ok: &[&str], max: Duration) {
    let mut by_phase: BTreeMap<&str, BTreeMap<(u16, String), usize>> = BTreeMap::new();
    for f in &ledger.failures {
        let what = if f.answer.status == 0 {
            "no connection".to_string()
        } else {
            f.answer.errors()
        };
        *by_phase
            .entry(&f.phase)
            .or_default()
            .entry((f.answer.status, what))
            .or_default() += 1;
        let allowed = f.answer.vault_5xx()
            || (f.answer.status == 0 && no_answer_ok.contains(&f.phase.as_str()));
        assert!(
            allowed,
            "[{}] {}: not a Vault-shaped 5xx: {} {} {}",
            f.phase, f.key, f.answer.status, f.answer.body, f.answer.error
        );
        assert!(
            f.answer.took < max,
            "[{}] {}: answered after {:?}",
            f.phase,
            f.key,
            f.answer.took
        );
    }
    println!("failed writes by fault and answer:");
    for (phase, answers) in &by_phase {
        for ((status, errors), n) in answers {
            println!("  {phase:>18}: {n:>5} × {status} {errors}");
        }
    }
    println!("slowest answer {:?}", ledger.slowest);
    assert!(ledger.slowest < max, "an answer took {:?}", ledger.slowest);
}

/// Reads every acknowledged key back (its exact value) and every
/// unacknowledged one (absent, or whole): returns how many acknowledged
/// writes are readable.
async fn verify(root: &Client, ledger: &Ledger) -> usize {
    async fn read_all(root: &Client, keys: &[String]) -> Vec<(String, Answer)> {
        let chunks: Vec<Vec<String>> = keys
            .chunks(keys.len().div_ceil(8).max(1))
            .map(<[String]>::to_vec)
            .collect();
        let mut tasks = Vec::new();
        for chunk in chunks {
            let root = root.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::with_capacity(chunk.len());
                for key in chunk {
                    let a = root.get(&format!("secret/data/{key}")).await;
                    out.push((key, a));
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("reader task"));
        }
        all
    }
    let mut readable = 0;
    for (key, a) in read_all(root, &ledger.acked).await {
        if a.status == 200 && a.body["data"]["data"]["v"] == value_of(&key) {
            readable += 1;
        } else {
            println!("acknowledged {key} not readable: {} {}", a.status, a.body);
        }
    }
    let mut absent = 0;
    for (key, a) in read_all(root, &ledger.unacked).await {
        match a.status {
            404 => absent += 1,
            200 => assert_eq!(
                a.body["data"]["data"],
                json!({"v": value_of(&key)}),
                "{key}: a write not acknowledged is stored, but not whole"
            ),
            other => panic!("{key}: read back {other}: {}", a.body),
        }
    }
    println!(
        "not acknowledged {}: {absent} absent, {} stored whole",
        ledger.unacked.len(),
        ledger.unacked.len() - absent
    );
    readable
}

/// `seal "static"`: a (re)started seal process unseals itself.
fn static_seal(dir: &Path) -> String {
    let key = dir.join("seal.key");
    std::fs::write(&key, "3c".repeat(32)).expect("seal key");
    format!(
        "seal \"static\" {{\n  current_key_id = \"faults-1\"\n  current_key = \"file://{}\"\n}}\n",
        key.display()
    )
}

/// Initializes (recovery keys under an auto seal, else one unseal key,
/// unsealed), mounts kv v2 at `secret/`, and makes a token limited to
/// `secret/data/load/*`, `secret/data/probe/*` (policy `loader`).
/// Returns (root token, loader token, unseal key if Shamir).
async fn prepare(base: &str, auto: bool) -> (String, String, Option<String>) {
    let anon = Client::new(base, "");
    let init = if auto {
        json!({"recovery_shares": 1, "recovery_threshold": 1})
    } else {
        json!({"secret_shares": 1, "secret_threshold": 1})
    };
    let r = anon.put("sys/init", init).await;
    assert_eq!(r.status, 200, "init: {}", r.body);
    let root_token = r.body["root_token"].as_str().expect("root").to_string();
    let key = if auto {
        None
    } else {
        let k = r.body["keys"][0].as_str().expect("key").to_string();
        let r = anon.put("sys/unseal", json!({ "key": k })).await;
        assert_eq!(r.body["sealed"], false, "unseal: {}", r.body);
        Some(k)
    };
    let root = Client::new(base, &root_token);
    let within = Duration::from_secs(30);
    root.until(
        "mount secret/",
        within,
        204,
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    let policy = "path \"secret/data/load/*\" { capabilities = [\"create\", \"update\", \"read\"] }\n\
                  path \"secret/data/probe/*\" { capabilities = [\"create\", \"update\", \"read\"] }\n";
    root.until(
        "policy loader",
        within,
        204,
        "sys/policies/acl/loader",
        Some(json!({ "policy": policy })),
    )
    .await;
    let r = root
        .until(
            "loader token",
            within,
            200,
            "auth/token/create",
            Some(json!({"policies": ["loader"], "ttl": "1h"})),
        )
        .await;
    let loader = r.body["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string();
    (root_token, loader, key)
}

/// Enables a file audit device at `path` (so every request needs the
/// audit service).
async fn enable_audit(root: &Client, path: &Path) {
    root.until(
        "audit device",
        Duration::from_secs(30),
        204,
        "sys/audit/file",
        Some(json!({"type": "file", "options": {"file_path": path.display().to_string()}})),
    )
    .await;
}

/// Starts `name` again in a cluster of separate processes: same config,
/// same ports (the old output kept as `<name>.out.<n>`).
fn restart(c: &mut Cluster, name: &str, round: usize) {
    let dir = c.dir.path().to_path_buf();
    for ext in ["out", "err"] {
        let _ = std::fs::rename(
            dir.join(format!("{name}.{ext}")),
            dir.join(format!("{name}.{ext}.{round}")),
        );
    }
    let cfg = c.config_path().display().to_string();
    let target = format!("--target={name}");
    let p = Proc::start(&dir, name, &["server", "-config", &cfg, &target]);
    let i = c
        .procs
        .iter()
        .position(|p| p.name == name)
        .expect("process");
    c.procs[i] = p;
}

fn proc_mut<'a>(c: &'a mut Cluster, name: &str) -> &'a mut Proc {
    c.procs
        .iter_mut()
        .find(|p| p.name == name)
        .expect("process")
}

/// kill -9 of each service in turn, then of the gateway, under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_each_service_under_load_loses_nothing() {
    let t0 = Instant::now();
    let pg = TestPg::new().await;
    let seal_dir = tempfile::tempdir().expect("temp dir");
    let mut c = Cluster::start_with(
        Layout::Separate,
        Store::Postgres(pg.url.clone()),
        Options {
            extra_config: static_seal(seal_dir.path()),
            ..Options::default()
        },
    );
    println!("cluster of separate processes up in {:?}", t0.elapsed());
    let (root_token, loader, _) = prepare(&c.http, true).await;
    let root = Client::new(&c.http, &root_token);
    enable_audit(&root, &c.dir.path().join("audit.log")).await;
    let client = Client::new(&c.http, &loader);
    let probe = Client::new(&c.http, &loader);
    let load = Load::start(&client, 4);
    load.flowing(20, Duration::from_secs(20), "steady").await;

    let mut probes_acked = Vec::new();
    let mut probes_unacked = Vec::new();
    for (round, name) in ["kv", "auth", "policy", "audit", "seal", "gateway"]
        .into_iter()
        .enumerate()
    {
        let before = load.acked();
        load.set_phase(name);
        let killed = Instant::now();
        proc_mut(&mut c, name).kill();
        // While it is dead: refused in Vault's shape (the gateway: no
        // connection), quickly. Caches may serve a first request or two
        // until the broken stream is noticed, so wait for the first refusal.
        let mut refusals = 0;
        let mut last = None;
        let mut i = 0;
        while refusals < 5 || killed.elapsed() < DEAD_FOR {
            let key = format!("probe/{name}/{i}");
            i += 1;
            let a = probe.write(&key).await;
            assert!(
                a.took < MAX_LATENCY,
                "{name} dead: a request took {:?}",
                a.took
            );
            if a.ok() {
                probes_acked.push(key);
                assert!(
                    refusals == 0 && killed.elapsed() < Duration::from_secs(5),
                    "{name} dead: a write was acknowledged {:?} after the kill, after {refusals} refusals",
                    killed.elapsed()
                );
            } else {
                probes_unacked.push(key);
                if name == "gateway" {
                    assert_eq!(a.status, 0, "gateway dead: {} {}", a.status, a.body);
                } else {
                    assert!(
                        a.vault_5xx(),
                        "{name} dead: {} {} {}",
                        a.status,
                        a.body,
                        a.error
                    );
                }
                refusals += 1;
                last = Some(a);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let last = last.expect("a refusal");
        let dead_for = killed.elapsed();
        let restarted = Instant::now();
        tokio::task::block_in_place(|| restart(&mut c, name, round));
        let up_in = restarted.elapsed();
        // Resumes: the probe goes through, and so do the writers.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let key = format!("probe/{name}/{i}");
            i += 1;
            let a = probe.write(&key).await;
            if a.ok() {
                probes_acked.push(key);
                break;
            }
            probes_unacked.push(key);
            assert!(
                Instant::now() < deadline,
                "{name} restarted: writes still refused: {} {} {}",
                a.status,
                a.body,
                a.error
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let resumed_in = restarted.elapsed();
        load.flowing(40, Duration::from_secs(20), name).await;
        load.set_phase(&format!("{name} restarted"));
        println!(
            "{name}: killed, refused {refusals} probes (last {} {}{} in {:?}) over {dead_for:?}; \
             process up in {up_in:?}, writes resumed {resumed_in:?} after the restart; acked +{}",
            last.status,
            last.errors(),
            last.error,
            last.took,
            load.acked() - before
        );
    }
    load.set_phase("end");
    let mut ledger = load.finish().await;
    check_failures(&ledger, &["gateway"], MAX_LATENCY);
    ledger.acked.extend(probes_acked);
    ledger.unacked.extend(probes_unacked);
    let readable = verify(&root, &ledger).await;
    println!("acked {}, readable {readable}", ledger.acked.len());
    assert_eq!(readable, ledger.acked.len());
    println!("kill test took {:?}", t0.elapsed());
}
