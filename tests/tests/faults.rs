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

    /// Sends `body` to `path` (PUT; GET without a body) until it answers
    /// `code` (services converge after a start); panics with the last
    /// answer after `within`.
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

/// Prints `acked N, readable N` past the test harness's output capture, so
/// the counts show in CI's log (`cargo test` hides what passing tests print).
fn report(ledger: &Ledger, readable: usize) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("faults")
        .to_string();
    let line = format!(
        "{test}: acked {}, readable {readable}\n",
        ledger.acked.len()
    );
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
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
        // until the broken stream is noticed.
        let gateway = name == "gateway";
        let (acked, refused, last) = refused_while(&probe, name, DEAD_FOR, 5, |a| {
            if gateway {
                a.status == 0
            } else {
                a.vault_5xx()
            }
        })
        .await;
        let refusals = refused.len();
        probes_acked.extend(acked);
        probes_unacked.extend(refused);
        let dead_for = killed.elapsed();
        let restarted = Instant::now();
        tokio::task::block_in_place(|| restart(&mut c, name, round));
        let up_in = restarted.elapsed();
        // Resumes: the probe goes through, and so do the writers.
        let (key, refused) = resumed(&probe, name).await;
        probes_acked.push(key);
        probes_unacked.extend(refused);
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
    report(&ledger, readable);
    assert_eq!(readable, ledger.acked.len());
    println!("kill test took {:?}", t0.elapsed());
}

