//! Tracing and metrics across every hop (issue 10), against real processes:
//!
//! * one kv read carries one trace through gateway → auth → policy → audit
//!   → kv, exported over OTLP/gRPC to a collector run by the test, with
//!   intact parent/child links, honouring the client's `traceparent`;
//! * OTLP/HTTP export and parent-based sampling (ratio 0: only traces the
//!   client sampled are exported);
//! * `sys/metrics` (Prometheus text and Vault's JSON), merged from every
//!   process, and a process's own `/metrics` listener;
//! * no secret value or raw token in any exported span or log line, and
//!   the request id in the log lines written while serving a request.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_e2e::otlp::{grpc_collector, http_collector, Collector, Got};
use bulwark_e2e::{init_unsealed, Api, Cluster, Layout, Options, Store};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use rand::RngCore;
use serde_json::json;

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(AnyValue::StringValue(s)) => Some(s.clone()),
            Some(AnyValue::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

/// `name{labels} value` lines of a Prometheus text exposition.
fn parse_prometheus(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = vec![];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value.parse().expect("numeric value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label=value");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.push((name, labels, value));
    }
    out
}

fn sample(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

async fn scrape(api: &Api) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let (status, text) = api.get_text("sys/metrics?format=prometheus").await;
    assert_eq!(status, 200, "{text}");
    parse_prometheus(&text)
}

