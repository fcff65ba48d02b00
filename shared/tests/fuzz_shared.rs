//! Fuzz targets (issue 13) for the config file parser and TTL parsing,
//! through the crate's public API only.
//!
//! * `config_*`: mutated valid config files and deep nesting parse to `Ok`
//!   or to an error naming the file, and syntax errors name `file:LINE`.
//! * `ttl_*`: `parse_duration(format_go_duration(d)) == d`; Go duration
//!   strings built from parts parse to their sum; garbage and huge values
//!   are errors, never panics.
//!
//! Cases per target: `BULWARK_FUZZ_CASES` (small by default; see FUZZING.md).

use std::time::Duration;

use bulwark_shared::config::{ConfigError, ServerConfig};
use bulwark_shared::ttl::{format_go_duration, parse_duration, parse_duration_value};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// `BULWARK_FUZZ_CASES` cases, else `default`; no failure files (failures
/// become explicit regression tests).
fn cfg(default: u32) -> Config {
    let cases = std::env::var("BULWARK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// Target 6: the config file parser.
// ---------------------------------------------------------------------------

const FILE: &str = "fuzz.hcl";

/// Valid configs covering every block.
const VALID: [&str; 4] = [
    r#"
target = ["seal", "gateway"]
storage "postgresql" { connection_url = "postgres://x@h/db" }
listener "tcp" {
  address = "0.0.0.0:8200"
  tls_disable = true
}
cluster {
  cert_dir = "/c"
  auth = ["10.0.0.2:8302", "10.0.0.3:8302"]
  policy = "p:1"
  kv = "k:1"
  dynamic-db = "d:1"
  pki = "pk:1"
  audit = "a:1"
  transit = "t:1"
}
log_format = "json"
ui = true
disable_mlock = true
max_request_in_flight = 512
telemetry {
  otlp_endpoint = "http://collector:4318"
  otlp_protocol = "http/protobuf"
  trace_sampling_ratio = 0.25
  metrics_address = "0.0.0.0:9102"
  unauthenticated_metrics_access = "true"
  prometheus_retention_time = "24h"
  disable_hostname = true
}
"#,
    r#"
storage "sqlite" { path = "/var/lib/bulwark/bulwark.db" }
listener "tcp" {
  address       = "127.0.0.1:8200"
  tls_cert_file = "/etc/bulwark/tls/api.pem"
  tls_key_file  = "/etc/bulwark/tls/api-key.pem"
  tls_client_ca_file = "/etc/bulwark/tls/ca.pem"
  tls_require_and_verify_client_cert = true
}
log_level = "debug"
seal "static" {
  current_key_id = "20250606-1"
  current_key    = "file:///etc/bulwark/seal.key"
}
"#,
    r#"
target = "all"
storage "sqlite" { path = ":memory:" }
listener "tcp" { tls_disable = 1 }
seal "transit" {
  address     = "https://bulwark-a:8200"
  token       = "hvs.abc"
  key_name    = "autounseal"
  mount_path  = "transit/"
}
"#,
    "storage \"postgresql\" {\n  connection_url = \"postgres://u@h/db\"\n  max_connections = 4\n  table_prefix = \"bw_\"\n}\nlistener \"tcp\" { tls_disable = true }\n",
];

/// Pieces of config text for insertions.
const TOKENS: [&str; 30] = [
    "{",
    "}",
    "[",
    "]",
    "=",
    ",",
    "\n",
    "\"",
    "#",
    "/*",
    "<<EOF\n",
    "${",
    "%{",
    "1e999999",
    "-1",
    "99999999999999999999999",
    "true",
    "null",
    "storage",
    "listener",
    "seal",
    "cluster",
    "telemetry",
    "target",
    "\"tcp\"",
    "\"sqlite\"",
    "é",
    "\u{0}",
    "\u{feff}",
    "max_request_in_flight",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Flip(usize, u8),
    Insert(usize, &'static str),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop::sample::select(&TOKENS[..]))
            .prop_map(|(i, t)| Mutation::Insert(i, t)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..80usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len();
        let at = |i: usize| i % (len + 1);
        match *m {
            Mutation::Delete(i, n) if len > 0 => {
                let i = i % len;
                bytes.drain(i..(i + n).min(len));
            }
            Mutation::Flip(i, b) if len > 0 => {
                let i = i % len;
                bytes[i] = b;
            }
            Mutation::Insert(i, t) => {
                let i = at(i);
                bytes.splice(i..i, t.bytes());
            }
            Mutation::Truncate(i) => bytes.truncate(at(i)),
            Mutation::Duplicate(i, n) => {
                let i = at(i);
                let piece = bytes[i..(i + n).min(len)].to_vec();
                bytes.splice(i..i, piece);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Parses `text` as a config file: a refusal names the file, and a syntax
/// error (text the HCL parser cannot read) names `file:LINE`.
fn check_config(text: &str) -> Result<(), TestCaseError> {
    let Err(e) = ServerConfig::parse(FILE, text) else {
        return Ok(());
    };
    let shown = e.to_string();
    prop_assert!(shown.starts_with(FILE), "{}", shown);
    let syntax = bulwark_shared::hcl_depth::check(text).is_err() || hcl::parse(text).is_err();
    if syntax {
        let ConfigError::Parse { file, .. } = &e else {
            return Err(TestCaseError::fail(format!("a syntax error as {e:?}")));
        };
        let line = file
            .strip_prefix(&format!("{FILE}:"))
            .and_then(|rest| rest.split(':').next())
            .and_then(|l| l.parse::<usize>().ok());
        prop_assert!(
            line.is_some_and(|l| l >= 1 && l <= text.lines().count().max(1) + 1),
            "a syntax error without its line: {}",
            shown
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(1024))]

    #[test]
    fn config_survives_mutations(
        base in prop::sample::select(&VALID[..]),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_config(&mutate(base, &mutations))?;
    }

    #[test]
    fn config_survives_arbitrary_text(text in any::<String>()) {
        check_config(&text)?;
    }

    #[test]
    fn config_survives_deep_nesting(
        depth in 1..5_000usize,
        unit in prop::sample::select(&["[", "{ a = ", "(", "!", "-", "1 + ", "\"${", "true ? 1 : "][..]),
        key in prop::sample::select(&["max_request_in_flight", "target", "ui", "log_level"][..]),
    ) {
        let text = format!("{key} = {}\n", unit.repeat(depth));
        // On a thread with a tokio worker's stack: the server parses its
        // config before its runtime starts, on the main thread (8 MiB), so
        // this is the stricter test.
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let r = ServerConfig::parse(FILE, &text).map(|_| ()).map_err(|e| e.to_string());
                (r, text)
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .join()
            .map_err(|_| TestCaseError::fail("panicked"))?;
        if let (Err(_), text) = outcome {
            check_config(&text)?;
        }
    }

    #[test]
    fn config_valid_files_parse(base in prop::sample::select(&VALID[..])) {
        prop_assert!(ServerConfig::parse(FILE, base).is_ok(), "{:?}", ServerConfig::parse(FILE, base).err());
    }
}

/// Found by `config_survives_deep_nesting`: a value nested a thousand
/// levels deep overflowed the stack in the `hcl` parser (the process
/// aborts); now an error at its line.
#[test]
fn regression_config_deep_nesting_is_refused_at_its_line() {
    let text = format!("ui = true\nmax_request_in_flight = {}\n", "[".repeat(1000));
    let e = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            ServerConfig::parse(FILE, &text)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .expect("spawn")
        .join()
        .expect("no panic")
        .expect_err("refused");
    assert!(e.starts_with("fuzz.hcl:2:"), "{e}");
    assert!(e.contains("nesting deeper than"), "{e}");
}

// ---------------------------------------------------------------------------
// Target 7: TTLs and durations.
// ---------------------------------------------------------------------------

/// Seconds for which `f64` arithmetic is exact (2^53).
const EXACT_SECS: u64 = 1 << 53;

proptest! {
    #![proptest_config(cfg(4096))]

    #[test]
    fn ttl_format_round_trips(secs in prop_oneof![0..100_000u64, 0..EXACT_SECS]) {
        let d = Duration::from_secs(secs);
        let text = format_go_duration(d);
        prop_assert_eq!(parse_duration(&text), Ok(d), "{}", text);
        // Whole seconds, as a number or its text.
        prop_assert_eq!(parse_duration(&secs.to_string()), Ok(d));
        prop_assert_eq!(parse_duration_value(&serde_json::json!(secs)), Ok(Some(d)));
    }

    #[test]
    fn ttl_any_whole_seconds_parse(secs in any::<u64>()) {
        prop_assert_eq!(parse_duration(&secs.to_string()), Ok(Duration::from_secs(secs)));
        prop_assert_eq!(parse_duration(&format!(" +{secs} ")), Ok(Duration::from_secs(secs)));
    }

    #[test]
    fn ttl_parts_sum(parts in prop::collection::vec((0..100_000u64, prop::sample::select(&[
        ("ns", 1u128), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ][..])), 1..6)) {
        let text: String = parts.iter().map(|(v, (unit, _))| format!("{v}{unit}")).collect();
        let want: u128 = parts.iter().map(|(v, (_, ns))| u128::from(*v) * ns).sum();
        let got = parse_duration(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Summed in f64 seconds: equal up to rounding.
        let diff = got.as_nanos().abs_diff(want);
        prop_assert!(diff <= want / 1_000_000_000_000 + 1_000, "{}: {:?} vs {}ns", text, got, want);
    }

    #[test]
    fn ttl_garbage_is_an_error_not_a_panic(text in prop_oneof![
        any::<String>(),
        "[-+]?[0-9.]{0,30}(e[+-]?[0-9]{1,5})?(ns|us|µs|ms|s|m|h|d|x|)([0-9.]{0,5}[a-zµ]{0,2}){0,4}",
        "[0-9]{15,400}(h|d|s|ms)?",
        Just("1e309".to_string()),
        Just("9999999999999999999h".to_string()),
        Just("-1".to_string()),
        Just(".s".to_string()),
        Just("1..5s".to_string()),
    ]) {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(!text.trim().starts_with('-'), "negative accepted: {}", text);
            // Whatever parses prints and parses back (to whole seconds).
            if d.as_secs() < EXACT_SECS {
                let whole = Duration::from_secs(d.as_secs());
                prop_assert_eq!(parse_duration(&format_go_duration(d)), Ok(whole), "{}", text);
            }
        }
        let _ = parse_duration_value(&serde_json::Value::String(text));
    }

    #[test]
    fn ttl_json_numbers(n in prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
    ]) {
        let r = parse_duration_value(&n);
        match n.as_u64() {
            Some(secs) => prop_assert_eq!(r, Ok(Some(Duration::from_secs(secs)))),
            None if n.is_null() => prop_assert_eq!(r, Ok(None)),
            None => prop_assert!(r.is_err()),
        }
    }
}

#[test]
fn ttl_known_hostile_inputs() {
    for bad in [
        "1e309",
        "9999999999999999999h",
        "99999999999999999999999999999999999999999999999999d",
        "-1",
        "-0",
        "1h-1m",
        "",
        " ",
        "s",
        "1.2.3s",
        "1e5s",
        "\u{0}",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_duration("18446744073709551615"),
        Ok(Duration::from_secs(u64::MAX))
    );
}