/// Sends probe writes for at least `for_at_least` (and at least
/// `min_refusals` are refused): the
/// first may still pass (until the fault is noticed), then every one must
/// be refused, and `check` each refusal. Returns (acknowledged keys,
/// refused keys, the last refusal).
async fn refused_while(
    probe: &Client,
    what: &str,
    for_at_least: Duration,
    min_refusals: usize,
    check: impl Fn(&Answer) -> bool,
) -> (Vec<String>, Vec<String>, Answer) {
    let start = Instant::now();
    let (mut acked, mut refused, mut last) = (Vec::new(), Vec::new(), None);
    let mut i = 0;
    while refused.len() < min_refusals || start.elapsed() < for_at_least {
        let key = format!("probe/{}/{i}", what.replace(' ', "-"));
        i += 1;
        let a = probe.write(&key).await;
        assert!(a.took < MAX_LATENCY, "{what}: a request took {:?}", a.took);
        if a.ok() {
            assert!(
                refused.is_empty() && start.elapsed() < Duration::from_secs(5),
                "{what}: a write was acknowledged {:?} into the fault, after {} refusals",
                start.elapsed(),
                refused.len()
            );
            acked.push(key);
        } else {
            assert!(check(&a), "{what}: {} {} {}", a.status, a.body, a.error);
            refused.push(key);
            last = Some(a);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (acked, refused, last.expect("a refusal"))
}

/// Probe writes until one is acknowledged (within 30 s). Returns (that
/// key, the keys refused meanwhile).
async fn resumed(probe: &Client, what: &str) -> (String, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = Vec::new();
    for i in 0.. {
        let key = format!("probe/{}-after/{i}", what.replace(' ', "-"));
        let a = probe.write(&key).await;
        if a.ok() {
            return (key, refused);
        }
        refused.push(key);
        assert!(
            Instant::now() < deadline,
            "{what}: writes still refused: {} {} {}",
            a.status,
            a.body,
            a.error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// PostgreSQL (a private cluster) stopped (`pg_ctl stop -m fast`: every
/// session ended) and started again under load, twice. Storage waits for
/// a connection up to its pool's acquire timeout (10 s: a short outage is
/// ridden through); the gateway's per-call deadline (here 3 s) answers 504
/// before that, so nothing waits longer than the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_under_load_loses_nothing() {
    let t0 = Instant::now();
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let seal_dir = tempfile::tempdir().expect("temp dir");
    let c = Cluster::start_with(
        Layout::Separate,
        Store::Postgres(pg.superuser_url()),
        Options {
            extra_config: format!(
                "{}default_max_request_duration = \"3s\"\n",
                static_seal(seal_dir.path())
            ),
            ..Options::default()
        },
    );
    let (root_token, loader, _) = prepare(&c.http, true).await;
    let root = Client::new(&c.http, &root_token);
    let client = Client::new(&c.http, &loader);
    let probe = Client::new(&c.http, &loader);
    let load = Load::start(&client, 4);
    load.flowing(30, Duration::from_secs(20), "steady").await;
    let mut extra_acked = Vec::new();
    let mut extra_unacked = Vec::new();
    for round in 0..2 {
        let before = load.acked();
        load.set_phase("postgres down");
        let stopped = Instant::now();
        tokio::task::block_in_place(|| pg.stop());
        let stop_took = stopped.elapsed();
        let (acked, refused, last) = refused_while(
            &probe,
            "postgres down",
            Duration::from_secs(5),
            1,
            Answer::vault_5xx,
        )
        .await;
        extra_acked.extend(acked);
        let n_refused = refused.len();
        extra_unacked.extend(refused);
        let down_for = stopped.elapsed();
        let started = Instant::now();
        tokio::task::block_in_place(|| pg.start_again());
        load.set_phase("postgres back");
        let (key, refused) = resumed(&probe, "postgres back").await;
        extra_acked.push(key);
        extra_unacked.extend(refused);
        let resumed_in = started.elapsed();
        load.flowing(40, Duration::from_secs(20), "postgres back")
            .await;
        println!(
            "round {round}: postgres stopped (pg_ctl took {stop_took:?}), refused {n_refused} probes \
             (last {} {} in {:?}) over {down_for:?}; writes resumed {resumed_in:?} after the start; acked +{}",
            last.status,
            last.errors(),
            last.took,
            load.acked() - before
        );
    }
    let mut ledger = load.finish().await;
    check_failures(&ledger, &[], MAX_LATENCY);
    ledger.acked.extend(extra_acked);
    ledger.unacked.extend(extra_unacked);
    let readable = verify(&root, &ledger).await;
    report(&ledger, readable);
    assert_eq!(readable, ledger.acked.len());
    println!("postgres test took {:?}", t0.elapsed());
}

/// Number of complete JSON lines in an audit log.
fn audit_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .count()
}

/// The only audit device cannot write (its directory removed, then its
/// disk full): fail closed, nothing refused is stored; restored and
/// reopened (SIGHUP), requests succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_device_failure_fails_closed_and_recovers() {
    let t0 = Instant::now();
    let pg = TestPg::new().await;
    let c = Cluster::start(Layout::Separate, Store::Postgres(pg.url.clone()));
    let (root_token, loader, _) = prepare(&c.http, false).await;
    let root = Client::new(&c.http, &root_token);
    let logs = c.dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let log = logs.join("audit.log");
    enable_audit(&root, &log).await;
    let audit = c
        .procs
        .iter()
        .find(|p| p.name == "audit")
        .expect("audit process");
    let client = Client::new(&c.http, &loader);
    let probe = Client::new(&c.http, &loader);
    let load = Load::start(&client, 4);
    load.flowing(30, Duration::from_secs(20), "steady").await;
    let mut extra_acked = Vec::new();
    let mut must_be_absent = Vec::new();
    for fault in ["file removed", "disk full"] {
        let before = load.acked();
        load.set_phase(fault);
        match fault {
            // The open file would still take writes: removing its
            // directory bites at the reopen.
            "file removed" => std::fs::remove_dir_all(&logs).expect("remove log dir"),
            // Every write to /dev/full fails with ENOSPC, root or not.
            _ => {
                std::fs::remove_file(&log).expect("remove log");
                std::os::unix::fs::symlink("/dev/full", &log).expect("symlink");
            }
        }
        audit.signal("HUP");
        let (acked, refused, last) = refused_while(&probe, fault, Duration::from_secs(1), 5, |a| {
            a.status == 500 && a.vault_5xx()
        })
        .await;
        extra_acked.extend(acked);
        // The first refusal may have straddled the reopen: its request entry
        // went to the old file, so it was acted on, and its response entry
        // failed (a 500 after the fact, as in Vault). Every later probe was
        // sent after that failure, so it was refused at its request entry:
        // never acted on.
        let n_refused = refused.len();
        must_be_absent.extend(refused.into_iter().skip(1));
        // Reads fail closed too.
        let r = root.get("secret/data/load/0/0").await;
        assert!(
            r.status == 500 && r.vault_5xx(),
            "{fault}: read {} {}",
            r.status,
            r.body
        );
        // Mend and reopen.
        match fault {
            "file removed" => std::fs::create_dir_all(&logs).expect("log dir"),
            _ => std::fs::remove_file(&log).expect("remove symlink"),
        }
        audit.signal("HUP");
        load.set_phase(&format!("{fault}, mended"));
        let (key, refused) = resumed(&probe, fault).await;
        extra_acked.push(key);
        load.flowing(40, Duration::from_secs(20), fault).await;
        // Refused while the reopen was pending: nothing done either.
        must_be_absent.extend(refused);
        let recorded = audit_lines(&log);
        assert!(recorded > 0, "{fault}: the mended device records again");
        println!(
            "{fault}: refused {n_refused} probes (last {} {}), resumed; {recorded} entries in the new file; acked +{}",
            last.status,
            last.errors(),
            load.acked() - before
        );
    }
    let mut ledger = load.finish().await;
    check_failures(&ledger, &[], MAX_LATENCY);
    for key in &must_be_absent {
        let r = root.get(&format!("secret/data/{key}")).await;
        assert_eq!(
            r.status, 404,
            "{key}: refused by audit, yet stored: {}",
            r.body
        );
    }
    println!(
        "{} writes refused by audit: none stored",
        must_be_absent.len()
    );
    ledger.acked.extend(extra_acked);
    let readable = verify(&root, &ledger).await;
    report(&ledger, readable);
    assert_eq!(readable, ledger.acked.len());
    println!("audit test took {:?}", t0.elapsed());
}

/// `sys/seal` while writes are in flight, three times: every refusal is
/// 503 `Vault is sealed`, nothing hangs, and unsealing resumes traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_with_requests_in_flight() {
    let t0 = Instant::now();
    let pg = TestPg::new().await;
    let c = Cluster::start(Layout::Separate, Store::Postgres(pg.url.clone()));
    let (root_token, loader, key) = prepare(&c.http, false).await;
    let key = key.expect("an unseal key");
    let root = Client::new(&c.http, &root_token);
    // Every request then passes the audit service too, which learns of the
    // seal on its own stream.
    enable_audit(&root, &c.dir.path().join("audit.log")).await;
    let anon = Client::new(&c.http, "");
    let client = Client::new(&c.http, &loader);
    let probe = Client::new(&c.http, &loader);
    let load = Load::start(&client, 6);
    load.flowing(30, Duration::from_secs(20), "steady").await;
    let mut extra_acked = Vec::new();
    let mut extra_unacked = Vec::new();
    let sealed_503 = |a: &Answer| a.status == 503 && a.errors().contains("Vault is sealed");
    for round in 0..3 {
        let before = load.acked();
        load.set_phase("sealed");
        let r = root.put("sys/seal", json!({})).await;
        assert_eq!(r.status, 204, "seal: {}", r.body);
        let (acked, refused, _) =
            refused_while(&probe, "sealed", Duration::from_secs(1), 5, sealed_503).await;
        extra_acked.extend(acked);
        let n_refused = refused.len();
        extra_unacked.extend(refused);
        let r = anon.put("sys/unseal", json!({ "key": key })).await;
        assert_eq!(r.body["sealed"], false, "unseal: {}", r.body);
        load.set_phase("unsealed");
        let unsealed = Instant::now();
        let (k, refused) = resumed(&probe, "unsealed").await;
        extra_acked.push(k);
        extra_unacked.extend(refused);
        load.flowing(40, Duration::from_secs(20), "unsealed").await;
        println!(
            "round {round}: sealed, refused {n_refused} probes; writes resumed {:?} after the unseal; acked +{}",
            unsealed.elapsed(),
            load.acked() - before
        );
    }
    let mut ledger = load.finish().await;
    check_failures(&ledger, &[], MAX_LATENCY);
    // Sealing is no crash: in flight or after, a refusal is the sealed 503.
    for f in &ledger.failures {
        assert!(
            sealed_503(&f.answer),
            "[{}] {}: {} {}",
            f.phase,
            f.key,
            f.answer.status,
            f.answer.body
        );
    }
    ledger.acked.extend(extra_acked);
    ledger.unacked.extend(extra_unacked);
    let readable = verify(&root, &ledger).await;
    report(&ledger, readable);
    assert_eq!(readable, ledger.acked.len());
    println!("seal test took {:?}", t0.elapsed());
}

/// The per-call deadline configured for the test.
const DEADLINE: Duration = Duration::from_secs(2);

/// What a refused request may take beyond the deadline (the other hops of
/// the request, a loaded machine).
const DEADLINE_SLACK: Duration = Duration::from_secs(4);

/// A stopped kv process (SIGSTOP: connections open, nothing answered):
/// every request needing it is answered 504 within the gateway's per-call
/// deadline, a burst of 200 does not pile up, other routes keep answering,
/// and SIGCONT resumes traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopped_service_answers_within_the_deadline() {
    let t0 = Instant::now();
    let pg = TestPg::new().await;
    let c = Cluster::start_with(
        Layout::Separate,
        Store::Postgres(pg.url.clone()),
        Options {
            extra_config: format!(
                "default_max_request_duration = \"{}s\"\n",
                DEADLINE.as_secs()
            ),
            ..Options::default()
        },
    );
    let (root_token, loader, _) = prepare(&c.http, false).await;
    let root = Client::new(&c.http, &root_token);
    let client = Client::new(&c.http, &loader);
    let load = Load::start(&client, 4);
    load.flowing(30, Duration::from_secs(20), "steady").await;
    let kv = c.procs.iter().find(|p| p.name == "kv").expect("kv process");

    load.set_phase("kv stopped");
    kv.signal("STOP");
    let stopped = Instant::now();
    let burst = Client::new(&c.http, &loader);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let burst = burst.clone();
            tokio::spawn(async move {
                let key = format!("probe/burst/{i}");
                (burst.write(&key).await, key)
            })
        })
        .collect();
    // Meanwhile a route that does not need kv answers at once.
    let other = client.get("auth/token/lookup-self").await;
    assert_eq!(other.status, 200, "lookup-self: {}", other.body);
    assert!(
        other.took < DEADLINE,
        "lookup-self queued behind the stopped service: {:?}",
        other.took
    );
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("burst task"));
    }
    let burst_took = stopped.elapsed();
    let mut slowest = Duration::ZERO;
    let mut burst_keys = Vec::new();
    for (a, key) in &answers {
        assert!(
            a.status == 504 && a.vault_5xx(),
            "{key} while kv is stopped: {} {} {}",
            a.status,
            a.body,
            a.error
        );
        assert!(
            a.took >= DEADLINE - Duration::from_millis(100) && a.took < DEADLINE + DEADLINE_SLACK,
            "{key}: answered after {:?} (deadline {DEADLINE:?})",
            a.took
        );
        slowest = slowest.max(a.took);
        burst_keys.push(key.clone());
    }
    assert!(
        burst_took < DEADLINE + DEADLINE_SLACK,
        "200 requests took {burst_took:?} in all"
    );
    // Still stopped, still bounded: no queue built up behind the burst.
    let a = client.write("probe/after-burst/0").await;
    assert!(
        a.status == 504 && a.took < DEADLINE + DEADLINE_SLACK,
        "{} {:?}",
        a.status,
        a.took
    );
    burst_keys.push("probe/after-burst/0".into());
    let other_took = other.took;
    println!(
        "kv stopped: 200 concurrent writes all answered 504 {} (slowest {slowest:?}, all within {burst_took:?}); \
         lookup-self meanwhile 200 in {other_took:?}",
        answers[0].0.errors()
    );

    kv.signal("CONT");
    load.set_phase("kv resumed");
    let resumed_at = Instant::now();
    let (key, refused) = resumed(&client, "kv resumed").await;
    load.flowing(40, Duration::from_secs(20), "kv resumed")
        .await;
    println!(
        "kv resumed: writes acknowledged again after {:?}",
        resumed_at.elapsed()
    );
    let mut ledger = load.finish().await;
    check_failures(&ledger, &[], DEADLINE + DEADLINE_SLACK);
    ledger.acked.push(key);
    ledger.unacked.extend(refused);
    ledger.unacked.extend(burst_keys);
    let readable = verify(&root, &ledger).await;
    report(&ledger, readable);
    assert_eq!(readable, ledger.acked.len());
    println!("deadline test took {:?}", t0.elapsed());
}