/// Sets up a kv v2 mount with a secret, an audit device, and a token that
/// may read the secret. Returns (root, reader token, secret value).
async fn seed(c: &Cluster) -> (String, String, String) {
    let api = c.client();
    let root = init_unsealed(&api).await;
    let admin = api.with_token(&root);
    let r = admin
        .put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let log = c.dir.path().join("audit.log");
    let r = admin
        .put(
            "sys/audit/file",
            json!({"type": "file", "options": {"file_path": log.display().to_string()}}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let secret = format!("hunter2-{}", random_hex(12));
    let r = admin
        .put("secret/data/team/db", json!({"data": {"password": secret}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = admin
        .put(
            "sys/policies/acl/reader",
            json!({"policy": "path \"secret/data/*\" { capabilities = [\"read\"] }"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = admin
        .put("auth/token/create", json!({"policies": ["reader"]}))
        .await;
    let reader = r.body["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string();
    (root, reader, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_kv_read_is_one_trace_across_every_service() {
    let collector = Collector::default();
    let endpoint = grpc_collector(collector.clone()).await;
    let c = Cluster::start_with(
        Layout::Separate,
        Store::SqliteFile,
        Options {
            extra_config: format!(
                "log_format = \"json\"\ntelemetry {{\n  otlp_endpoint = \"{endpoint}\"\n  trace_sampling_ratio = 1.0\n}}\n"
            ),
            env: vec![
                ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
                (
                    "RUST_LOG".into(),
                    "debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info,tonic=info"
                        .into(),
                ),
            ],
            ..Default::default()
        },
    );
    let (root, reader, secret) = seed(&c).await;

    // The client starts the trace.
    let trace_hex = random_hex(16);
    let parent_hex = random_hex(8);
    let client = c
        .client()
        .with_token(&reader)
        .with_header("traceparent", &format!("00-{trace_hex}-{parent_hex}-01"));
    let r = client.get("secret/data/team/db").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["data"]["password"], secret.as_str());
    let request_id = r.body["request_id"]
        .as_str()
        .expect("request id")
        .to_string();
    let tp = r.headers["traceparent"].to_str().unwrap().to_string();
    assert!(
        tp.starts_with(&format!("00-{trace_hex}-")),
        "the response names the client's trace: {tp}"
    );

    let trace_id = hex::decode(&trace_hex).unwrap();
    let services = [
        "bulwark-gateway",
        "bulwark-auth",
        "bulwark-policy",
        "bulwark-audit",
        "bulwark-kv",
    ];
    let spans = collector.wait_for(&trace_id, &services).await;
    let by_id: BTreeMap<Vec<u8>, &Got> =
        spans.iter().map(|g| (g.span.span_id.clone(), g)).collect();

    // The root: the gateway's HTTP span, child of the client's span, named
    // by route template (not by the secret's path).
    let parent_id = hex::decode(&parent_hex).unwrap();
    let roots: Vec<&Got> = spans
        .iter()
        .filter(|g| g.span.parent_span_id == parent_id)
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "one span continues the client's: {roots:#?}"
    );
    let root_span = &roots[0].span;
    assert_eq!(roots[0].service, "bulwark-gateway");
    assert_eq!(root_span.name, "GET secret/data/:rest");
    assert_eq!(root_span.kind, SpanKind::Server as i32);
    assert_eq!(
        attr(root_span, "http.route").as_deref(),
        Some("secret/data/:rest")
    );
    assert_eq!(
        attr(root_span, "request_id").as_deref(),
        Some(request_id.as_str())
    );
    assert!(
        tp.contains(&hex::encode(&root_span.span_id)),
        "the response's traceparent names the gateway's span"
    );

    // Every other span's parent is in the trace: one connected tree.
    for g in &spans {
        if g.span.span_id == root_span.span_id {
            continue;
        }
        assert!(
            by_id.contains_key(&g.span.parent_span_id),
            "{} span {:?} has a parent outside the trace",
            g.service,
            g.span.name
        );
    }
    // Each service's server span is the child of a client span of the same
    // method in another process.
    for svc in &services[1..] {
        let servers: Vec<&Got> = spans
            .iter()
            .filter(|g| g.service == *svc && g.span.kind == SpanKind::Server as i32)
            .collect();
        assert!(!servers.is_empty(), "{svc} served part of the read");
        for s in servers {
            let parent = by_id[&s.span.parent_span_id];
            assert_eq!(parent.span.kind, SpanKind::Client as i32, "{svc}");
            assert_ne!(parent.service, *svc);
            assert_eq!(parent.span.name, s.span.name);
            assert_eq!(
                attr(&s.span, "request_id").as_deref(),
                Some(request_id.as_str()),
                "{svc} knows the request id"
            );
        }
    }
    let kv_read = spans
        .iter()
        .find(|g| g.service == "bulwark-kv" && g.span.name.starts_with("/bulwark.kv.v1.Kv/"))
        .expect("kv server span");
    assert_eq!(
        by_id[&kv_read.span.parent_span_id].service,
        "bulwark-gateway"
    );
    let descends_from_kv_read = |g: &Got| {
        let mut at = g;
        while let Some(parent) = by_id.get(&at.span.parent_span_id) {
            if parent.span.span_id == kv_read.span.span_id {
                return true;
            }
            at = parent;
        }
        false
    };
    assert!(
        spans.iter().any(|g| g.service == "bulwark-kv"
            && g.span.name == "storage.get"
            && descends_from_kv_read(g)),
        "kv's storage read is below its RPC span"
    );

    // Without a client trace the gateway starts one and names it.
    let r = c
        .client()
        .with_token(&reader)
        .get("secret/data/team/db")
        .await;
    let tp = r.headers["traceparent"].to_str().unwrap().to_string();
    let own_trace = hex::decode(tp.split('-').nth(1).unwrap()).unwrap();
    collector
        .wait_for(&own_trace, &["bulwark-gateway", "bulwark-kv"])
        .await;

    // Metrics: every process merged into sys/metrics, counters moving.
    let admin = c.client().with_token(&root);
    let before = scrape(&admin).await;
    let route = [
        ("route", "secret/data/:rest"),
        ("method", "GET"),
        ("code", "200"),
        ("process", "gateway"),
    ];
    let n0 = sample(&before, "bulwark_http_requests_total", &route).expect("read counter");
    assert!(n0 >= 2.0, "{n0}");
    for _ in 0..3 {
        assert_eq!(client.get("secret/data/team/db").await.status, 200);
    }
    let after = scrape(&admin).await;
    assert_eq!(
        sample(&after, "bulwark_http_requests_total", &route),
        Some(n0 + 3.0)
    );
    assert_eq!(
        sample(&after, "vault_core_unsealed", &[("process", "seal")]),
        Some(1.0)
    );
    assert!(sample(&after, "vault_token_count", &[("process", "auth")]).is_some());
    assert!(sample(&after, "vault_expire_num_leases", &[("process", "auth")]).is_some());
    let kv_reads = sample(
        &after,
        "bulwark_grpc_server_handling_seconds_count",
        &[
            ("process", "kv"),
            ("code", "OK"),
            ("method", "/bulwark.kv.v1.Kv/ReadVersion"),
        ],
    );
    assert!(kv_reads.is_some_and(|n| n >= 5.0), "{kv_reads:?}");
    assert!(sample(
        &after,
        "bulwark_grpc_client_handling_seconds_count",
        &[
            ("process", "gateway"),
            // The gateway decides with compiled ACLs, built from the texts
            // the policy service serves.
            ("method", "/bulwark.policy.v1.Policy/GetPolicy")
        ],
    )
    .is_some());
    assert!(sample(
        &after,
        "bulwark_storage_operation_seconds_count",
        &[("process", "kv"), ("namespace", "kv"), ("op", "get")],
    )
    .is_some());
    assert!(sample(
        &after,
        "vault_audit_log_request_count",
        &[("process", "gateway")]
    )
    .is_some_and(|n| n >= 5.0));
    // Vault's JSON layout.
    let r = admin.get("sys/metrics").await;
    assert_eq!(r.status, 200);
    let counters = r.body["Counters"].as_array().expect("Counters");
    assert!(counters
        .iter()
        .any(|c| c["Name"] == "bulwark_http_requests_total"
            && c["Labels"]["route"] == "secret/data/:rest"));
    assert!(r.body["Gauges"].as_array().is_some_and(|g| !g.is_empty()));
    assert!(r.body["Samples"].as_array().is_some_and(|s| !s.is_empty()));
    // A token is needed, the format must be known.
    assert_eq!(c.client().get("sys/metrics").await.status, 403);
    assert_eq!(
        c.client()
            .with_token(&reader)
            .get("sys/metrics")
            .await
            .status,
        403
    );
    let r = admin.get("sys/metrics?format=xml").await;
    assert_eq!(r.status, 400);
    assert!(r.errors()[0].contains("format"), "{:?}", r.body);
    // sys/config/metrics (walkthrough 003: `write sys/config/metrics enable=true`).
    let r = admin
        .put("sys/config/metrics", json!({"enable": false}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(admin.get("sys/metrics").await.status, 400);
    let r = admin
        .put("sys/config/metrics", json!({"enable": true}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        admin.get("sys/config/metrics").await.body["data"]["enabled"],
        true
    );
    assert_eq!(admin.get("sys/metrics").await.status, 200);
    let r = admin
        .put("sys/config/metrics", json!({"enable": "sometimes"}))
        .await;
    assert_eq!(r.status, 400);
    let r = admin
        .raw("PUT", "sys/config/metrics", Some(b"{not json".to_vec()))
        .await;
    assert_eq!(r.status, 400);

    // No secret and no raw token anywhere in what was exported or logged.
    let needles = [secret.as_str(), root.as_str(), reader.as_str()];
    let exported = format!("{:?}", collector.all());
    for n in needles {
        assert!(!exported.contains(n), "a span carries a secret or token");
    }
    let mut logged_request_id = false;
    for p in &c.procs {
        let log = std::fs::read_to_string(&p.stderr).unwrap_or_default();
        for n in needles {
            assert!(
                !log.contains(n),
                "{}'s log carries a secret or token",
                p.name
            );
        }
        if p.name == "kv" {
            // JSON lines; those written while serving the read name it.
            for line in log.lines().filter(|l| l.contains(&request_id)) {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
                assert!(v["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["request_id"] == request_id.as_str())));
                logged_request_id = true;
            }
        }
    }
    assert!(
        logged_request_id,
        "kv logged nothing for the read at debug level"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_export_follows_the_clients_sampling_and_metrics_listen() {
    let collector = Collector::default();
    let endpoint = http_collector(collector.clone()).await;
    let metrics_port = bulwark_e2e::free_port();
    let c = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            extra_config: format!(
                "telemetry {{\n  otlp_endpoint = \"{endpoint}\"\n  otlp_protocol = \"http/protobuf\"\n  trace_sampling_ratio = 0\n  metrics_address = \"127.0.0.1:{metrics_port}\"\n  unauthenticated_metrics_access = true\n}}\n"
            ),
            env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into())],
            ..Default::default()
        },
    );
    let (_root, reader, _secret) = seed(&c).await;

    // Not sampled by the client, ratio 0: nothing exported.
    let quiet = random_hex(16);
    let r = c
        .client()
        .with_token(&reader)
        .with_header("traceparent", &format!("00-{quiet}-{}-00", random_hex(8)))
        .get("secret/data/team/db")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers["traceparent"].to_str().unwrap().ends_with("-00"));
    // Sampled by the client: exported, whatever the ratio.
    let loud = random_hex(16);
    let r = c
        .client()
        .with_token(&reader)
        .with_header("traceparent", &format!("00-{loud}-{}-01", random_hex(8)))
        .get("secret/data/team/db")
        .await;
    assert_eq!(r.status, 200);
    let spans = collector
        .wait_for(&hex::decode(&loud).unwrap(), &["bulwark"])
        .await;
    let names: BTreeSet<&str> = spans.iter().map(|g| g.span.name.as_str()).collect();
    for want in [
        "GET secret/data/:rest",
        "/bulwark.audit.v1.Audit/Log",
        "/bulwark.kv.v1.Kv/ReadVersion",
        "storage.get",
    ] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    assert!(collector.trace(&hex::decode(&quiet).unwrap()).is_empty());

    // The process's own scrape target, and sys/metrics without a token.
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_prometheus(&text);
    assert!(
        sample(
            &samples,
            "bulwark_http_requests_total",
            &[("route", "secret/data/:rest"), ("process", "all")]
        )
        .is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(sample(&samples, "vault_core_unsealed", &[]), Some(1.0));
    let r = c.client().get("sys/metrics?format=prometheus").await;
    assert_eq!(r.status, 200);
}
