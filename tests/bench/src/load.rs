//! The closed loop: `concurrency` clients, each sending its next request as
//! soon as the previous answer has been read in full, until a deadline or a
//! request count. Every answered request's latency goes into an HDR
//! histogram; answers are counted by status and transport failures apart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Serialize;

use crate::scenario::Plan;

/// When a measurement ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No new request starts after this long; requests in flight finish and count.
    Duration(Duration),
    /// Exactly this many requests, over all clients.
    Requests(u64),
}

/// Latencies are recorded in microseconds, from 1 µs to an hour, with three
/// significant digits (0.1% error).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What one client (or, merged, all of them) saw for one plan.
#[derive(Clone, Debug)]
pub struct Tally {
    hist: Histogram<u64>,
    pub ok: u64,
    /// Answers outside 2xx, by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no complete answer (refused, reset, timed out).
    pub transport: u64,
}

impl Tally {
    fn new() -> Result<Tally> {
        Ok(Tally {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("latency histogram")?,
            ok: 0,
            by_status: BTreeMap::new(),
            transport: 0,
        })
    }

    fn record(&mut self, status: Option<u16>, elapsed: Duration) {
        let Some(status) = status else {
            self.transport += 1;
            return;
        };
        let us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record(us);
        if (200..300).contains(&status) {
            self.ok += 1;
        } else {
            *self.by_status.entry(status).or_default() += 1;
        }
    }

    /// Adds another tally's counts and latencies to this one.
    pub fn merge(&mut self, other: &Tally) -> Result<()> {
        self.hist
            .add(&other.hist)
            .map_err(|e| anyhow!("merging histograms: {e:?}"))?;
        self.ok += other.ok;
        self.transport += other.transport;
        for (code, n) in &other.by_status {
            *self.by_status.entry(*code).or_default() += n;
        }
        Ok(())
    }

    /// Every request sent: ok + non-2xx + transport errors.
    pub fn requests(&self) -> u64 {
        self.ok + self.errors()
    }

    /// Non-2xx answers plus transport errors.
    pub fn errors(&self) -> u64 {
        self.by_status.values().sum::<u64>() + self.transport
    }

    /// The summary reported for a measurement that lasted `elapsed`.
    pub fn stats(&self, elapsed: Duration) -> Stats {
        let secs = elapsed.as_secs_f64();
        let ms = |us: u64| us as f64 / 1000.0;
        let answered = !self.hist.is_empty();
        let q = |p: f64| {
            if answered {
                ms(self.hist.value_at_quantile(p))
            } else {
                0.0
            }
        };
        Stats {
            requests: self.requests(),
            ok: self.ok,
            errors: self.errors(),
            errors_by_status: self
                .by_status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            transport_errors: self.transport,
            elapsed_s: secs,
            req_per_sec: if secs > 0.0 {
                self.requests() as f64 / secs
            } else {
                0.0
            },
            ok_per_sec: if secs > 0.0 {
                self.ok as f64 / secs
            } else {
                0.0
            },
            latency_ms: Latency {
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                max: if answered { ms(self.hist.max()) } else { 0.0 },
                mean: if answered {
                    self.hist.mean() / 1000.0
                } else {
                    0.0
                },
            },
        }
    }
}

/// Latency percentiles of the answered requests (transport errors have none).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// What is reported for one scenario at one concurrency level.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Non-2xx answers by status code (JSON object keys are strings).
    pub errors_by_status: BTreeMap<String, u64>,
    pub transport_errors: u64,
    pub elapsed_s: f64,
    /// All requests (ok and errors) per second of the measurement.
    pub req_per_sec: f64,
    pub ok_per_sec: f64,
    pub latency_ms: Latency,
}

/// One measurement's raw result: a tally per plan, and how long it took.
pub struct Outcome {
    pub tallies: Vec<Tally>,
    pub elapsed: Duration,
}

impl Outcome {
    /// All plans' tallies merged (a mix's total).
    pub fn total(&self) -> Result<Tally> {
        let mut total = Tally::new()?;
        for t in &self.tallies {
            total.merge(t)?;
        }
        Ok(total)
    }
}

/// A plan resolved against a base URL, ready to send.
struct Ready {
    method: Method,
    urls: Vec<Url>,
    bodies: Vec<bytes::Bytes>,
    token: Option<HeaderValue>,
}

