//! The run's report: JSON for comparing runs (machine, target, settings,
//! baseline and ratios all in one document) and a table for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::Stats;

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// The target's base URL.
    pub target: String,
    pub machine: Machine,
    pub settings: Settings,
    /// Unix seconds when the run started.
    pub started_unix: u64,
    /// The prefix every mount, auth method and policy of the run lives under.
    pub prefix: String,
    /// What setup created (removed again at cleanup unless told not to).
    pub created: Vec<String>,
    /// Scenarios not run, and why (e.g. `db-creds` without `-pg-url`).
    pub skipped: Vec<String>,
    /// Problems met while cleaning up.
    pub cleanup_warnings: Vec<String>,
    pub levels: Vec<Level>,
}

/// The machine the tool ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `std::thread::available_parallelism`: what the tool and (usually) the target share.
    pub cores: usize,
    pub os: String,
    pub arch: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Machine {
        Machine {
            cores: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
        }
    }
}

/// The knobs of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Seconds per measurement, when run by time.
    pub duration_s: Option<f64>,
    /// Requests per measurement, when run by count.
    pub requests: Option<u64>,
    pub warmup_s: f64,
    pub concurrency: Vec<usize>,
    pub keys: usize,
    pub tokens: usize,
    pub leases: usize,
    pub baseline: bool,
    pub audit_file: Option<String>,
    /// `scoped` (a token with a policy for the run's paths only, as production
    /// clients have) or `given` (`-request-token`).
    pub request_token: String,
}

/// All measurements at one concurrency level.
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    pub concurrency: usize,
    pub baseline: Option<BaselineResult>,
    pub results: Vec<ScenarioResult>,
}

/// The baseline's measurement.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineResult {
    pub body_bytes: usize,
    #[serde(flatten)]
    pub stats: Stats,
}

/// One scenario's measurement (or a mix's total, as scenario `mix`).
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// The workload it was part of (`kv2-read`, `kv2-read=80,kv2-write=20`).
    pub workload: String,
    pub scenario: String,
    pub weight: u32,
    #[serde(flatten)]
    pub stats: Stats,
    /// req/s divided by the baseline's req/s at the same concurrency.
    pub req_per_sec_ratio: Option<f64>,
    /// p99 divided by the baseline's p99 at the same concurrency.
    pub p99_ratio: Option<f64>,
}

/// `a / b` when both make sense.
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

impl Report {
    /// The JSON document (`-format json`, `-out`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"errors\":[\"{e}\"]}}"))
    }

    /// The table (`-format table`).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let run = match (s.duration_s, s.requests) {
            (_, Some(n)) => format!("{n} requests per run"),
            (Some(d), None) => format!("{d}s per run"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "bulwark-bench {} -> {}  ({} cores, {run}, warm-up {}s, {} token, audit: {})",
            self.version,
            self.target,
            self.machine.cores,
            s.warmup_s,
            s.request_token,
            s.audit_file.as_deref().unwrap_or("off"),
        );
        for skipped in &self.skipped {
            let _ = writeln!(out, "skipped: {skipped}");
        }
        let _ = writeln!(
            out,
            "\n{:>5}  {:<26} {:>9} {:>9} {:>7} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "conc",
            "scenario",
            "requests",
            "ok",
            "errors",
            "req/s",
            "x base",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "p99 x"
        );
        let mut notes = Vec::new();
        for level in &self.levels {
            if let Some(b) = &level.baseline {
                row(
                    &mut out,
                    level.concurrency,
                    &format!("baseline ({} B)", b.body_bytes),
                    &b.stats,
                    Some(1.0),
                    Some(1.0),
                );
            }
            for r in &level.results {
                let name = if r.scenario == "mix" {
                    "mix total".to_string()
                } else if r.workload != r.scenario {
                    format!("  {} (w {})", r.scenario, r.weight)
                } else {
                    r.scenario.clone()
                };
                row(
                    &mut out,
                    level.concurrency,
                    &name,
                    &r.stats,
                    r.req_per_sec_ratio,
                    r.p99_ratio,
                );
                if r.stats.errors > 0 && r.scenario != "mix" {
                    let mut parts: Vec<String> = r
                        .stats
                        .errors_by_status
                        .iter()
                        .map(|(code, n)| format!("HTTP {code} x{n}"))
                        .collect();
                    if r.stats.transport_errors > 0 {
                        parts.push(format!("transport x{}", r.stats.transport_errors));
                    }
                    notes.push(format!(
                        "c={} {}: {}",
                        level.concurrency,
                        r.scenario,
                        parts.join(", ")
                    ));
                }
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(out, "\nerrors:");
            for n in notes {
                let _ = writeln!(out, "  {n}");
            }
        }
        for w in &self.cleanup_warnings {
            let _ = writeln!(out, "cleanup: {w}");
        }
        out
    }
}

fn row(
    out: &mut String,
    conc: usize,
    name: &str,
    s: &Stats,
    rps_ratio: Option<f64>,
    p99_ratio: Option<f64>,
) {
    let x = |r: Option<f64>| r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into());
    let l = &s.latency_ms;
    let _ = writeln!(
        out,
        "{conc:>5}  {name:<26} {:>9} {:>9} {:>7} {:>10.1} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8}",
        s.requests,
        s.ok,
        s.errors,
        s.req_per_sec,
        x(rps_ratio),
        l.p50,
        l.p90,
        l.p99,
        l.max,
        x(p99_ratio),
    );
}
