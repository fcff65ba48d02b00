//! `bulwark-bench`: a closed-loop load generator for any server that speaks
//! the Vault HTTP API (Bulwark, Vault, OpenBao), in the spirit of
//! vault-benchmark.
//!
//! A run sets its scenarios up through the API under a unique prefix (with
//! the given, typically root, token), measures each workload at each
//! concurrency level, measures an in-process bare HTTP server answering a
//! same-sized body with the same client (the [`baseline`]), and cleans up.
//! Results are reported as absolute figures and as ratios to the baseline,
//! which survive a noisy or different machine better than raw req/s.
//!
//! It speaks HTTP only and links no Bulwark crate, so it measures every
//! server the same way and builds fast.

pub mod baseline;
pub mod cli;
pub mod load;
pub mod report;
pub mod scenario;
pub mod target;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use crate::baseline::Baseline;
use crate::load::Stop;
use crate::report::{BaselineResult, Level, Machine, Report, ScenarioResult, Settings};
use crate::scenario::{Plan, Scenario, SetupOptions, Undo, Workload};
use crate::target::Target;

/// One run's settings (the command line, parsed; tests build it directly).
/// Not `Debug`: it holds tokens.
#[derive(Clone)]
pub struct Config {
    /// The target's base URL.
    pub address: String,
    /// The token setup and cleanup use (mounts, auth methods, policies, audit: a root token).
    pub token: String,
    /// PEM CA bundle to trust for an HTTPS target.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Measured one after the other, at each concurrency level.
    pub workloads: Vec<Workload>,
    pub stop: Stop,
    pub concurrency: Vec<usize>,
    /// Unmeasured load before each measurement (connections, caches, JIT-free warm-up of the server).
    pub warmup: Duration,
    /// Seeded secrets for the read scenarios.
    pub keys: usize,
    /// Extra live tokens created before measuring (cost growth with the
    /// number of tokens).
    pub tokens: usize,
    /// Extra live leases created before measuring (cost growth with the
    /// number of leases; needs `pg_url`).
    pub leases: usize,
    /// Measure the in-process baseline too.
    pub baseline: bool,
    /// PostgreSQL URL for `db-creds`; without it that scenario is skipped.
    pub pg_url: Option<String>,
    /// Enable a file audit device writing here during the run.
    pub audit_file: Option<String>,
    /// Send the measured requests with this token instead of a scoped one made in setup.
    pub request_token: Option<String>,
    /// Set up, report what was created, and leave it.
    pub setup_only: bool,
    /// Leave what setup created in place after measuring.
    pub no_cleanup: bool,
    /// Per-request timeout; a request over it counts as a transport error.
    pub timeout: Duration,
    /// Say what is happening on stderr.
    pub progress: bool,
}

impl Config {
    /// The defaults of the command line, for `address` and `token`.
    pub fn new(address: &str, token: &str) -> Config {
        Config {
            address: address.to_string(),
            token: token.to_string(),
            ca_cert_pem: None,
            workloads: vec![Workload::single(Scenario::Kv2Read)],
            stop: Stop::Duration(Duration::from_secs(10)),
            concurrency: vec![16],
            warmup: Duration::from_secs(2),
            keys: 1000,
            tokens: 0,
            leases: 0,
            baseline: true,
            pg_url: None,
            audit_file: None,
            request_token: None,
            setup_only: false,
            no_cleanup: false,
            timeout: Duration::from_secs(30),
            progress: false,
        }
    }
}

/// Everything set up for a run: a plan per scenario, and what to undo.
pub struct Session {
    /// The prefix of every mount, auth method and policy the run created.
    pub prefix: String,
    /// What each scenario sends, with the measured token filled in.
    pub plans: BTreeMap<Scenario, Plan>,
    /// The workloads left once skipped scenarios are taken out.
    pub workloads: Vec<Workload>,
    pub skipped: Vec<String>,
    pub created: Vec<String>,
    /// The size of a kv v2 read answer of this target (or of a seeded secret).
    pub baseline_body_len: usize,
    undo: Vec<Undo>,
}

impl Session {
    /// Sets up every scenario of `cfg.workloads` on `target`. On failure what
    /// was already created is removed before the error is returned.
    pub async fn prepare(target: &Target, cfg: &Config) -> Result<Session> {
        let mut session = Session {
            prefix: unique_prefix(),
            plans: BTreeMap::new(),
            workloads: Vec::new(),
            skipped: Vec::new(),
            created: Vec::new(),
            baseline_body_len: baseline::min_body_len() + scenario::SEED_PASSWORD_LEN,
            undo: Vec::new(),
        };
        match session.prepare_inner(target, cfg).await {
            Ok(()) => Ok(session),
            Err(e) => {
                for w in session.cleanup(target).await {
                    progress(cfg, &format!("cleanup after failed setup: {w}"));
                }
                Err(e)
            }
        }
    }

