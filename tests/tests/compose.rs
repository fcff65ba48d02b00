//! `compose/` kept honest: every Bulwark service of compose/docker-compose.yml
//! runs as a local process — its `command`, `environment` and mounted config
//! files, with each compose hostname mapped to a loopback address of its own
//! (Linux routes all of 127/8), container paths mapped to temp directories and
//! the machine's PostgreSQL (fresh databases) in place of the postgres
//! container — and then compose/README.md's walkthrough runs against it,
//! command by command, through the `bulwark` CLI. Jaeger is replaced by an
//! OTLP collector at its address, Prometheus by scraping its targets.
//!
//! A compose file, config or README step that the binary does not accept
//! fails here, naming the service, the feature and the binary's own words.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_e2e::otlp::Collector;
use bulwark_e2e::{bulwark_bin, TestPg};
use bulwark_shared::storage::test_util::pg_admin_url;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use serde_norway::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

const COMPOSE_FILE: &str = "compose/docker-compose.yml";
const BEGIN: &str = "<!-- compose-test: begin -->";
const END: &str = "<!-- compose-test: end -->";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------
// The compose file.

#[derive(Debug, Clone, Default)]
struct Service {
    name: String,
    image: Option<String>,
    build: bool,
    entrypoint: Vec<String>,
    command: Vec<String>,
    environment: Vec<(String, String)>,
    /// (source, container path): `./x` relative to compose/, or a volume name.
    volumes: Vec<(String, String)>,
    secrets: Vec<String>,
    /// (host port, container port).
    ports: Vec<(u16, u16)>,
    depends_on: Vec<String>,
    healthcheck: Vec<String>,
    restart: Option<String>,
    cap_add: Vec<String>,
}

struct Compose {
    services: Vec<Service>,
    /// Secret name → file (relative to compose/).
    secrets: BTreeMap<String, String>,
    volumes: BTreeSet<String>,
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("{COMPOSE_FILE}: expected a scalar, got {other:?}"),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Sequence(s)) => s.iter().map(scalar).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(other) => panic!("{COMPOSE_FILE}: expected a list, got {other:?}"),
    }
}

impl Compose {
    fn parse(text: &str) -> Compose {
        let mut doc: Value = serde_norway::from_str(text)
            .unwrap_or_else(|e| panic!("{COMPOSE_FILE} is not YAML: {e}"));
        // Merge keys (`<<: *bulwark`), also merges of anchors that merge.
        for _ in 0..4 {
            doc.apply_merge()
                .unwrap_or_else(|e| panic!("{COMPOSE_FILE}: merge keys: {e}"));
        }
        let services = doc["services"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{COMPOSE_FILE}: no services"))
            .iter()
            .map(|(k, v)| Service::parse(&scalar(k), v))
            .collect();
        let secrets = doc
            .get("secrets")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let file = v.get("file").map(scalar).unwrap_or_else(|| {
                            panic!("{COMPOSE_FILE}: secret {k:?} is not a file secret")
                        });
                        (scalar(k), file)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let volumes = doc
            .get("volumes")
            .and_then(Value::as_mapping)
            .map(|m| m.keys().map(scalar).collect())
            .unwrap_or_default();
        Compose {
            services,
            secrets,
            volumes,
        }
    }

    fn service(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{COMPOSE_FILE} has no service {name:?}"))
    }

    /// The image that compose builds from compose/Dockerfile.
    fn bulwark_image(&self) -> String {
        let built: Vec<&Service> = self.services.iter().filter(|s| s.build).collect();
        assert_eq!(
            built.len(),
            1,
            "{COMPOSE_FILE}: exactly one service builds the bulwark image (the others name it)"
        );
        built[0]
            .image
            .clone()
            .expect("the building service names its image")
    }

    /// Services running the bulwark image.
    fn bulwark(&self) -> Vec<&Service> {
        let image = self.bulwark_image();
        self.services
            .iter()
            .filter(|s| s.image.as_deref() == Some(image.as_str()))
            .collect()
    }

    /// Long-running bulwark services (`server`), in start order: compose's
    /// order, dependencies first.
    fn servers(&self) -> Vec<&Service> {
        let servers: Vec<&Service> = self
            .bulwark()
            .into_iter()
            .filter(|s| s.command.first().map(String::as_str) == Some("server"))
            .collect();
        let names: BTreeSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        let mut done: Vec<&Service> = Vec::new();
        while done.len() < servers.len() {
            let before = done.len();
            for s in &servers {
                if done.iter().any(|d| d.name == s.name) {
                    continue;
                }
                let ready = s
                    .depends_on
                    .iter()
                    .filter(|d| names.contains(d.as_str()))
                    .all(|d| done.iter().any(|x| &x.name == d));
                if ready {
                    done.push(s);
                }
            }
            assert!(
                done.len() > before,
                "{COMPOSE_FILE}: depends_on has a cycle"
            );
        }
        done
    }

    /// The one-shot `bulwark certs` service.
    fn certs(&self) -> &Service {
        let c: Vec<&Service> = self
            .bulwark()
            .into_iter()
            .filter(|s| s.command.first().map(String::as_str) == Some("certs"))
            .collect();
        assert_eq!(c.len(), 1, "{COMPOSE_FILE}: one `certs` step");
        c[0]
    }

    fn postgres(&self) -> &Service {
        self.services
            .iter()
            .find(|s| {
                s.image
                    .as_deref()
                    .is_some_and(|i| i.starts_with("postgres"))
            })
            .unwrap_or_else(|| panic!("{COMPOSE_FILE}: no postgres service"))
    }
}

impl Service {
    fn parse(name: &str, v: &Value) -> Service {
        let environment = match v.get("environment") {
            None | Some(Value::Null) => vec![],
            Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
            Some(Value::Sequence(s)) => s
                .iter()
                .map(|e| {
                    let e = scalar(e);
                    let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            Some(other) => panic!("{name}: environment {other:?}"),
        };
        let volumes = match v.get("volumes") {
            None | Some(Value::Null) => vec![],
            Some(Value::Sequence(s)) => s
                .iter()
                .map(|m| match m {
                    Value::String(s) => {
                        let mut parts = s.split(':');
                        let src = parts.next().unwrap_or_default().to_string();
                        let dst = parts
                            .next()
                            .unwrap_or_else(|| panic!("{name}: volume {s:?} has no target"))
                            .to_string();
                        (src, dst)
                    }
                    Value::Mapping(_) => (scalar(&m["source"]), scalar(&m["target"])),
                    other => panic!("{name}: volume {other:?}"),
                })
                .collect(),
            Some(other) => panic!("{name}: volumes {other:?}"),
        };
        let secrets = match v.get("secrets") {
            None | Some(Value::Null) => vec![],
            Some(Value::Sequence(s)) => s
                .iter()
                .map(|x| match x {
                    Value::Mapping(_) => {
                        assert!(
                            x.get("target").is_none(),
                            "{name}: secrets with a target are not mapped by this test"
                        );
                        scalar(&x["source"])
                    }
                    other => scalar(other),
                })
                .collect(),
            Some(other) => panic!("{name}: secrets {other:?}"),
        };
        let ports = match v.get("ports") {
            None | Some(Value::Null) => vec![],
            Some(Value::Sequence(s)) => s
                .iter()
                .map(|p| match p {
                    Value::Mapping(_) => (
                        scalar(&p["published"]).parse().expect("published port"),
                        scalar(&p["target"]).parse().expect("target port"),
                    ),
                    other => {
                        let s = scalar(other);
                        let parts: Vec<&str> = s.split(':').collect();
                        let n = parts.len();
                        assert!(n >= 2, "{name}: port {s:?} publishes nothing");
                        (
                            parts[n - 2].parse().expect("host port"),
                            parts[n - 1]
                                .trim_end_matches("/tcp")
                                .parse()
                                .expect("container port"),
                        )
                    }
                })
                .collect(),
            Some(other) => panic!("{name}: ports {other:?}"),
        };
        let depends_on = match v.get("depends_on") {
            None | Some(Value::Null) => vec![],
            Some(Value::Mapping(m)) => m.keys().map(scalar).collect(),
            Some(s @ Value::Sequence(_)) => strings(Some(s)),
            Some(other) => panic!("{name}: depends_on {other:?}"),
        };
        Service {
            name: name.to_string(),
            image: v.get("image").map(scalar),
            build: v.get("build").is_some(),
            entrypoint: strings(v.get("entrypoint")),
            command: strings(v.get("command")),
            environment,
            volumes,
            secrets,
            ports,
            depends_on,
            healthcheck: v
                .get("healthcheck")
                .map(|h| strings(h.get("test")))
                .unwrap_or_default(),
            restart: v.get("restart").map(scalar),
            cap_add: strings(v.get("cap_add")),
        }
    }

    /// `--target=<x>` of a server command.
    fn target(&self) -> Option<String> {
        let mut it = self.command.iter();
        while let Some(a) = it.next() {
            if let Some(t) = a
                .strip_prefix("--target=")
                .or_else(|| a.strip_prefix("-target="))
            {
                return Some(t.to_string());
            }
            if a == "--target" || a == "-target" {
                return it.next().cloned();
            }
        }
        None
    }

    /// The `-config FILE` of a server command.
    fn config_path(&self) -> Option<String> {
        let mut it = self.command.iter();
        while let Some(a) = it.next() {
            if let Some(p) = a
                .strip_prefix("--config=")
                .or_else(|| a.strip_prefix("-config="))
            {
                return Some(p.to_string());
            }
            if a == "--config" || a == "-config" {
                return it.next().cloned();
            }
        }
        None
    }

    /// The URL a `curl` healthcheck asks.
    fn health_url(&self) -> Option<String> {
        if self.healthcheck.is_empty() {
            return None;
        }
        assert!(
            self.healthcheck.iter().any(|w| w == "curl"),
            "{}: healthcheck {:?} is not a curl call this test can run",
            self.name,
            self.healthcheck
        );
        Some(
            self.healthcheck
                .iter()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
                .unwrap_or_else(|| panic!("{}: healthcheck names no URL", self.name))
                .clone(),
        )
    }
}

// ---------------------------------------------------------------------------
// Mapping compose names and paths to this machine.

/// Compose hostnames → loopback addresses, one per service.
fn pick_addresses(compose: &Compose) -> BTreeMap<String, String> {
    let pid = std::process::id();
    for attempt in 0..64u32 {
        let seed = pid.wrapping_add(attempt * 7919);
        let (b, c) = (100 + seed % 150, (seed / 150) % 250 + 1);
        let map: BTreeMap<String, String> = compose
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), format!("127.{b}.{c}.{}", 10 + i)))
            .collect();
        let free = map.values().all(|ip| {
            [8200u16, 9102]
                .iter()
                .all(|p| std::net::TcpListener::bind((ip.as_str(), *p)).is_ok())
        });
        if free {
            return map;
        }
    }
    panic!("no free loopback /24 for the compose services");
}

