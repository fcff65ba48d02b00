//! The command line, vault-benchmark style: single-dash long flags
//! (`-duration 10s`; `--duration` works too), `VAULT_ADDR`, `VAULT_TOKEN` and
//! `VAULT_CACERT` honoured, flags winning over them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, Parser};

use crate::load::Stop;
use crate::scenario::Workload;
use crate::Config;

/// Load generator for any Vault-API server, measured against a bare HTTP baseline.
#[derive(Parser)]
#[command(name = "bulwark-bench", version)]
pub struct Args {
    /// The server's address.
    #[arg(long, env = "VAULT_ADDR", default_value = "http://127.0.0.1:8200")]
    pub address: String,
    /// Token for setup and cleanup (mounts, auth methods, policies, audit): a root token.
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed an HTTPS server's certificate.
    #[arg(long = "ca-cert", env = "VAULT_CACERT")]
    pub ca_cert: Option<PathBuf>,
    /// A workload: one scenario (`kv2-read`) or a weighted mix
    /// (`kv2-read=80,kv2-write=20`). Repeat the flag to measure several in turn.
    /// Scenarios: kv2-read kv2-write kv1-read token-create userpass-login
    /// approle-login pki-issue db-creds transit-hmac transit-encrypt.
    #[arg(long = "scenario", default_value = "kv2-read")]
    pub scenario: Vec<String>,
    /// How long each measurement runs (`10s`, `500ms`, `1m`).
    #[arg(long, default_value = "10s", conflicts_with = "requests")]
    pub duration: String,
    /// Run each measurement for this many requests instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Concurrency levels (closed-loop clients), measured in turn: `1,16,64`.
    #[arg(long, default_value = "16")]
    pub concurrency: String,
    /// Unmeasured load before each measurement.
    #[arg(long, default_value = "2s")]
    pub warmup: String,
    /// Secrets seeded for the read scenarios (and keys written over by kv2-write).
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Extra live tokens (2h TTL) created before measuring, revoked at
    /// cleanup: cost growth with the number of tokens.
    #[arg(long, default_value_t = 0)]
    pub tokens: usize,
    /// Extra live leases (2h dynamic PostgreSQL credentials, needs -pg-url)
    /// created before measuring, revoked at cleanup: cost growth with the
    /// number of leases.
    #[arg(long, default_value_t = 0)]
    pub leases: usize,
    /// Output format on stdout: table or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Measure the in-process bare HTTP baseline too (`-baseline=false` to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub baseline: bool,
    /// PostgreSQL connection URL for db-creds (skipped without it).
    #[arg(long = "pg-url")]
    pub pg_url: Option<String>,
    /// Enable a file audit device writing here for the run (as production runs).
    #[arg(long = "audit-file")]
    pub audit_file: Option<String>,
    /// Send the measured requests with this token instead of a scoped one made in setup.
    #[arg(long = "request-token", hide_env_values = true)]
    pub request_token: Option<String>,
    /// Set up, print what was created, and leave it there.
    #[arg(long = "setup-only")]
    pub setup_only: bool,
    /// Leave what setup created after measuring.
    #[arg(long = "no-cleanup")]
    pub no_cleanup: bool,
    /// Per-request timeout; a request over it counts as a transport error.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// Parses the process's arguments after [`normalize`].
    pub fn from_env() -> Args {
        Args::parse_from(normalize(std::env::args_os()))
    }

    /// The run's configuration; reads the CA file.
    pub fn into_config(self) -> Result<Config> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("no token: pass -token or set VAULT_TOKEN"))?;
        let mut cfg = Config::new(&self.address, &token);
        cfg.ca_cert_pem = match &self.ca_cert {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };
        cfg.workloads = self
            .scenario
            .iter()
            .map(|s| s.parse::<Workload>())
            .collect::<Result<_>>()?;
        cfg.stop = match self.requests {
            Some(0) => bail!("-requests must be at least 1"),
            Some(n) => Stop::Requests(n),
            None => Stop::Duration(parse_duration(&self.duration).context("-duration")?),
        };
        cfg.concurrency = parse_levels(&self.concurrency)?;
        cfg.warmup = parse_duration(&self.warmup).context("-warmup")?;
        if self.keys == 0 {
            bail!("-keys must be at least 1");
        }
        cfg.keys = self.keys;
        cfg.tokens = self.tokens;
        cfg.leases = self.leases;
        cfg.baseline = self.baseline;
        cfg.pg_url = self.pg_url.filter(|u| !u.is_empty());
        if cfg.leases > 0 && cfg.pg_url.is_none() {
            bail!("-leases needs -pg-url");
        }
        cfg.audit_file = self.audit_file;
        cfg.request_token = self.request_token;
        cfg.setup_only = self.setup_only;
        cfg.no_cleanup = self.no_cleanup;
        cfg.timeout = parse_duration(&self.timeout).context("-timeout")?;
        cfg.progress = !self.quiet;
        Ok(cfg)
    }
}