    async fn prepare_inner(&mut self, target: &Target, cfg: &Config) -> Result<()> {
        for w in &cfg.workloads {
            let kept: Vec<_> = w
                .components
                .iter()
                .filter(|c| c.scenario != Scenario::DbCreds || cfg.pg_url.is_some())
                .cloned()
                .collect();
            if kept.len() < w.components.len() {
                self.skipped.push(format!(
                    "db-creds in {}: no PostgreSQL connection URL (-pg-url)",
                    w.name()
                ));
            }
            if !kept.is_empty() {
                self.workloads.push(Workload { components: kept });
            }
        }
        for s in &self.skipped {
            progress(cfg, &format!("skipped: {s}"));
        }
        if let Some(file) = &cfg.audit_file {
            progress(cfg, &format!("enabling a file audit device -> {file}"));
            scenario::enable_audit(target, &self.prefix, file, &mut self.undo).await?;
            self.created
                .push(format!("file audit device {}-file/ -> {file}", self.prefix));
        }
        let opts = SetupOptions {
            keys: cfg.keys,
            pg_url: cfg.pg_url.clone(),
        };
        let mut rules = String::new();
        for sc in scenario::distinct(&self.workloads) {
            progress(cfg, &format!("setting up {sc}"));
            let p = scenario::prepare(target, sc, &self.prefix, &opts, &mut self.undo).await?;
            rules.push_str(&p.rules);
            self.created.push(format!("{sc}: {}", p.created));
            self.plans.insert(sc, p.plan);
        }
        let token = match &cfg.request_token {
            Some(t) => Some(t.clone()),
            None if !rules.is_empty() => {
                let t =
                    scenario::measured_token(target, &self.prefix, &rules, &mut self.undo).await?;
                self.created.push(format!(
                    "policy {} and a 24h token carrying it (the measured token)",
                    self.prefix
                ));
                Some(t)
            }
            None => None,
        };
        if cfg.tokens > 0 {
            progress(cfg, &format!("creating {} live tokens", cfg.tokens));
            scenario::seed_tokens(target, cfg.tokens, &mut self.undo).await?;
            self.created.push(format!(
                "{} live 2h tokens, children of one parent token",
                cfg.tokens
            ));
        }
        if let (n @ 1.., Some(url)) = (cfg.leases, cfg.pg_url.as_deref()) {
            progress(cfg, &format!("creating {n} live leases"));
            scenario::seed_leases(target, &self.prefix, url, n, &mut self.undo).await?;
            self.created.push(format!(
                "{n} live 2h database leases on mount {}-leases/",
                self.prefix
            ));
        }
        for (sc, plan) in self.plans.iter_mut() {
            if !matches!(sc, Scenario::UserpassLogin | Scenario::ApproleLogin) {
                plan.token = token.clone();
            }
        }
        // The baseline answers as many bytes as this target's kv v2 read.
        if let (Some(plan), Some(token)) = (self.plans.get(&Scenario::Kv2Read), &token) {
            if let Ok((200, body)) = target
                .with_token(token)
                .raw(reqwest::Method::GET, &plan.paths[0], None)
                .await
            {
                self.baseline_body_len = body.len();
            }
        }
        Ok(())
    }

    /// Undoes setup in reverse order (token, policy, mounts, audit last);
    /// returns what could not be undone.
    pub async fn cleanup(&mut self, target: &Target) -> Vec<String> {
        let mut warnings = Vec::new();
        while let Some(step) = self.undo.pop() {
            if let Err(e) = scenario::undo(target, &step).await {
                warnings.push(format!("{e:#}"));
            }
        }
        warnings
    }

    /// What the baseline is asked for: the kv2-read plan's paths and token,
    /// so that the requests differ from the target's only in their answer.
    pub fn baseline_plan(&self) -> Plan {
        match self.plans.get(&Scenario::Kv2Read) {
            Some(p) => p.clone(),
            None => Plan {
                method: reqwest::Method::GET,
                paths: vec![format!("{}-kv2r/data/key-0", self.prefix)],
                bodies: Vec::new(),
                token: self.plans.values().find_map(|p| p.token.clone()),
            },
        }
    }
}