/// The machine's PostgreSQL in place of the compose one.
struct LocalPg {
    /// `scheme://user@host:port` of the admin URL.
    admin_userinfo: String,
    hostport: String,
    /// Compose database name → local database name.
    dbs: BTreeMap<String, String>,
    /// Compose role → local role.
    roles: BTreeMap<String, String>,
}

impl LocalPg {
    fn new() -> LocalPg {
        let admin = pg_admin_url();
        let rest = admin
            .split_once("://")
            .map(|(_, r)| r)
            .expect("admin URL scheme");
        let (userinfo, hostpath) = rest.rsplit_once('@').expect("admin URL user");
        let hostport = hostpath.split(['/', '?']).next().unwrap_or_default();
        LocalPg {
            admin_userinfo: userinfo.to_string(),
            hostport: hostport.to_string(),
            dbs: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }

    fn db_of(url: &str) -> String {
        url.rsplit_once('/')
            .map(|(_, d)| d.to_string())
            .expect("database in URL")
    }
}

/// Where a string is read: inside a container (its 0.0.0.0, 127.0.0.1 and
/// localhost are the container itself) or on the compose host (published ports).
#[derive(Clone, Copy)]
enum Side<'a> {
    Container(&'a str),
    Host,
}

struct Mapper {
    hosts: BTreeMap<String, String>,
    /// Host port → `ip:container port`.
    published: BTreeMap<u16, String>,
    /// Per service: container path → local path (longest first).
    mounts: BTreeMap<String, Vec<(String, PathBuf)>>,
    pg: LocalPg,
    pg_service: String,
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl Mapper {
    fn rewrite(&self, text: &str, side: Side, service: Option<&str>) -> String {
        let text = self.rewrite_hosts(text, side);
        let text = self.rewrite_pg(&text);
        match service {
            Some(s) => self.rewrite_paths(&text, &self.mounts[s]),
            None => {
                let mut all: Vec<(String, PathBuf)> =
                    self.mounts.values().flatten().cloned().collect();
                all.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
                self.rewrite_paths(&text, &all)
            }
        }
    }

    /// `name:port` → `ip:port` for compose hostnames (but the postgres
    /// service, whose URLs are rewritten whole) and the container's own names.
    fn rewrite_hosts(&self, text: &str, side: Side) -> String {
        let mut out = String::new();
        let mut i = 0;
        let bytes = text.as_bytes();
        'outer: while i < text.len() {
            let boundary = i == 0 || {
                let p = bytes[i - 1] as char;
                !(is_path_char(p) || p == ':')
            };
            if boundary {
                let rest = &text[i..];
                let mut names: Vec<(&str, Option<&str>)> = self
                    .hosts
                    .iter()
                    .filter(|(n, _)| **n != self.pg_service)
                    .map(|(n, ip)| (n.as_str(), Some(ip.as_str())))
                    .collect();
                names.extend(["0.0.0.0", "127.0.0.1", "localhost"].map(|n| (n, None)));
                names.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
                for (name, ip) in names {
                    let Some(after) = rest.strip_prefix(name) else {
                        continue;
                    };
                    let Some(port) = after.strip_prefix(':') else {
                        continue;
                    };
                    let digits: String = port.chars().take_while(char::is_ascii_digit).collect();
                    if digits.is_empty() {
                        continue;
                    }
                    let replaced = match (ip, side) {
                        (Some(ip), _) => format!("{ip}:{digits}"),
                        (None, Side::Container(own)) => format!("{own}:{digits}"),
                        (None, Side::Host) => match digits
                            .parse()
                            .ok()
                            .and_then(|p: u16| self.published.get(&p))
                        {
                            Some(target) => target.clone(),
                            None => format!("{name}:{digits}"),
                        },
                    };
                    out.push_str(&replaced);
                    i += name.len() + 1 + digits.len();
                    continue 'outer;
                }
            }
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
        out
    }

    /// PostgreSQL URLs naming the compose postgres service → the local one.
    fn rewrite_pg(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest
            .find("postgres://")
            .into_iter()
            .chain(rest.find("postgresql://"))
            .min()
        {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| c == '"' || c == '\'' || c.is_whitespace())
                .unwrap_or(tail.len());
            let url = &tail[..end];
            out.push_str(&self.local_pg_url(url).unwrap_or_else(|| url.to_string()));
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    }

    fn local_pg_url(&self, url: &str) -> Option<String> {
        let (scheme, rest) = url.split_once("://")?;
        let (userinfo, hostpath) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (hostport, pathq) = hostpath.split_at(hostpath.find('/').unwrap_or(hostpath.len()));
        let host = hostport.split(':').next().unwrap_or_default();
        if host != self.pg_service {
            return None;
        }
        let pathq = pathq.trim_start_matches('/');
        let (db, query) = pathq.split_at(pathq.find('?').unwrap_or(pathq.len()));
        let local_db = self.pg.dbs.get(db).unwrap_or_else(|| {
            panic!("{url}: database {db:?} of the compose postgres has no local stand-in")
        });
        let userinfo = match userinfo {
            Some(u) if u.contains("{{") => u.to_string(),
            _ => self.pg.admin_userinfo.clone(),
        };
        Some(format!(
            "{scheme}://{userinfo}@{}/{local_db}{query}",
            self.pg.hostport
        ))
    }

    fn rewrite_paths(&self, text: &str, mounts: &[(String, PathBuf)]) -> String {
        let mut out = String::new();
        let mut i = 0;
        'outer: while i < text.len() {
            let before = &text[..i];
            let boundary = i == 0
                || before.ends_with("file://")
                || before
                    .chars()
                    .last()
                    .is_some_and(|p| p.is_whitespace() || matches!(p, '"' | '\'' | '='));
            if boundary {
                for (cpath, local) in mounts {
                    if let Some(after) = text[i..].strip_prefix(cpath.as_str()) {
                        if after
                            .chars()
                            .next()
                            .is_none_or(|c| c == '/' || !is_path_char(c))
                        {
                            out.push_str(local.to_str().expect("utf-8 temp path"));
                            i += cpath.len();
                            continue 'outer;
                        }
                    }
                }
            }
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Processes.

/// One compose service run as a local process; stopped on drop.
struct Running {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config_text: String,
    dir: PathBuf,
    child: Option<Child>,
    runs: u32,
    stderr: PathBuf,
}

impl Running {
    fn start(&mut self) {
        self.runs += 1;
        let out = self.dir.join(format!("{}.{}.out", self.name, self.runs));
        self.stderr = self.dir.join(format!("{}.{}.err", self.name, self.runs));
        let mut cmd = Command::new(bulwark_bin());
        cmd.args(&self.args)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&self.stderr).expect("stderr file"));
        if let Ok(level) = std::env::var("BULWARK_E2E_LOG") {
            cmd.env("RUST_LOG", level);
        }
        let mut child = cmd.spawn().expect("spawn bulwark");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stdout = std::fs::read_to_string(&out).unwrap_or_default();
            if stdout.contains("Bulwark server started") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                panic!(
                    "{}",
                    diagnose_server(&self.name, &self.args, &self.config_text, status, &stderr)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "compose service {} (`bulwark {}`) did not start within 60 s\nstdout:\n{stdout}\nstderr:\n{}",
                    self.name,
                    self.args.join(" "),
                    tail(&std::fs::read_to_string(&self.stderr).unwrap_or_default())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// `docker compose stop`: SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Why a compose service's process exited at start-up, naming the feature
/// of the compose configuration that the binary refuses when it is one of
/// those landing with issue #11.
fn diagnose_server(
    name: &str,
    args: &[String],
    config: &str,
    status: std::process::ExitStatus,
    stderr: &str,
) -> String {
    let mut feature = None;
    let list_in_cluster = config
        .lines()
        .any(|l| l.split('#').next().unwrap_or_default().contains("= ["));
    // serde's "unknown field `x`, expected one of …" and clap's/the
    // binary's "unknown service \"x\"".
    let unknown = ["unknown field `", "unknown service \""]
        .iter()
        .find_map(|p| {
            let rest = &stderr[stderr.find(p)? + p.len()..];
            Some(rest.split(['`', '"']).next().unwrap_or_default())
        })
        .unwrap_or_default();
    if list_in_cluster
        && (stderr.contains("invalid type: sequence") || stderr.contains("expected a string"))
    {
        feature = Some(
            "replica address lists in `cluster` (`auth = [\"auth-a:8302\", \"auth-b:8302\"]`) \
             are not accepted by this binary yet",
        );
    } else if unknown == "transit" {
        feature = Some(
            "the transit service (`cluster { transit = … }`, `--target=transit`) \
             is not in this binary yet",
        );
    } else if unknown == "seal" || stderr.contains("unsupported seal type") {
        feature = Some(
            "the static seal (`seal \"static\" { … }`, auto-unseal) is not in this binary yet",
        );
    }
    let head = match feature {
        Some(f) => {
            format!("MISSING FEATURE: compose service `{name}` cannot run on this binary: {f}.")
        }
        None => format!("compose service `{name}` refused its compose configuration."),
    };
    format!(
        "{head}\n`bulwark {}` exited with {status}; it said:\n{}",
        args.join(" "),
        tail(stderr)
    )
}

// ---------------------------------------------------------------------------
// The README's walkthrough.

/// The shell lines between the test markers, in order, continuation lines
/// joined, comments and blank lines dropped.
fn walkthrough(readme: &str) -> Vec<String> {
    let start = readme
        .find(BEGIN)
        .unwrap_or_else(|| panic!("compose/README.md has no {BEGIN}"));
    let end = readme
        .find(END)
        .unwrap_or_else(|| panic!("compose/README.md has no {END}"));
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme[start..end].lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_block = t == "```sh" || t == "```bash";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head.trim_start());
            continue;
        }
        pending.push_str(line.trim_start());
        let full = std::mem::take(&mut pending);
        if !full.trim().is_empty() && !full.trim_start().starts_with('#') {
            lines.push(full.trim().to_string());
        }
    }
    lines
}

/// POSIX shell word splitting, for the walkthrough's simple commands.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut has_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                has_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&n @ ('"' | '\\' | '$' | '`')) => {
                                cur.push(n);
                                chars.next();
                            }
                            _ => cur.push('\\'),
                        },
                        '$' | '`' => panic!("README line {line:?}: expansions are not supported"),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                has_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '#' if !has_word => break,
            c if c.is_whitespace() => {
                if has_word {
                    words.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            '$' | '`' | '|' | ';' | '&' | '<' | '>' => {
                panic!("README line {line:?}: only simple commands are supported here")
            }
            c => {
                has_word = true;
                cur.push(c);
            }
        }
    }
    if has_word {
        words.push(cur);
    }
    words
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit())
    })
}

