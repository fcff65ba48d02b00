//! `bulwark-bench` against a real `bulwark server -dev` (build it first:
//! `cargo build --bin bulwark`): short runs at concurrency 2 that check what
//! the tool counts, sets up and cleans up, never how fast anything is.

use std::time::Duration;

use bulwark_bench::baseline::{self, Baseline};
use bulwark_bench::load::{self, Stats, Stop};
use bulwark_bench::report::Report;
use bulwark_bench::scenario::{Plan, Scenario};
use bulwark_bench::target::{http_client, Target};
use bulwark_bench::{run, Config};
use bulwark_e2e::{free_port, Proc, TestPg};
use serde_json::Value;

/// A dev server (root token `root`) in a temporary directory.
struct Dev {
    addr: String,
    _server: Proc,
    dir: tempfile::TempDir,
}

fn dev() -> Dev {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, addr) = bulwark_e2e::dev_server(dir.path(), &[]);
    Dev {
        addr,
        _server: server,
        dir,
    }
}

/// Short runs: 1 s per measurement at concurrency 2, a brief warm-up.
fn short(addr: &str, workloads: &[&str]) -> Config {
    let mut cfg = Config::new(addr, "root");
    cfg.workloads = workloads
        .iter()
        .map(|w| w.parse().expect("workload"))
        .collect();
    cfg.stop = Stop::Duration(Duration::from_secs(1));
    cfg.concurrency = vec![2];
    cfg.warmup = Duration::from_millis(200);
    cfg.keys = 20;
    cfg
}

fn assert_adds_up(label: &str, s: &Stats) {
    assert!(s.requests > 0, "{label}: no request sent: {s:?}");
    assert_eq!(s.requests, s.ok + s.errors, "{label}: {s:?}");
    assert_eq!(
        s.errors,
        s.errors_by_status.values().sum::<u64>() + s.transport_errors,
        "{label}: {s:?}"
    );
    let rate = s.requests as f64 / s.elapsed_s;
    assert!(
        (s.req_per_sec - rate).abs() < 1e-6 * rate.max(1.0),
        "{label}: {s:?}"
    );
}

fn result<'a>(
    report: &'a Report,
    workload: &str,
    scenario: &str,
) -> &'a bulwark_bench::report::ScenarioResult {
    report.levels[0]
        .results
        .iter()
        .find(|r| r.workload == workload && r.scenario == scenario)
        .unwrap_or_else(|| {
            panic!(
                "no result for {scenario} in {workload}: {:#?}",
                report.levels
            )
        })
}