/// Runs the whole thing: setup, baseline and workloads at each level, cleanup.
pub async fn run(cfg: &Config) -> Result<Report> {
    if cfg.concurrency.is_empty() || cfg.concurrency.contains(&0) {
        bail!("concurrency levels must be at least 1");
    }
    if cfg.workloads.is_empty() {
        bail!("no scenario given");
    }
    let http = target::http_client(cfg.ca_cert_pem.as_deref(), cfg.timeout)?;
    let target = Target::new(&cfg.address, &cfg.token, http.clone());
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut session = Session::prepare(&target, cfg).await?;
    let mut report = Report {
        tool: "bulwark-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        target: target.base().to_string(),
        machine: Machine::here(),
        settings: Settings {
            duration_s: match cfg.stop {
                Stop::Duration(d) => Some(d.as_secs_f64()),
                Stop::Requests(_) => None,
            },
            requests: match cfg.stop {
                Stop::Requests(n) => Some(n),
                Stop::Duration(_) => None,
            },
            warmup_s: cfg.warmup.as_secs_f64(),
            concurrency: cfg.concurrency.clone(),
            keys: cfg.keys,
            tokens: cfg.tokens,
            leases: cfg.leases,
            baseline: cfg.baseline,
            audit_file: cfg.audit_file.clone(),
            request_token: if cfg.request_token.is_some() {
                "given"
            } else {
                "scoped"
            }
            .into(),
        },
        started_unix,
        prefix: session.prefix.clone(),
        created: session.created.clone(),
        skipped: session.skipped.clone(),
        cleanup_warnings: Vec::new(),
        levels: Vec::new(),
    };
    if cfg.setup_only {
        progress(
            cfg,
            &format!(
                "set up under {}; left in place (-setup-only)",
                session.prefix
            ),
        );
        return Ok(report);
    }
    // Ctrl-C stops measuring but still cleans up.
    let measured = tokio::select! {
        m = measure_levels(cfg, &http, &session) => m,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if cfg.no_cleanup {
        progress(
            cfg,
            &format!(
                "left everything under {} in place (-no-cleanup)",
                session.prefix
            ),
        );
    } else {
        progress(cfg, "cleaning up");
        report.cleanup_warnings = session.cleanup(&target).await;
    }
    report.levels = measured?;
    Ok(report)
}

async fn measure_levels(
    cfg: &Config,
    http: &reqwest::Client,
    session: &Session,
) -> Result<Vec<Level>> {
    let server = if cfg.baseline {
        Some(Baseline::start(baseline::vault_shaped_body(session.baseline_body_len)).await?)
    } else {
        None
    };
    let mut levels = Vec::new();
    for &c in &cfg.concurrency {
        let mut level = Level {
            concurrency: c,
            baseline: None,
            results: Vec::new(),
        };
        if let Some(server) = &server {
            progress(cfg, &format!("c={c} baseline"));
            let plans = [(session.baseline_plan(), 1)];
            warm_up(cfg, http, &server.url(), &plans, c).await?;
            let out = load::measure(http, &server.url(), &plans, c, cfg.stop).await?;
            level.baseline = Some(BaselineResult {
                body_bytes: server.body_len(),
                stats: out.total()?.stats(out.elapsed),
            });
        }
        let base = level.baseline.as_ref().map(|b| b.stats.clone());
        for w in &session.workloads {
            progress(cfg, &format!("c={c} {}", w.name()));
            let mut plans = Vec::new();
            for comp in &w.components {
                let Some(plan) = session.plans.get(&comp.scenario) else {
                    bail!("{} was not set up", comp.scenario);
                };
                plans.push((plan.clone(), comp.weight));
            }
            warm_up(cfg, http, &cfg.address, &plans, c).await?;
            let out = load::measure(http, &cfg.address, &plans, c, cfg.stop).await?;
            let mut push = |scenario: String, weight: u32, stats: load::Stats| {
                let (rps_ratio, p99_ratio) = match &base {
                    Some(b) => (
                        report::ratio(stats.req_per_sec, b.req_per_sec),
                        report::ratio(stats.latency_ms.p99, b.latency_ms.p99),
                    ),
                    None => (None, None),
                };
                level.results.push(ScenarioResult {
                    workload: w.name(),
                    scenario,
                    weight,
                    stats,
                    req_per_sec_ratio: rps_ratio,
                    p99_ratio,
                });
            };
            for (comp, tally) in w.components.iter().zip(&out.tallies) {
                push(
                    comp.scenario.name().to_string(),
                    comp.weight,
                    tally.stats(out.elapsed),
                );
            }
            if w.components.len() > 1 {
                let weight = w.components.iter().map(|c| c.weight).sum();
                push("mix".into(), weight, out.total()?.stats(out.elapsed));
            }
        }
        levels.push(level);
    }
    Ok(levels)
}

async fn warm_up(
    cfg: &Config,
    http: &reqwest::Client,
    base: &str,
    plans: &[(Plan, u32)],
    c: usize,
) -> Result<()> {
    if !cfg.warmup.is_zero() {
        load::measure(http, base, plans, c, Stop::Duration(cfg.warmup)).await?;
    }
    Ok(())
}

fn progress(cfg: &Config, msg: &str) {
    if cfg.progress {
        eprintln!("bulwark-bench: {msg}");
    }
}

/// `bench-<8 hex>`: unique enough that concurrent runs against one server,
/// or a run next to real data, never share a mount.
fn unique_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("bench-{:08x}", h.finish() as u32)
}