/// Runs `concurrency` closed-loop clients against `base` (the server's base
/// URL) until `stop`. Each request picks a plan by weight, then a path and a
/// body of that plan at random. Returns a tally per plan, in `plans`' order.
pub async fn measure(
    http: &reqwest::Client,
    base: &str,
    plans: &[(Plan, u32)],
    concurrency: usize,
    stop: Stop,
) -> Result<Outcome> {
    let base = base.trim_end_matches('/');
    let mut ready = Vec::with_capacity(plans.len());
    for (plan, _) in plans {
        if plan.paths.is_empty() {
            anyhow::bail!("a plan without paths");
        }
        let urls = plan
            .paths
            .iter()
            .map(|p| {
                Url::parse(&format!("{base}/v1/{p}"))
                    .with_context(|| format!("bad URL {base}/v1/{p}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let token = match &plan.token {
            Some(t) => {
                let mut v =
                    HeaderValue::from_str(t).context("the token is not a valid header value")?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        ready.push(Ready {
            method: plan.method.clone(),
            urls,
            bodies: plan.bodies.clone(),
            token,
        });
    }
    let ready = Arc::new(ready);
    let schedule = Arc::new(schedule(&plans.iter().map(|(_, w)| *w).collect::<Vec<_>>()));
    let start = Instant::now();
    let limit = match stop {
        Stop::Duration(d) => Limit::Deadline(start + d),
        Stop::Requests(n) => Limit::Count(Arc::new(AtomicU64::new(0)), n),
    };
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..concurrency.max(1) {
        let (http, ready, schedule, limit) =
            (http.clone(), ready.clone(), schedule.clone(), limit.clone());
        let mut tallies = Vec::with_capacity(ready.len());
        for _ in 0..ready.len() {
            tallies.push(Tally::new()?);
        }
        clients.spawn(client(http, ready, schedule, limit, tallies, c as u64));
    }
    let mut total: Vec<Tally> = Vec::new();
    while let Some(done) = clients.join_next().await {
        let tallies = done.context("a load client panicked")?;
        if total.is_empty() {
            total = tallies;
        } else {
            for (t, o) in total.iter_mut().zip(&tallies) {
                t.merge(o)?;
            }
        }
    }
    Ok(Outcome {
        tallies: total,
        elapsed: start.elapsed(),
    })
}

#[derive(Clone)]
enum Limit {
    Deadline(Instant),
    Count(Arc<AtomicU64>, u64),
}

async fn client(
    http: reqwest::Client,
    ready: Arc<Vec<Ready>>,
    schedule: Arc<Vec<usize>>,
    limit: Limit,
    mut tallies: Vec<Tally>,
    index: u64,
) -> Vec<Tally> {
    let mut rng = (index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    loop {
        match &limit {
            Limit::Deadline(d) if Instant::now() >= *d => break,
            Limit::Count(sent, n) if sent.fetch_add(1, Ordering::Relaxed) >= *n => break,
            _ => {}
        }
        rng = xorshift(rng);
        let which = schedule[(rng % schedule.len() as u64) as usize];
        let plan = &ready[which];
        let url = plan.urls[((rng >> 20) % plan.urls.len() as u64) as usize].clone();
        let mut req = http.request(plan.method.clone(), url);
        if let Some(token) = &plan.token {
            req = req.header("X-Vault-Token", token.clone());
        }
        if !plan.bodies.is_empty() {
            let body = plan.bodies[((rng >> 40) % plan.bodies.len() as u64) as usize].clone();
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let started = Instant::now();
        let status = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // The answer counts once it has been read in full.
                resp.bytes().await.ok().map(|_| status)
            }
            Err(_) => None,
        };
        tallies[which].record(status, started.elapsed());
    }
    tallies
}

/// Plan indices repeated by weight (weights divided by their gcd), so that a
/// uniform pick from it honours the mix.
fn schedule(weights: &[u32]) -> Vec<usize> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    weights
        .iter()
        .enumerate()
        .flat_map(|(i, w)| std::iter::repeat_n(i, (w / g).max(1) as usize))
        .collect()
}

/// One step of xorshift64: cheap, good enough to spread picks over keys.
pub(crate) fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_honours_weights() {
        assert_eq!(schedule(&[80, 20]), vec![0, 0, 0, 0, 1]);
        assert_eq!(schedule(&[1]), vec![0]);
        assert_eq!(schedule(&[3, 2]), vec![0, 0, 0, 1, 1]);
    }

    #[test]
    fn tally_counts_add_up() {
        let mut t = Tally::new().unwrap();
        t.record(Some(200), Duration::from_millis(2));
        t.record(Some(204), Duration::from_millis(4));
        t.record(Some(403), Duration::from_millis(1));
        t.record(None, Duration::from_millis(1));
        let s = t.stats(Duration::from_secs(2));
        assert_eq!(
            (s.requests, s.ok, s.errors, s.transport_errors),
            (4, 2, 2, 1)
        );
        assert_eq!(s.errors_by_status.get("403"), Some(&1));
        assert_eq!(s.req_per_sec, 2.0);
        assert!(
            s.latency_ms.max >= 4.0 && s.latency_ms.max < 4.01,
            "{:?}",
            s.latency_ms
        );
    }
}