/// Turns Go-style `-flag` into `--flag` so that clap reads vault-benchmark's
/// spelling; `-h`, `-V`, negative numbers and everything after `--` are left alone.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for arg in args {
        let rewritten = match arg.to_str() {
            Some("--") => {
                rest = true;
                None
            }
            Some(s) if !rest && is_single_dash_long(s) => Some(OsString::from(format!("-{s}"))),
            _ => None,
        };
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

fn is_single_dash_long(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next() == Some('-')
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `10s`, `500ms`, `2m`, `1h`, `1m30s`, `1.5s`, or bare seconds (`10`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return secs_to_duration(secs, s);
    }
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| anyhow!("bad duration {s:?}: a number needs a unit (ms, s, m, h)"))?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num.parse().map_err(|_| anyhow!("bad duration {s:?}"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => bail!("bad duration {s:?}: unknown unit {unit:?} (ms, s, m, h)"),
        };
        total += value * scale;
        rest = tail;
    }
    secs_to_duration(total, s)
}

fn secs_to_duration(secs: f64, s: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| anyhow!("bad duration {s:?}"))
}

/// `1,16,64` → `[1, 16, 64]`.
pub fn parse_levels(s: &str) -> Result<Vec<usize>> {
    let levels = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(anyhow!(
                "bad concurrency level {p:?}: want a whole number ≥ 1"
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    if levels.is_empty() {
        bail!("no concurrency level given");
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn single_dash_flags_become_long_flags() {
        assert_eq!(
            normalize(os(&[
                "bench",
                "-duration",
                "2s",
                "-h",
                "--keys",
                "5",
                "-baseline=false",
                "-1",
                "--",
                "-x-y"
            ])),
            os(&[
                "bench",
                "--duration",
                "2s",
                "-h",
                "--keys",
                "5",
                "--baseline=false",
                "-1",
                "--",
                "-x-y"
            ])
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "s", "10x", "-1s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn command_line_to_config() {
        let args = Args::try_parse_from(normalize(os(&[
            "bulwark-bench",
            "-address",
            "http://10.0.0.1:8200/",
            "-token",
            "t",
            "-scenario",
            "kv2-read=80,kv2-write=20",
            "-scenario",
            "token-create",
            "-requests",
            "100",
            "-concurrency",
            "1,16,64",
            "-warmup",
            "0s",
            "-baseline=false",
            "-keys",
            "7",
        ])))
        .unwrap();
        let cfg = args.into_config().unwrap();
        assert_eq!(cfg.workloads.len(), 2);
        assert_eq!(cfg.workloads[0].name(), "kv2-read=80,kv2-write=20");
        assert_eq!(cfg.stop, Stop::Requests(100));
        assert_eq!(cfg.concurrency, vec![1, 16, 64]);
        assert!(!cfg.baseline);
        assert_eq!(cfg.keys, 7);
        assert_eq!(cfg.warmup, Duration::ZERO);
        assert!(parse_levels("1,0").is_err());
        let leases = |extra: &[&str]| {
            let mut argv = vec!["b", "-token", "t", "-leases", "5"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(normalize(os(&argv)))
                .unwrap()
                .into_config()
        };
        let err = leases(&[]).err().expect("-leases without -pg-url");
        assert!(err.to_string().contains("-pg-url"), "{err}");
        assert_eq!(leases(&["-pg-url", "postgres://x"]).unwrap().leases, 5);
        assert!(
            Args::try_parse_from(normalize(os(&["b", "-duration", "1s", "-requests", "5"])))
                .is_err()
        );
    }
}