struct CliOut {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A value of the CLI's table output (`key   value`).
fn table_value(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next().unwrap_or_default().to_string())
    })
}

// ---------------------------------------------------------------------------

struct Stack {
    rt: tokio::runtime::Runtime,
    compose: Compose,
    map: Mapper,
    tmp: PathBuf,
    procs: BTreeMap<String, Running>,
    env: BTreeMap<String, String>,
    root_token: Option<String>,
    initialized: bool,
    /// A docker step ran: the next command may retry while services settle.
    settling: bool,
    puts: BTreeMap<String, Vec<(String, String)>>,
    creds_user: Option<String>,
    /// Roles to drop at the end, whatever happens (shared with [`PgCleanup`]).
    cleanup_roles: Arc<Mutex<Vec<String>>>,
    /// The last dynamic database credential read (username, password).
    creds: Option<(String, String)>,
    removed: Vec<PathBuf>,
    ran: Vec<String>,
}

impl Stack {
    fn run_certs(&self, args: &[String]) {
        let certs = self.compose.certs();
        let args = self.container_args(certs, args);
        let out = Command::new(bulwark_bin())
            .args(&args)
            .output()
            .expect("run bulwark certs");
        assert!(
            out.status.success(),
            "compose service `{}` (`bulwark {}`) failed: {}\n{}",
            certs.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A service's command line as it runs here: paths and hostnames mapped
    /// (and `-hostname NAME` of the certs step to its address).
    fn container_args(&self, s: &Service, args: &[String]) -> Vec<String> {
        let own = self.map.hosts[&s.name].clone();
        let mut out = Vec::new();
        let mut prev_hostname = false;
        for a in args {
            if prev_hostname {
                out.push(self.map.hosts.get(a).cloned().unwrap_or_else(|| a.clone()));
            } else {
                out.push(self.map.rewrite(a, Side::Container(&own), Some(&s.name)));
            }
            prev_hostname = matches!(a.as_str(), "-hostname" | "--hostname");
        }
        out
    }

    fn prepare(&mut self, s: &Service) -> Running {
        let own = self.map.hosts[&s.name].clone();
        let args = self.container_args(s, &s.command);
        let env: Vec<(String, String)> = s
            .environment
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    self.map.rewrite(v, Side::Container(&own), Some(&s.name)),
                )
            })
            .collect();
        let config_text = args
            .iter()
            .position(|a| a == "-config" || a == "--config")
            .and_then(|i| args.get(i + 1))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        Running {
            name: s.name.clone(),
            args,
            env,
            config_text,
            dir: self.tmp.join("logs"),
            child: None,
            runs: 0,
            stderr: PathBuf::new(),
        }
    }

    fn cli(&self, args: &[String], extra_env: &[(String, String)]) -> CliOut {
        let home = self.tmp.join("home");
        let mut cmd = Command::new(bulwark_bin());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .envs(self.env.iter())
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        let out = cmd.output().expect("run the bulwark CLI");
        CliOut {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    fn docker(&mut self, line: &str, words: &[String]) {
        let mut w = words[2..].iter();
        let mut sub = None;
        while let Some(a) = w.next() {
            if a == "-f" || a == "--file" {
                let f = w.next().expect("-f FILE");
                assert_eq!(
                    f, COMPOSE_FILE,
                    "README: `{line}` names another compose file"
                );
            } else {
                sub = Some(a.clone());
                break;
            }
        }
        let sub = sub.unwrap_or_else(|| panic!("README: `{line}`: no compose command"));
        let rest: Vec<String> = w.cloned().collect();
        match sub.as_str() {
            "stop" | "start" | "restart" => {
                assert!(!rest.is_empty(), "README: `{line}` names no service");
                for name in &rest {
                    let p = self.procs.get_mut(name).unwrap_or_else(|| {
                        panic!("README: `{line}`: {name} is not a bulwark server of {COMPOSE_FILE}")
                    });
                    if sub != "start" {
                        p.stop();
                    }
                    if sub != "stop" {
                        p.start();
                    }
                }
            }
            "run" => {
                let mut it = rest.iter();
                let mut entrypoint = None;
                let mut service = None;
                while let Some(a) = it.next() {
                    match a.as_str() {
                        "--rm" => {}
                        "--entrypoint" => entrypoint = it.next().cloned(),
                        _ => {
                            service = Some(a.clone());
                            break;
                        }
                    }
                }
                let service = service.unwrap_or_else(|| panic!("README: `{line}`: no service"));
                let args: Vec<String> = it.cloned().collect();
                let s = self.compose.service(&service).clone();
                match entrypoint.as_deref() {
                    None | Some("bulwark") => {
                        let args = if args.is_empty() { s.command.clone() } else { args };
                        assert_eq!(
                            s.name,
                            self.compose.certs().name,
                            "README: `{line}`: only the certs step is run with `run`"
                        );
                        self.run_certs(&args);
                        for f in std::mem::take(&mut self.removed) {
                            assert!(f.exists(), "`{line}` did not issue {} again", f.display());
                        }
                    }
                    Some("rm") => {
                        for a in self.container_args(&s, &args) {
                            let p = PathBuf::from(&a);
                            assert!(
                                p.starts_with(&self.tmp),
                                "README: `{line}`: {a} is not inside a mapped volume"
                            );
                            std::fs::remove_file(&p)
                                .unwrap_or_else(|e| panic!("README: `{line}`: rm {a}: {e}"));
                            self.removed.push(p);
                        }
                    }
                    Some(other) => panic!("README: `{line}`: entrypoint {other} not emulated"),
                }
            }
            "exec" => self.exec_postgres(line, &rest),
            other => panic!("README: `{line}`: `docker compose {other}` is not emulated by tests/tests/compose.rs"),
        }
        self.settling = true;
    }

    /// `docker compose exec <postgres> [env K=V…] psql …`: the machine's
    /// psql against the local stand-ins, `<username>`/`<password>` being the
    /// dynamic credential read before.
    fn exec_postgres(&mut self, line: &str, rest: &[String]) {
        let mut it = rest.iter().skip_while(|a| a.starts_with('-'));
        let service = it
            .next()
            .unwrap_or_else(|| panic!("README: `{line}`: no service"));
        assert_eq!(
            service, &self.map.pg_service,
            "README: `{line}`: only the postgres service is exec'd into"
        );
        let (user, password) = self
            .creds
            .clone()
            .unwrap_or_else(|| panic!("README: `{line}` before a database credential was read"));
        let fill = |a: &str| {
            a.replace("<username>", &user)
                .replace("<password>", &password)
        };
        let mut words: Vec<String> = it.map(|a| fill(a)).collect();
        let mut env = Vec::new();
        if words.first().map(String::as_str) == Some("env") {
            words.remove(0);
            while words.first().is_some_and(|w| is_assignment(w)) {
                let w = words.remove(0);
                let (k, v) = w.split_once('=').unwrap();
                env.push((k.to_string(), v.to_string()));
            }
        }
        assert_eq!(
            words.first().map(String::as_str),
            Some("psql"),
            "README: `{line}`: only psql is emulated inside postgres"
        );
        let (host, port) = self.map.pg.hostport.split_once(':').expect("host:port");
        let mut args = vec!["-p".to_string(), port.to_string(), "-X".to_string()];
        let mut w = words[1..].iter();
        while let Some(a) = w.next() {
            args.push(a.clone());
            let value = match a.as_str() {
                "-h" | "-d" | "-U" => w.next().expect("option value").clone(),
                _ => continue,
            };
            args.push(match a.as_str() {
                "-h" => host.to_string(),
                "-d" => self.map.pg.dbs.get(&value).cloned().unwrap_or(value),
                _ => self.map.pg.roles.get(&value).cloned().unwrap_or(value),
            });
        }
        let out = Command::new("psql")
            .args(&args)
            .envs(env)
            .output()
            .expect("run psql");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README: `{line}` (psql {}): {stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        if line.contains("FROM items") {
            assert!(stdout.contains("first"), "`{line}`: {stdout}");
        }
    }

    fn step(&mut self, line: &str) {
        self.ran.push(line.to_string());
        let words = shell_words(line);
        assert!(!words.is_empty());
        if words[0] == "export" {
            for a in &words[1..] {
                let (k, v) = a
                    .split_once('=')
                    .unwrap_or_else(|| panic!("README: `{line}`"));
                let v = if k == "VAULT_TOKEN" && v.starts_with('<') {
                    self.root_token.clone().unwrap_or_else(|| {
                        panic!("README: `{line}` before `operator init` printed a root token")
                    })
                } else {
                    self.map.rewrite(v, Side::Host, None)
                };
                self.env.insert(k.to_string(), v);
            }
            return;
        }
        if words[0] == "docker" && words.get(1).map(String::as_str) == Some("compose") {
            self.docker(line, &words);
            return;
        }
        let n_env = words.iter().take_while(|w| is_assignment(w)).count();
        let extra_env: Vec<(String, String)> = words[..n_env]
            .iter()
            .map(|w| {
                let (k, v) = w.split_once('=').unwrap();
                (k.to_string(), self.map.rewrite(v, Side::Host, None))
            })
            .collect();
        let cmd = &words[n_env..];
        assert_eq!(
            cmd.first().map(String::as_str),
            Some("bulwark"),
            "README: `{line}` is neither `bulwark …`, `export …` nor `docker compose …`"
        );
        let args: Vec<String> = cmd[1..]
            .iter()
            .map(|a| match a.split_once('=') {
                Some(("username", r)) if self.map.pg.roles.contains_key(r) => {
                    format!("username={}", self.map.pg.roles[r])
                }
                _ => self.map.rewrite(a, Side::Host, None),
            })
            .collect();
        let verb: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
        let status_before_init = verb == ["status"] && !self.initialized;
        // After a restart or an init, services take a moment to settle.
        let patience = if self.settling || verb.first() == Some(&"status") {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        };
        let started = Instant::now();
        let mut tries = 0;
        let out = loop {
            tries += 1;
            let out = self.cli(&args, &extra_env);
            let ok = out.code == 0 || (status_before_init && out.code == 2);
            if ok || started.elapsed() >= patience {
                break out;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        if tries > 1 {
            eprintln!(
                "README `{line}` succeeded after {tries} tries ({:?})",
                started.elapsed()
            );
        }
        if !(out.code == 0 || (status_before_init && out.code == 2)) {
            panic!("{}", diagnose_cli(line, &args, &out));
        }
        self.settling = false;
        self.check(line, &verb, &out);
    }

    /// What each kind of walkthrough step must have done.
    fn check(&mut self, line: &str, verb: &[&str], out: &CliOut) {
        match verb {
            ["status"] if !self.initialized => {
                assert!(
                    out.stdout.contains("Initialized") && out.stdout.contains("false"),
                    "`{line}` before init: {}",
                    out.stdout
                );
            }
            ["status"] => {
                assert_eq!(
                    table_value(&out.stdout, "Sealed").as_deref(),
                    Some("false"),
                    "`{line}`: {}",
                    out.stdout
                );
            }
            ["operator", "init", flags @ ..] => {
                let root = out
                    .stdout
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Initial Root Token:"))
                    .map(|t| t.trim().to_string())
                    .unwrap_or_else(|| panic!("`{line}` printed no root token:\n{}", out.stdout));
                let recovery = out
                    .stdout
                    .lines()
                    .filter(|l| l.trim_start().starts_with("Recovery Key "))
                    .count();
                let unseal = out
                    .stdout
                    .lines()
                    .filter(|l| l.trim_start().starts_with("Unseal Key "))
                    .count();
                let wanted: usize = flags
                    .iter()
                    .find_map(|f| {
                        f.trim_start_matches('-')
                            .strip_prefix("recovery-shares=")
                            .map(|n| n.parse().expect("recovery-shares"))
                    })
                    .unwrap_or(5);
                assert!(
                    unseal == 0 && recovery == wanted,
                    "MISSING FEATURE: `{line}` should print {wanted} recovery keys and no unseal \
                     keys (the static seal of compose/config/seal.hcl); it printed {recovery} \
                     recovery and {unseal} unseal keys:\n{}",
                    out.stdout
                );
                self.root_token = Some(root);
                self.initialized = true;
                self.settling = true;
            }
            ["kv", "put", path, pairs @ ..] => {
                let kv = pairs
                    .iter()
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                self.puts.insert(path.to_string(), kv);
            }
            ["kv", "get", path] => {
                let put = self
                    .puts
                    .get(*path)
                    .unwrap_or_else(|| panic!("`{line}`: nothing was put there before"));
                for (k, v) in put {
                    assert_eq!(
                        table_value(&out.stdout, k).as_deref(),
                        Some(v.as_str()),
                        "`{line}` (written through another gateway):\n{}",
                        out.stdout
                    );
                }
            }
            ["read", path] if path.starts_with("database/creds/") => {
                let user = table_value(&out.stdout, "username")
                    .unwrap_or_else(|| panic!("`{line}`: no username:\n{}", out.stdout));
                let password = table_value(&out.stdout, "password")
                    .unwrap_or_else(|| panic!("`{line}`: no password:\n{}", out.stdout));
                assert!(
                    table_value(&out.stdout, "lease_id")
                        .is_some_and(|l| l.starts_with(&format!("{path}/"))),
                    "`{line}`: lease_id:\n{}",
                    out.stdout
                );
                self.cleanup_roles.lock().unwrap().insert(0, user.clone());
                let rows = self.rt.block_on(self.select_items_as(&user, &password));
                assert_eq!(rows, 2, "the new user reads app's items table");
                self.creds = Some((user.clone(), password));
                self.creds_user = Some(user);
            }
            ["lease", "revoke", ..] if verb.contains(&"database/creds/readonly") => {
                let user = self
                    .creds_user
                    .clone()
                    .expect("credentials were read before");
                let deadline = Instant::now() + Duration::from_secs(30);
                while self.rt.block_on(role_exists(&user)) {
                    assert!(
                        Instant::now() < deadline,
                        "`{line}`: {user} still exists after 30 s"
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            _ => {}
        }
    }

    async fn select_items_as(&self, user: &str, password: &str) -> i64 {
        let app = &self.map.pg.dbs["app"];
        let opts = PgConnectOptions::from_str(&pg_admin_url())
            .expect("admin URL")
            .username(user)
            .password(password)
            .database(app);
        let mut conn = opts
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {app} as the dynamic user {user}: {e}"));
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SELECT as {user}: {e}"));
        let _ = conn.close().await;
        n
    }
}

async fn admin_conn() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("the machine's PostgreSQL")
}

async fn role_exists(name: &str) -> bool {
    let mut c = admin_conn().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_one(&mut c)
        .await
        .expect("pg_roles");
    n > 0
}

fn diagnose_cli(line: &str, args: &[String], out: &CliOut) -> String {
    let mut head = format!("README step `{line}` failed (exit {})", out.code);
    if args.first().map(String::as_str) == Some("operator")
        && args.get(1).map(String::as_str) == Some("init")
        && out.stderr.contains("recovery")
        && (out.stderr.contains("unexpected argument") || out.stderr.contains("unknown"))
    {
        head = format!(
            "MISSING FEATURE: `bulwark operator init` does not take \
             -recovery-shares/-recovery-threshold yet (static seal, recovery keys); {head}"
        );
    }
    format!(
        "{head}\n`bulwark {}`\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.stdout,
        out.stderr
    )
}

/// Drops the local stand-ins of the compose postgres after the processes.
struct PgCleanup {
    app: Option<TestPg>,
    /// Dropped in order (the dynamic users first, then their creator).
    roles: Arc<Mutex<Vec<String>>>,
}

impl Drop for PgCleanup {
    fn drop(&mut self) {
        drop(self.app.take());
        let roles = std::mem::take(&mut *self.roles.lock().unwrap());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = admin_conn().await;
                for r in roles {
                    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS \"{r}\""))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Static checks: what issue #11 asks of the compose stack.
fn lint(compose: &Compose, dockerfile: &str, readme: &str) {
    for needle in [
        "--bin bulwark",
        "ENTRYPOINT [\"bulwark\"]",
        "EXPOSE 8200",
        "IPC_LOCK",
    ] {
        assert!(dockerfile.contains(needle), "compose/Dockerfile: {needle}");
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("compose/Dockerfile: a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "non-root user"
    );
    let servers = compose.servers();
    for s in &servers {
        assert!(
            s.cap_add.iter().any(|c| c == "IPC_LOCK"),
            "{}: cap_add IPC_LOCK",
            s.name
        );
        assert!(
            s.restart.as_deref().is_some_and(|r| r != "no"),
            "{}: a restart policy",
            s.name
        );
        assert!(
            s.entrypoint.is_empty() || s.entrypoint == ["bulwark"],
            "{}: the image's entrypoint",
            s.name
        );
        assert!(s.target().is_some(), "{}: --target", s.name);
        assert!(s.config_path().is_some(), "{}: -config", s.name);
    }
    let of = |t: &str| -> Vec<&&Service> {
        servers
            .iter()
            .filter(|s| s.target().as_deref() == Some(t))
            .collect()
    };
    let gateways = of("gateway");
    assert!(gateways.len() >= 2, "two gateway replicas");
    assert!(of("auth").len() >= 2, "two auth replicas");
    let host_ports: BTreeSet<u16> = gateways
        .iter()
        .flat_map(|g| g.ports.iter().map(|p| p.0))
        .collect();
    assert!(
        host_ports.contains(&8200) && host_ports.contains(&8210),
        "gateways on host ports 8200 and 8210: {host_ports:?}"
    );
    for g in &gateways {
        assert!(
            g.health_url().is_some_and(|u| u.contains("/v1/sys/health")),
            "{}: healthcheck on /v1/sys/health",
            g.name
        );
    }
    let seal = of("seal");
    assert_eq!(seal.len(), 1, "one seal");
    assert!(
        !seal[0].secrets.is_empty(),
        "the seal's static key is a compose secret"
    );
    for (name, file) in &compose.secrets {
        let f = file.trim_start_matches("./");
        assert!(
            readme.contains(&format!("compose/{f}")),
            "compose/README.md tells how to make secret {name} ({file})"
        );
    }
    assert!(
        readme.contains(&format!("docker compose -f {COMPOSE_FILE} up -d")),
        "compose/README.md starts the stack"
    );
}

#[test]
fn compose_stack_runs_the_readme_walkthrough() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let compose = Compose::parse(&read(COMPOSE_FILE));
    let readme = read("compose/README.md");
    lint(&compose, &read("compose/Dockerfile"), &readme);
    let steps = walkthrough(&readme);
    for must in [
        "bulwark operator init",
        "bulwark kv put",
        "VAULT_ADDR=http://127.0.0.1:8210 bulwark kv get",
        "bulwark read database/creds/",
    ] {
        assert!(
            steps.iter().any(|s| s.starts_with(must)),
            "the walkthrough has a `{must}` step"
        );
    }

    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_path_buf();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::create_dir_all(root.join("home")).unwrap();
    let hosts = pick_addresses(&compose);

    // The compose postgres, here: the storage database and the engine's
    // target with its admin role, as postgres/init.sql makes them.
    let init_sql = read("compose/postgres/init.sql");
    for needle in [
        "CREATE DATABASE bulwark",
        "CREATE ROLE dbadmin WITH LOGIN CREATEROLE",
        "CREATE DATABASE app OWNER dbadmin",
        "\\connect app",
    ] {
        assert!(
            init_sql.contains(needle),
            "compose/postgres/init.sql: {needle}"
        );
    }
    let storage = rt.block_on(TestPg::new());
    let app = rt.block_on(TestPg::new());
    let dbadmin = format!("bulwark_compose_{:016x}", rand::random::<u64>());
    let mut cleanup = PgCleanup {
        app: None,
        roles: Arc::new(Mutex::new(vec![dbadmin.clone()])),
    };
    let app_db = LocalPg::db_of(&app.url);
    rt.block_on(async {
        let mut c = admin_conn().await;
        sqlx::query(&format!(
            "CREATE ROLE \"{dbadmin}\" WITH LOGIN CREATEROLE PASSWORD 'dbadmin-password'"
        ))
        .execute(&mut c)
        .await
        .expect("dbadmin role");
        sqlx::query(&format!("ALTER DATABASE {app_db} OWNER TO \"{dbadmin}\""))
            .execute(&mut c)
            .await
            .expect("app owner");
        let mut a = sqlx::PgConnection::connect(&app.url).await.expect("app db");
        // What init.sql runs in `app` (its `SET ROLE dbadmin` included).
        let body = init_sql.split("\\connect app").nth(1).unwrap();
        for stmt in body.split(';') {
            let stmt: String = stmt
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            if stmt.trim().is_empty() {
                continue;
            }
            let stmt = stmt.replace("dbadmin", &format!("\"{dbadmin}\""));
            sqlx::query(&stmt)
                .execute(&mut a)
                .await
                .unwrap_or_else(|e| panic!("init.sql in app: {stmt}: {e}"));
        }
        let _ = a.close().await;
    });
    cleanup.app = Some(app);

    let mut pg = LocalPg::new();
    pg.dbs
        .insert("bulwark".into(), LocalPg::db_of(&storage.url));
    pg.dbs.insert("app".into(), app_db.clone());
    pg.roles.insert("dbadmin".into(), dbadmin.clone());

    // Volumes, secrets and bind mounts of every bulwark service.
    for v in &compose.volumes {
        std::fs::create_dir_all(root.join("volumes").join(v)).unwrap();
    }
    let secrets_dir = root.join("secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    for name in compose.secrets.keys() {
        // `openssl rand -out compose/secrets/seal_key 32`, as the README says.
        let key: [u8; 32] = rand::random();
        std::fs::write(secrets_dir.join(name), key).unwrap();
    }
    let mut published = BTreeMap::new();
    for s in &compose.services {
        for (host, container) in &s.ports {
            published.insert(*host, format!("{}:{container}", hosts[&s.name]));
        }
    }
    let mut map = Mapper {
        hosts: hosts.clone(),
        published,
        mounts: BTreeMap::new(),
        pg,
        pg_service: compose.postgres().name.clone(),
    };
    let bulwark_names: Vec<String> = compose.bulwark().iter().map(|s| s.name.clone()).collect();
    let mut bind_sources: Vec<(String, String, PathBuf)> = Vec::new();
    for s in compose.bulwark() {
        let mut mounts = Vec::new();
        for (i, (src, dst)) in s.volumes.iter().enumerate() {
            let local = if src.starts_with('.') || src.starts_with('/') {
                let local = root.join("svc").join(&s.name).join(format!("mount{i}"));
                bind_sources.push((s.name.clone(), src.clone(), local.clone()));
                local
            } else {
                assert!(
                    compose.volumes.contains(src),
                    "{}: volume {src} is not declared",
                    s.name
                );
                root.join("volumes").join(src)
            };
            mounts.push((dst.clone(), local));
        }
        for sec in &s.secrets {
            assert!(
                compose.secrets.contains_key(sec),
                "{}: secret {sec} is not declared",
                s.name
            );
            mounts.push((format!("/run/secrets/{sec}"), secrets_dir.join(sec)));
        }
        mounts.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
        map.mounts.insert(s.name.clone(), mounts);
    }
    // Bind-mounted files and directories: copies with this service's names.
    for (svc, src, local) in &bind_sources {
        let from = repo().join("compose").join(src.trim_start_matches("./"));
        let own = hosts[svc].clone();
        let copy = |from: &Path, to: &Path| {
            let text =
                std::fs::read_to_string(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            std::fs::write(to, map.rewrite(&text, Side::Container(&own), Some(svc))).unwrap();
        };
        if from.is_dir() {
            std::fs::create_dir_all(local).unwrap();
            for e in std::fs::read_dir(&from).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_file() {
                    copy(&e.path(), &local.join(e.file_name()));
                }
            }
        } else {
            std::fs::create_dir_all(local.parent().unwrap()).unwrap();
            copy(&from, local);
        }
    }

    // Jaeger: an OTLP collector at its address.
    let configs: Vec<String> = std::fs::read_dir(repo().join("compose/config"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let mut otlp = BTreeSet::new();
    for c in &configs {
        for l in c.lines() {
            if let Some(v) = l.trim().strip_prefix("otlp_endpoint") {
                let v = v.trim().trim_start_matches('=').trim().trim_matches('"');
                otlp.insert(v.to_string());
            }
        }
    }
    assert_eq!(
        otlp.len(),
        1,
        "one OTLP endpoint for every process: {otlp:?}"
    );
    let endpoint = otlp.into_iter().next().unwrap();
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (otlp_host, otlp_port) = hostport.split_once(':').expect("host:port");
    assert!(
        hosts.contains_key(otlp_host) && !bulwark_names.contains(&otlp_host.to_string()),
        "otlp_endpoint {endpoint} names a compose service other than Bulwark's"
    );
    let collector = Collector::default();
    {
        let addr: std::net::SocketAddr =
            format!("{}:{otlp_port}", hosts[otlp_host]).parse().unwrap();
        let c = collector.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind the collector");
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(c))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }

    let mut stack = Stack {
        rt,
        compose,
        map,
        tmp: root.clone(),
        procs: BTreeMap::new(),
        env: BTreeMap::new(),
        root_token: None,
        initialized: false,
        settling: false,
        puts: BTreeMap::new(),
        creds_user: None,
        cleanup_roles: cleanup.roles.clone(),
        creds: None,
        removed: Vec::new(),
        ran: Vec::new(),
    };

    // The certs step, then every service in dependency order.
    let certs_cmd = stack.compose.certs().command.clone();
    stack.run_certs(&certs_cmd);
    let cert_dir = stack.container_args(stack.compose.certs(), &["/certs".to_string()])[0].clone();
    let issued: BTreeSet<String> = std::fs::read_dir(&cert_dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            let svc = n.strip_suffix(".pem")?;
            (!svc.ends_with("-key") && svc != "ca" && svc != "ca-key").then(|| svc.to_string())
        })
        .collect();
    let servers: Vec<Service> = stack.compose.servers().into_iter().cloned().collect();
    let targets: BTreeSet<String> = servers.iter().filter_map(Service::target).collect();
    assert_eq!(
        targets, issued,
        "{COMPOSE_FILE} runs every service of this binary (`bulwark certs` issued certificates for {issued:?})"
    );
    for s in &servers {
        let mut p = stack.prepare(s);
        p.start();
        stack.procs.insert(s.name.clone(), p);
    }

    // Healthchecks, as docker would run them.
    let health = |stack: &Stack, s: &Service| {
        let Some(url) = s.health_url() else { return };
        let own = stack.map.hosts[&s.name].clone();
        let url = stack
            .map
            .rewrite(&url, Side::Container(&own), Some(&s.name));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = stack
                .rt
                .block_on(async { reqwest::get(&url).await.map(|r| r.status().as_u16()) });
            match status {
                Ok(code) if code < 400 => return,
                other if Instant::now() > deadline => {
                    panic!("{}: healthcheck {url} never passed: {other:?}", s.name)
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    };
    for s in &servers {
        health(&stack, s);
    }

    // The README, step by step.
    for line in &steps {
        stack.step(line);
    }
    for s in &servers {
        health(&stack, s);
    }

    // Every request was audited into the audit container's volume.
    let audit_log = stack
        .map
        .rewrite("/var/log/bulwark/audit.log", Side::Host, None);
    if stack
        .ran
        .iter()
        .any(|l| l.contains("/var/log/bulwark/audit.log"))
    {
        let log = std::fs::read_to_string(&audit_log).expect("the audit log");
        assert!(log.contains("secret/data/hello"), "kv put audited");
    }

    // Prometheus: its targets are this stack's processes, each answers.
    let prom: Value =
        serde_norway::from_str(&read("compose/prometheus.yml")).expect("prometheus.yml");
    let mut scraped = BTreeSet::new();
    for job in prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        let path = job
            .get("metrics_path")
            .map(scalar)
            .unwrap_or("/metrics".into());
        for sc in job["static_configs"].as_sequence().expect("static_configs") {
            for t in strings(sc.get("targets")) {
                let (host, port) = t.split_once(':').expect("host:port target");
                let ip =
                    stack.map.hosts.get(host).unwrap_or_else(|| {
                        panic!("prometheus target {t}: no such compose service")
                    });
                let url = format!("http://{ip}:{port}{path}");
                let body = stack.rt.block_on(async {
                    let r = reqwest::get(&url)
                        .await
                        .unwrap_or_else(|e| panic!("{t}: {e}"));
                    assert_eq!(r.status().as_u16(), 200, "scrape {t}");
                    r.text().await.unwrap()
                });
                assert!(body.contains("# TYPE"), "{t}: Prometheus text");
                scraped.insert(host.to_string());
            }
        }
    }
    let server_names: BTreeSet<String> = servers.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        scraped, server_names,
        "compose/prometheus.yml scrapes every Bulwark process"
    );

    // Jaeger got the traces: a span from the gateways and from kv at least.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<String> = collector.all().into_iter().map(|g| g.service).collect();
        if seen.contains("bulwark-gateway") && seen.contains("bulwark-kv") {
            eprintln!(
                "compose: {} services, {} README steps, {} processes scraped, traces from {seen:?}",
                servers.len(),
                stack.ran.len(),
                scraped.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traces at {endpoint}: only from {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Processes first, then the databases and roles they used.
    drop(stack);
    drop(storage);
    drop(cleanup);
    // BULWARK_E2E_KEEP=1 keeps the processes' logs and configs.
    if std::env::var_os("BULWARK_E2E_KEEP").is_some() {
        eprintln!("kept {}", tmp.keep().display());
    }
}

#[test]
fn shell_words_and_rewrites() {
    assert_eq!(
        shell_words(r#"bulwark write x a="b \"c\" 'd'" e='f g' # note"#),
        vec!["bulwark", "write", "x", r#"a=b "c" 'd'"#, "e=f g"]
    );
    let mut pg = LocalPg::new();
    pg.dbs.insert("app".into(), "app_local".into());
    let hosts: BTreeMap<String, String> = [
        ("postgres", "127.9.9.10"),
        ("kv", "127.9.9.11"),
        ("jaeger", "127.9.9.12"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .into();
    let m = Mapper {
        hosts,
        published: [(8200u16, "127.9.9.11:8200".to_string())].into(),
        mounts: [(
            "kv".to_string(),
            vec![("/certs".to_string(), PathBuf::from("/tmp/c"))],
        )]
        .into(),
        pg,
        pg_service: "postgres".into(),
    };
    let own = Side::Container("127.9.9.11");
    assert_eq!(
        m.rewrite(r#"kv = "kv:8304" # kv"#, own, Some("kv")),
        r#"kv = "127.9.9.11:8304" # kv"#
    );
    assert_eq!(
        m.rewrite("metrics_address = \"0.0.0.0:9102\"", own, Some("kv")),
        "metrics_address = \"127.9.9.11:9102\""
    );
    assert_eq!(
        m.rewrite(
            "http://jaeger:4317 --target=kv cert_dir = \"/certs\" /certs/kv.pem /certsx",
            own,
            Some("kv")
        ),
        "http://127.9.9.12:4317 --target=kv cert_dir = \"/tmp/c\" /tmp/c/kv.pem /certsx"
    );
    assert_eq!(
        m.rewrite("connection_url=postgresql://{{username}}:{{password}}@postgres:5432/app?sslmode=disable", Side::Host, None),
        format!("connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@{}/app_local?sslmode=disable", m.pg.hostport)
    );
    assert_eq!(
        m.rewrite("VAULT_ADDR=http://127.0.0.1:8200", Side::Host, None),
        "VAULT_ADDR=http://127.9.9.11:8200"
    );
}

#[test]
fn missing_features_are_named() {
    use std::os::unix::process::ExitStatusExt;
    let status = std::process::ExitStatus::from_raw(64 << 8);
    let args = ["server".to_string()];
    let m = diagnose_server(
        "kv",
        &args,
        "cluster {\n  auth = [\"a:1\", \"b:1\"]\n}",
        status,
        "Error: kv.hcl: invalid type: sequence, expected a string",
    );
    assert!(
        m.starts_with("MISSING FEATURE") && m.contains("replica address lists"),
        "{m}"
    );
    let m = diagnose_server(
        "kv",
        &args,
        "",
        status,
        "Error: kv.hcl: unknown field `transit`, expected one of `cert_dir`, `seal`",
    );
    assert!(
        m.starts_with("MISSING FEATURE") && m.contains("transit service"),
        "{m}"
    );
    let m = diagnose_server(
        "seal",
        &args,
        "",
        status,
        "Error: seal.hcl: unknown field `seal`, expected one of `target`",
    );
    assert!(
        m.starts_with("MISSING FEATURE") && m.contains("static seal"),
        "{m}"
    );
    let m = diagnose_server(
        "kv",
        &args,
        "",
        status,
        "Error: storage: connection refused",
    );
    assert!(m.starts_with("compose service `kv` refused"), "{m}");
    let m = diagnose_server(
        "kv",
        &args,
        "",
        status,
        "Error: kv.hcl: unknown field `disable_mlock`, expected one of `target`, `seal`",
    );
    assert!(m.starts_with("compose service `kv` refused"), "{m}");
    let out = CliOut {
        code: 2,
        stdout: String::new(),
        stderr: "error: unexpected argument '--recovery-shares' found".into(),
    };
    let m = diagnose_cli(
        "bulwark operator init -recovery-shares=5",
        &["operator".into(), "init".into()],
        &out,
    );
    assert!(m.starts_with("MISSING FEATURE"), "{m}");
}
