//! Resource quotas and overload protection end to end: rate-limit quotas
//! (global, per mount, block_interval, headers, audit of refusals), a
//! lease-count quota on database credentials against a private PostgreSQL,
//! and the gateway's bound on requests in flight.

use std::time::{Duration, Instant};

use bulwark_dynamic_db::testing::PrivatePg;
use bulwark_e2e::{init_unsealed, Api, Cluster, Layout, Options, Reply, Store};
use serde_json::{json, Value};

/// Long enough for a 1-per-second-or-faster bucket to be full again.
const REFILL: Duration = Duration::from_millis(1300);

async fn ok(api: &Api, path: &str, body: Value) -> Reply {
    let r = api.put(path, body.clone()).await;
    assert!(
        r.status == 200 || r.status == 204,
        "PUT {path} {body}: {} {:?}",
        r.status,
        r.body
    );
    r
}

fn header(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

fn retry_after(r: &Reply) -> u64 {
    let v = header(r, "retry-after").unwrap_or_else(|| panic!("no Retry-After: {:?}", r.body));
    let secs: u64 = v
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {v:?} is not whole seconds"));
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

fn assert_rate_limited(r: &Reply, path: &str) {
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({ "errors": [format!("request path \"{path}\": rate limit quota exceeded")] })
    );
    retry_after(r);
}

/// `n` GETs of `path` sent at once by one client: (answered 200, refused
/// 429, the refusals).
async fn burst(api: &Api, path: &str, n: usize) -> (usize, usize, Vec<Reply>) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (api, path) = (api.clone(), path.to_string());
            tokio::spawn(async move { api.get(&path).await })
        })
        .collect();
    let (mut passed, mut limited, mut refusals) = (0, 0, Vec::new());
    for t in tasks {
        let r = t.await.expect("request task");
        match r.status {
            200 => passed += 1,
            429 => {
                assert_rate_limited(&r, path);
                limited += 1;
                refusals.push(r);
            }
            other => panic!("GET {path}: {other} {:?}", r.body),
        }
    }
    (passed, limited, refusals)
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn rate_limit_entries(path: &std::path::Path, kind: &str) -> usize {
    audit_lines(path)
        .iter()
        .filter(|e| {
            e["type"] == kind
                && e["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("rate limit quota exceeded"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_quotas() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    for mount in ["secret", "other"] {
        ok(
            &root,
            &format!("sys/mounts/{mount}"),
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await;
        ok(
            &root,
            &format!("{mount}/data/app"),
            json!({"data": {"k": "v"}}),
        )
        .await;
    }

    // Bad input: Vault's error shape, and nothing stored.
    for (name, body) in [
        ("bad", json!({"rate": -1})),
        ("bad", json!({"rate": 0})),
        ("bad", json!({"rate": "abc"})),
        ("bad", json!({})),
        ("bad", json!({"rate": 5, "interval": "soon"})),
        ("bad", json!({"rate": 5, "interval": "-1s"})),
        ("bad", json!({"rate": 5, "interval": "500ms"})),
        ("bad", json!({"rate": 5, "block_interval": "bogus"})),
        ("bad", json!({"rate": 5, "burst": 10})),
        ("bad", json!({"rate": 5, "max_leases": 10})),
        ("bad", json!({"rate": 5, "path": "nomount/"})),
        ("bad", json!({"rate": 5, "path": "secret/a//b"})),
        ("bad", json!({"rate": 5, "path": "secret*"})),
        ("bad", json!({"rate": 5, "type": "lease-count"})),
        ("bad", json!({"rate": 5, "name": "other-name"})),
        ("bad%20name", json!({"rate": 5})),
    ] {
        let r = root
            .put(&format!("sys/quotas/rate-limit/{name}"), body.clone())
            .await;
        assert_eq!(r.status, 400, "{name} {body}: {:?}", r.body);
        let errors = r.body["errors"].as_array().expect("errors");
        assert!(
            !errors.is_empty() && errors.iter().all(Value::is_string),
            "{body}: {:?}",
            r.body
        );
    }
    let r = root.put("sys/quotas/config", json!({"bogus": true})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(root.get("sys/quotas/rate-limit/bad").await.status, 404);
    assert_eq!(
        root.raw("LIST", "sys/quotas/rate-limit", None).await.status,
        404
    );
    let r = root.get("sys/quotas/config").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["enable_rate_limit_response_headers"], false);
    let exempt = r.body["data"]["rate_limit_exempt_paths"].to_string();
    for p in [
        "sys/health",
        "sys/seal-status",
        "sys/unseal",
        "sys/generate-root/attempt",
    ] {
        assert!(exempt.contains(p), "{exempt}");
    }

    // A global quota of 5 per second, per client.
    ok(&root, "sys/quotas/rate-limit/global", json!({"rate": 5})).await;
    let r = root.get("sys/quotas/rate-limit/global").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["data"],
        json!({"name": "global", "path": "", "type": "rate-limit", "rate": 5.0,
               "interval": 1, "block_interval": 0, "role": "", "inheritable": true})
    );
    let r = root.raw("LIST", "sys/quotas/rate-limit", None).await;
    assert_eq!(r.body["data"]["keys"], json!(["global"]));
    tokio::time::sleep(REFILL).await;
    let (passed, limited, refusals) = burst(&root, "secret/data/app", 30).await;
    assert!((5..=10).contains(&passed), "{passed} passed of 30");
    assert!(limited >= 20, "{limited} refused of 30");
    assert!(header(&refusals[0], "x-ratelimit-limit").is_none());
    println!("global 5/s: a burst of 30 → {passed} answered, {limited} refused (429)");
    // Health and seal status are never limited; anything else is.
    for path in [
        "sys/health",
        "sys/seal-status",
        "sys/health",
        "sys/seal-status",
    ] {
        assert_eq!(api.get(path).await.status, 200, "{path}");
    }
    assert_rate_limited(&root.get("sys/mounts").await, "sys/mounts");

    // Response headers, once asked for.
    tokio::time::sleep(REFILL).await;
    ok(
        &root,
        "sys/quotas/config",
        json!({"enable_rate_limit_response_headers": true}),
    )
    .await;
    tokio::time::sleep(REFILL).await;
    let r = root.get("secret/data/app").await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "x-ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("4"));
    let reset: u64 = header(&r, "x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset >= 1, "{reset}");
    let (_, limited, refusals) = burst(&root, "secret/data/app", 10).await;
    assert!(limited > 0);
    assert_eq!(
        header(&refusals[0], "x-ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(
        header(&refusals[0], "x-ratelimit-limit").as_deref(),
        Some("5")
    );

    // Refusals are audited when asked for.
    tokio::time::sleep(REFILL).await;
    let log = c.dir.path().join("audit.log");
    ok(
        &root,
        "sys/audit/file",
        json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}}),
    )
    .await;
    tokio::time::sleep(REFILL).await;
    let (_, limited, _) = burst(&root, "secret/data/app", 10).await;
    assert!(limited > 0);
    assert_eq!(rate_limit_entries(&log, "response"), 0, "off by default");
    tokio::time::sleep(REFILL).await;
    ok(
        &root,
        "sys/quotas/config",
        json!({"enable_rate_limit_audit_logging": true}),
    )
    .await;
    tokio::time::sleep(REFILL).await;
    let (_, limited, _) = burst(&root, "secret/data/app", 10).await;
    assert!(limited > 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while rate_limit_entries(&log, "response") < limited && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rate_limit_entries(&log, "response"), limited);
    assert_eq!(rate_limit_entries(&log, "request"), limited);
    let entry = audit_lines(&log)
        .into_iter()
        .find(|e| {
            e["type"] == "response"
                && e["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("rate limit"))
        })
        .unwrap();
    assert_eq!(entry["request"]["path"], "secret/data/app");
    tokio::time::sleep(REFILL).await;
    ok(
        &root,
        "sys/quotas/config",
        json!({"enable_rate_limit_audit_logging": false}),
    )
    .await;

    // Deleting the quota lifts it.
    tokio::time::sleep(REFILL).await;
    let r = root.delete("sys/quotas/rate-limit/global").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let (passed, limited, _) = burst(&root, "secret/data/app", 30).await;
    assert_eq!((passed, limited), (30, 0));
    assert_eq!(root.get("sys/quotas/rate-limit/global").await.status, 404);

    // A mount's quota limits that mount only; it beats a global one.
    ok(
        &root,
        "sys/quotas/rate-limit/secret-only",
        json!({"rate": 2, "path": "secret/"}),
    )
    .await;
    ok(
        &root,
        "sys/quotas/rate-limit/global",
        json!({"rate": 1000, "path": ""}),
    )
    .await;
    let (passed, limited, _) = burst(&root, "secret/data/app", 20).await;
    assert!(
        (2..=4).contains(&passed) && limited >= 16,
        "{passed}/{limited}"
    );
    let (passed, limited, _) = burst(&root, "other/data/app", 20).await;
    assert_eq!((passed, limited), (20, 0));
    let r = root.get("sys/quotas/rate-limit/secret-only").await;
    assert_eq!(r.body["data"]["path"], "secret/");
    assert_eq!(r.body["data"]["inheritable"], false);
    // Same path, another name: refused.
    let r = root
        .put(
            "sys/quotas/rate-limit/again",
            json!({"rate": 9, "path": "secret"}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["errors"][0]
        .as_str()
        .unwrap()
        .contains("secret-only"));

    // block_interval: refused for its whole length, though the bucket refills.
    ok(
        &root,
        "sys/quotas/rate-limit/other-block",
        json!({"rate": 1, "path": "other/", "block_interval": "3s"}),
    )
    .await;
    tokio::time::sleep(REFILL).await;
    assert_eq!(root.get("other/data/app").await.status, 200);
    let r = root.get("other/data/app").await;
    let blocked_at = Instant::now();
    assert_rate_limited(&r, "other/data/app");
    assert!(retry_after(&r) >= 2, "{:?}", r.headers);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = root.get("other/data/app").await;
    assert_rate_limited(&r, "other/data/app");
    assert!(retry_after(&r) <= 2);
    tokio::time::sleep(Duration::from_millis(3300).saturating_sub(blocked_at.elapsed())).await;
    assert_eq!(root.get("other/data/app").await.status, 200);

    // A path below a mount, with a role: stored, shown, warned about.
    let r = ok(
        &root,
        "sys/quotas/rate-limit/one-secret",
        json!({"rate": 100, "path": "secret/data/app", "role": "web", "interval": "1m"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body["warnings"][0].as_str().unwrap().contains("role"));
    let r = root.get("sys/quotas/rate-limit/one-secret").await;
    assert_eq!(r.body["data"]["role"], "web");
    assert_eq!(r.body["data"]["interval"], 60);
    assert_eq!(r.body["data"]["path"], "secret/data/app");
    // An update keeps what it does not name.
    tokio::time::sleep(REFILL).await;
    ok(
        &root,
        "sys/quotas/rate-limit/one-secret",
        json!({"block_interval": 30}),
    )
    .await;
    let r = root.get("sys/quotas/rate-limit/one-secret").await;
    assert_eq!(r.body["data"]["rate"], 100.0);
    assert_eq!(r.body["data"]["block_interval"], 30);
    let r = root.raw("LIST", "sys/quotas/rate-limit", None).await;
    assert_eq!(
        r.body["data"]["keys"],
        json!(["global", "one-secret", "other-block", "secret-only"])
    );

    // Ordinary policy capabilities decide who may see or change quotas.
    ok(
        &root,
        "sys/policies/acl/quota-reader",
        json!({"policy": "path \"sys/quotas/rate-limit/*\" {\n  capabilities = [\"read\"]\n}\n"}),
    )
    .await;
    let r = ok(
        &root,
        "auth/token/create",
        json!({"policies": ["quota-reader"]}),
    )
    .await;
    let reader = api.with_token(r.body["auth"]["client_token"].as_str().unwrap());
    assert_eq!(reader.get("sys/quotas/rate-limit/global").await.status, 200);
    assert_eq!(
        reader
            .put("sys/quotas/rate-limit/global", json!({"rate": 1}))
            .await
            .status,
        403
    );
    assert_eq!(
        reader.delete("sys/quotas/rate-limit/global").await.status,
        403
    );
    assert_eq!(reader.get("sys/quotas/config").await.status, 403);
    assert_eq!(
        root.get("sys/quotas/rate-limit/global").await.body["data"]["rate"],
        1000.0
    );
}

const READONLY: &str =
    r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#;

async fn generated_roles(pg: &PrivatePg) -> i64 {
    let rows = pg
        .query("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%'")
        .await
        .expect("count roles");
    rows[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_count_quota_on_database_credentials() {
    let pg = PrivatePg::start();
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    ok(&root, "sys/mounts/database", json!({"type": "database"})).await;
    ok(
        &root,
        "database/config/pg",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", pg.port()),
            "allowed_roles": "*",
            "username": "postgres",
            "password": pg.superuser_password(),
        }),
    )
    .await;
    for role in ["app", "other"] {
        ok(
            &root,
            &format!("database/roles/{role}"),
            json!({"db_name": "pg", "creation_statements": READONLY, "default_ttl": "1h"}),
        )
        .await;
    }

    // Bad input: 400, nothing stored.
    for body in [
        json!({"max_leases": 0}),
        json!({"max_leases": -1}),
        json!({"max_leases": "many"}),
        json!({"max_leases": 1.5}),
        json!({}),
        json!({"max_leases": 2, "rate": 5}),
        json!({"max_leases": 2, "path": "nowhere/"}),
    ] {
        let r = root.put("sys/quotas/lease-count/db", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.body["errors"][0].is_string(), "{:?}", r.body);
    }
    assert_eq!(root.get("sys/quotas/lease-count/db").await.status, 404);

    ok(
        &root,
        "sys/quotas/lease-count/db",
        json!({"path": "database/", "max_leases": 2}),
    )
    .await;
    let r = root.get("sys/quotas/lease-count/db").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["max_leases"], 2);
    assert_eq!(r.body["data"]["counter"], 0);
    assert_eq!(r.body["data"]["type"], "lease-count");
    let mut leases = Vec::new();
    for role in ["app", "other"] {
        let r = root.get(&format!("database/creds/{role}")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        leases.push(r.body["lease_id"].as_str().unwrap().to_string());
    }
    assert_eq!(generated_roles(&pg).await, 2);
    let r = root.get("database/creds/app").await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"errors": ["request path \"database/creds/app\": lease count quota exceeded"]})
    );
    // Refused before the engine ran: no user was created.
    assert_eq!(generated_roles(&pg).await, 2);
    assert_eq!(
        root.get("sys/quotas/lease-count/db").await.body["data"]["counter"],
        2
    );
    // Other requests to the mount are not lease-issuing: they pass.
    assert_eq!(root.get("database/roles/app").await.status, 200);

    // Revoking one makes room for one.
    let r = root
        .put("sys/leases/revoke", json!({"lease_id": leases[0]}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = root.get("database/creds/app").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(root.get("database/creds/other").await.status, 429);
    assert_eq!(generated_roles(&pg).await, 2);

    // A quota on one role's path: the most specific applies to that role.
    ok(
        &root,
        "sys/quotas/lease-count/db",
        json!({"max_leases": 10}),
    )
    .await;
    ok(
        &root,
        "sys/quotas/lease-count/other-role",
        json!({"path": "database/creds/other", "max_leases": 2}),
    )
    .await;
    assert_eq!(root.get("database/creds/other").await.status, 200);
    assert_eq!(root.get("database/creds/other").await.status, 429);
    assert_eq!(root.get("database/creds/app").await.status, 200);
    assert_eq!(
        root.get("sys/quotas/lease-count/other-role").await.body["data"]["counter"],
        2
    );

    // Deleted: no limit.
    assert_eq!(
        root.delete("sys/quotas/lease-count/other-role")
            .await
            .status,
        204
    );
    assert_eq!(root.get("database/creds/other").await.status, 200);
    let r = root.raw("LIST", "sys/quotas/lease-count", None).await;
    assert_eq!(r.body["data"]["keys"], json!(["db"]));
}

fn sum_metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_bound_refuses_fast_and_recovers() {
    let c = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            extra_config: "max_request_in_flight = 2\n".into(),
            ..Options::default()
        },
    );
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    ok(&root, "sys/auth/userpass", json!({"type": "userpass"})).await;
    ok(
        &root,
        "auth/userpass/users/alice",
        json!({"password": "correct horse battery", "token_policies": "default"}),
    )
    .await;

    // 50 logins at once (argon2-bound): the bound admits 2 at a time.
    let started = Instant::now();
    let mut logins = Vec::new();
    for _ in 0..50 {
        let api = api.clone();
        logins.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = api
                .put(
                    "auth/userpass/login/alice",
                    json!({"password": "correct horse battery"}),
                )
                .await;
            (r, t.elapsed())
        }));
    }
    // Health checks get through meanwhile.
    for _ in 0..5 {
        assert_eq!(api.get("sys/health").await.status, 200);
        assert_eq!(api.get("sys/seal-status").await.status, 200);
    }
    let (mut passed, mut refused) = (0usize, 0usize);
    let mut slowest_refusal = Duration::ZERO;
    for l in logins {
        let (r, took) = l.await.expect("login task");
        match r.status {
            200 => {
                assert!(r.body["auth"]["client_token"].is_string());
                passed += 1;
            }
            503 => {
                assert_eq!(
                    r.body,
                    json!({"errors": ["server is overloaded, try again"]})
                );
                assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
                refused += 1;
                slowest_refusal = slowest_refusal.max(took);
            }
            other => panic!("login: {other} {:?}", r.body),
        }
    }
    println!(
        "max_request_in_flight = 2, 50 concurrent logins: {passed} answered 200, {refused} refused 503 \
         (slowest refusal {slowest_refusal:?}; all done in {:?})",
        started.elapsed()
    );
    assert!(passed >= 2, "{passed}");
    assert!(refused > 0, "{refused}");
    assert_eq!(passed + refused, 50);

    // Still serving afterwards, and the refusals are counted.
    let r = api
        .put(
            "auth/userpass/login/alice",
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (code, text) = root.get_text("sys/metrics?format=prometheus").await;
    assert_eq!(code, 200, "{text}");
    let counted = sum_metric(&text, "bulwark_http_overload_rejections_total");
    assert!(counted >= refused as u64, "{counted} < {refused}\n{text}");
}