/// The mounts, auth methods and audit devices of the server whose names start with `prefix`.
async fn leftovers(addr: &str, prefix: &str) -> Vec<String> {
    let root = Target::new(
        addr,
        "root",
        http_client(None, Duration::from_secs(10)).expect("client"),
    );
    let mut left = Vec::new();
    for table in ["sys/mounts", "sys/auth", "sys/audit"] {
        let v = root.read(table).await.expect(table);
        let keys = v["data"].as_object().expect("data map").keys();
        left.extend(
            keys.filter(|k| k.starts_with(prefix))
                .map(|k| format!("{table}: {k}")),
        );
    }
    let (status, _) = root
        .raw(
            reqwest::Method::GET,
            &format!("sys/policies/acl/{prefix}"),
            None,
        )
        .await
        .expect("policy read");
    if status != 404 {
        left.push(format!("policy {prefix} ({status})"));
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_with_audit_ratios_and_cleanup() {
    let dev = dev();
    let pg = TestPg::new().await;
    let audit = dev.dir.path().join("audit.log");
    let mut names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
    names.push("kv2-read=3,kv2-write=1");
    let mut cfg = short(&dev.addr, &names);
    cfg.pg_url = Some(pg.url.clone());
    cfg.leases = 3;
    cfg.audit_file = Some(audit.to_str().expect("utf-8 path").to_string());
    let out = dev.dir.path().join("report.json");

    let report = run(&cfg).await.expect("run");
    std::fs::write(&out, report.to_json()).expect("write report");

    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(
        report.cleanup_warnings.is_empty(),
        "{:?}",
        report.cleanup_warnings
    );
    assert_eq!(report.levels.len(), 1);
    let level = &report.levels[0];
    assert_eq!(level.concurrency, 2);

    let base = level.baseline.as_ref().expect("baseline measured");
    assert_adds_up("baseline", &base.stats);
    assert_eq!(base.stats.ok, base.stats.requests, "{:?}", base.stats);
    // Sized after the target's own kv v2 read answer.
    assert!(
        base.body_bytes > baseline::min_body_len(),
        "{}",
        base.body_bytes
    );

    for s in Scenario::ALL {
        let r = result(&report, s.name(), s.name());
        assert_adds_up(s.name(), &r.stats);
        assert!(r.stats.ok > 0, "{s}: nothing succeeded: {:?}", r.stats);
        assert_eq!(r.stats.errors, 0, "{s}: {:?}", r.stats);
        let want = r.stats.req_per_sec / base.stats.req_per_sec;
        assert!(
            (r.req_per_sec_ratio.expect("ratio") - want).abs() < 1e-9,
            "{s}"
        );
        let want = r.stats.latency_ms.p99 / base.stats.latency_ms.p99;
        assert!((r.p99_ratio.expect("p99 ratio") - want).abs() < 1e-9, "{s}");
    }

    let mix = "kv2-read=3,kv2-write=1";
    let (read, write, total) = (
        result(&report, mix, "kv2-read"),
        result(&report, mix, "kv2-write"),
        result(&report, mix, "mix"),
    );
    assert!(
        read.stats.ok > 0 && write.stats.ok > 0,
        "{read:?} {write:?}"
    );
    assert_adds_up("mix", &total.stats);
    assert_eq!(
        total.stats.requests,
        read.stats.requests + write.stats.requests
    );
    assert_eq!(total.stats.ok, read.stats.ok + write.stats.ok);
    assert_eq!((read.weight, write.weight, total.weight), (3, 1, 4));

    // The JSON document carries machine, target, baseline and ratios.
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("read report"))
        .expect("JSON report");
    assert_eq!(json["target"], dev.addr.as_str());
    assert!(
        json["machine"]["cores"].as_u64().is_some_and(|c| c >= 1),
        "{}",
        json["machine"]
    );
    assert_eq!(
        json["settings"]["audit_file"],
        cfg.audit_file.as_deref().unwrap_or_default()
    );
    let jl = &json["levels"][0];
    assert!(
        jl["baseline"]["req_per_sec"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{}",
        jl["baseline"]
    );
    assert_eq!(jl["baseline"]["body_bytes"], base.body_bytes);
    let results = jl["results"].as_array().expect("results");
    assert_eq!(results.len(), Scenario::ALL.len() + 3);
    for r in results {
        for key in [
            "requests",
            "ok",
            "errors",
            "transport_errors",
            "req_per_sec",
            "req_per_sec_ratio",
            "p99_ratio",
        ] {
            assert!(r[key].is_number(), "{key} missing in {r}");
        }
        assert!(r["latency_ms"]["p99"].is_number(), "{r}");
        assert!(r["errors_by_status"].is_object(), "{r}");
    }
    let table = report.to_table();
    assert!(
        table.contains("baseline (") && table.contains("transit-hmac"),
        "{table}"
    );

    // Measured with the audit device on, removed again afterwards.
    let log = std::fs::read_to_string(&audit).expect("audit log written");
    assert!(
        log.contains(&format!("{}-kv2r/data/key-", report.prefix)),
        "kv reads not audited"
    );
    assert!(
        log.contains("auth/token/create"),
        "token creation not audited"
    );
    // Three leases seeded through the API; their mount (and so the leases)
    // is gone after cleanup.
    assert_eq!(
        log.matches(&format!("\"path\":\"{}-leases/creds/seed\"", report.prefix))
            .count(),
        3 * 2,
        "three lease reads, request and response entries"
    );
    assert!(
        report
            .created
            .iter()
            .any(|c| c.starts_with("3 live 2h database leases")),
        "{:?}",
        report.created
    );
    let left = leftovers(&dev.addr, &report.prefix).await;
    assert!(left.is_empty(), "not cleaned up: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_counts_wrong_tokens_and_skips() {
    let dev = dev();

    // By count: exactly that many requests, split over the mix.
    let mut cfg = short(&dev.addr, &["kv2-read=3,kv2-write=1", "db-creds"]);
    cfg.stop = Stop::Requests(200);
    cfg.baseline = false;
    let report = run(&cfg).await.expect("run by count");
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(
        report.skipped[0].contains("-pg-url"),
        "{:?}",
        report.skipped
    );
    assert!(report.levels[0].baseline.is_none());
    let mix = "kv2-read=3,kv2-write=1";
    let total = result(&report, mix, "mix");
    assert_eq!(total.stats.requests, 200, "{:?}", total.stats);
    assert_eq!(total.stats.ok, 200, "{:?}", total.stats);
    assert!(total.req_per_sec_ratio.is_none());
    let (r, w) = (
        result(&report, mix, "kv2-read"),
        result(&report, mix, "kv2-write"),
    );
    assert!(r.stats.requests > 0 && w.stats.requests > 0);
    assert_eq!(r.stats.requests + w.stats.requests, 200);
    assert_eq!(
        report.levels[0].results.len(),
        3,
        "db-creds measured without a URL"
    );
    assert!(leftovers(&dev.addr, &report.prefix).await.is_empty());

    // A token the server does not know: every request is a 403, counted by status.
    let mut cfg = short(&dev.addr, &["kv2-read", "token-create", "transit-hmac"]);
    cfg.request_token = Some("hvs.not-a-real-token".into());
    let report = run(&cfg).await.expect("run with a wrong token");
    for name in ["kv2-read", "token-create", "transit-hmac"] {
        let s = &result(&report, name, name).stats;
        assert_adds_up(name, s);
        assert_eq!(s.ok, 0, "{name}: {s:?}");
        assert_eq!(s.transport_errors, 0, "{name}: {s:?}");
        assert_eq!(
            s.errors_by_status.get("403"),
            Some(&s.requests),
            "{name}: {s:?}"
        );
    }
    let table = report.to_table();
    assert!(table.contains("HTTP 403 x"), "{table}");
    assert!(leftovers(&dev.addr, &report.prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_address_counts_transport_errors() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let http = http_client(None, Duration::from_secs(2)).expect("client");
    let plan = Plan {
        method: reqwest::Method::GET,
        paths: vec!["secret/data/a".into(), "secret/data/b".into()],
        bodies: Vec::new(),
        token: Some("root".into()),
    };
    let out = load::measure(&http, &dead, &[(plan.clone(), 1)], 2, Stop::Requests(50))
        .await
        .expect("measure");
    let s = out.total().expect("total").stats(out.elapsed);
    assert_eq!(
        (s.requests, s.ok, s.transport_errors, s.errors),
        (50, 0, 50, 50),
        "{s:?}"
    );
    assert!(s.errors_by_status.is_empty(), "{s:?}");

    let out = load::measure(
        &http,
        &dead,
        &[(plan, 1)],
        2,
        Stop::Duration(Duration::from_millis(300)),
    )
    .await
    .expect("measure");
    let s = out.total().expect("total").stats(out.elapsed);
    assert_adds_up("dead address", &s);
    assert_eq!(s.transport_errors, s.requests, "{s:?}");

    // A whole run stops at setup, naming the address.
    let err = run(&short(&dead, &["kv2-read"]))
        .await
        .expect_err("setup fails");
    assert!(format!("{err:#}").contains(&dead), "{err:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn baseline_answers_a_vault_shaped_body() {
    let server = Baseline::start(baseline::vault_shaped_body(700))
        .await
        .expect("baseline");
    assert_eq!(server.body_len(), 700);
    let http = http_client(None, Duration::from_secs(5)).expect("client");
    let resp = http
        .get(format!("{}/v1/secret/data/anything", server.url()))
        .send()
        .await
        .expect("baseline answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), 700);
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert!(v["request_id"].is_string(), "{v}");
    assert_eq!(v["lease_id"], "");
    assert_eq!(v["renewable"], false);
    assert_eq!(v["lease_duration"], 0);
    assert!(v["data"]["data"].is_object(), "{v}");
    assert_eq!(v["data"]["metadata"]["version"], 1);
    assert!(v["data"]["metadata"]["created_time"].is_string(), "{v}");
    for key in ["wrap_info", "warnings", "auth"] {
        assert!(v.get(key).is_some_and(Value::is_null), "{key} in {v}");
    }

    let plan = Plan {
        method: reqwest::Method::GET,
        paths: vec!["secret/data/x".into()],
        bodies: Vec::new(),
        token: Some("t".into()),
    };
    let out = load::measure(&http, &server.url(), &[(plan, 1)], 2, Stop::Requests(300))
        .await
        .expect("measure");
    let s = out.total().expect("total").stats(out.elapsed);
    assert_eq!((s.requests, s.ok, s.errors), (300, 300, 0), "{s:?}");
    assert!(
        s.latency_ms.p50 > 0.0 && s.latency_ms.p50 <= s.latency_ms.max,
        "{s:?}"
    );
}
