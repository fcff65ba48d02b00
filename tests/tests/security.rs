//! Security properties end to end (issue 13): path tricks neither escape a
//! mount nor slip past a policy; use limits hold under concurrency; guessed
//! tokens get nowhere; a service's certificate gives neither another
//! service's key nor its data; expired or not-yet-valid certificates are
//! refused; and no secret or token used here appears in any process's
//! output or in the audit log.

use std::path::Path;

use bulwark_e2e::{init_unsealed, Api, Cluster, Layout, Options, Store, TestPg};
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_proto::seal::v1::{ServiceKeyRequest, StatusRequest};
use bulwark_shared::grpc;
use bulwark_shared::ServiceName;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A secret no answer to a limited token may ever carry.
const OTHER: &str = "OTHER-SECRET-4d1f9c";

fn debug_logs() -> Options {
    Options {
        env: vec![(
            "RUST_LOG".into(),
            "debug,sqlx=warn,h2=info,hyper=info".into(),
        )],
        ..Options::default()
    }
}

/// Sends one request with its target exactly as given (no URL library to
/// normalize `..` or `%2e`), returns (status, body).
async fn raw_get(http: &str, target: &str, token: &str) -> (u16, String) {
    let addr = http.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nX-Vault-Token: {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

async fn ok(r: bulwark_e2e::Reply) -> Value {
    assert!((200..300).contains(&r.status), "{}: {:?}", r.status, r.body);
    r.body
}

async fn token(root: &Api, policies: &[&str], extra: Value) -> String {
    let mut body = json!({ "policies": policies });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = ok(root.put("auth/token/create", body).await).await;
    r["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// Every byte any process of `c` wrote, and every file in its directory
/// (the audit log among them), is free of `secrets`.
fn assert_nothing_leaked(c: &Cluster, secrets: &[String]) {
    let mut files = Vec::new();
    for p in &c.procs {
        files.push(p.stdout.clone());
        files.push(p.stderr.clone());
    }
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push(p);
            }
        }
    }
    walk(c.dir.path(), &mut files);
    let mut scanned = 0;
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).to_string();
        scanned += text.len();
        for s in secrets {
            assert!(!text.contains(s.as_str()), "{} holds a secret", f.display());
        }
    }
    println!(
        "scanned {scanned} bytes in {} files for {} secrets",
        files.len(),
        secrets.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_neither_escape_mounts_nor_pass_policies() {
    let c = Cluster::start_with(Layout::AllInOne, Store::SqliteFile, debug_logs());
    let api = c.client();
    let root_token = init_unsealed(&api).await;
    let root = api.with_token(&root_token);
    let audit = c.dir.path().join("audit.log");
    ok(root
        .put(
            "sys/audit/file",
            json!({"type": "file", "options": {"file_path": audit.to_str()}}),
        )
        .await)
    .await;
    ok(root
        .put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await)
    .await;
    for (path, v) in [
        ("app/config", "app-value-77a1"),
        ("other", OTHER),
        ("exact", "exact-value-91b2"),
        ("team/public", "public-value-0c3d"),
        ("team/x/public", "deep-value-5e6f"),
        ("prefix", "prefix-value-a7b8"),
    ] {
        ok(root
            .put(&format!("secret/data/{path}"), json!({"data": {"v": v}}))
            .await)
        .await;
    }
    ok(root
        .put(
            "sys/policies/acl/app",
            json!({"policy": r#"
path "secret/data/app/*" { capabilities = ["read", "create", "update"] }
path "secret/data/exact" { capabilities = ["read"] }
path "secret/data/+/public" { capabilities = ["read"] }
path "secret/data/pre*" { capabilities = ["read"] }
path "secret/metadata/app/*" { capabilities = ["list"] }
path "secret/metadata/other" { capabilities = ["deny"] }
"#}),
        )
        .await)
    .await;
    let app_token = token(&root, &["app"], json!({})).await;
    let app = api.with_token(&app_token);
    assert_eq!(app.get("secret/data/app/config").await.status, 200);

    // Sent byte for byte: `..`, encoded dots and slashes, NUL, doubled and
    // trailing slashes, case. None reaches `other` (nor anything outside
    // the mount); each is a clean 4xx in Vault's shape.
    let tricks = [
        "/v1/secret/data/app/../other",
        "/v1/secret/data/app/%2e%2e/other",
        "/v1/secret/data/app/%2E%2E/other",
        "/v1/secret/data/app/..%2Fother",
        "/v1/secret/data/app%2F..%2Fother",
        "/v1/secret/data/app/%2e%2e%2fother",
        "/v1/secret/data/app/./../other",
        "/v1/secret/data/app/../../../sys/policies/acl/root",
        "/v1/secret/data/other%00",
        "/v1/secret/data/app/config%00/../../other",
        "/v1/secret//data/other",
        "/v1/secret/data//other",
        "/v1//secret/data/other",
        "/v1/SECRET/data/other",
        "/v1/secret/DATA/other",
        "/v1/secret/data/other/",
        "/v1/secret/data/exact/",
        "/v1/secret/data/Exact",
        "/v1/secret/data/team/x/public",
        "/v1/secret/data/pr",
        "/v1/secret/data/app",
        "/v1/secret/data/app/",
        "/v1/secret/metadata/other?list=true",
        "/v1/secret/data/app/config?list=true",
        "/v1/sys/raw/policy/app",
    ];
    for t in tricks {
        let (status, body) = raw_get(&c.http, t, &app_token).await;
        assert!((400..500).contains(&status), "{t}: {status} {body}");
        assert!(!body.contains(OTHER), "{t}: leaked {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            v["errors"].is_array(),
            "{t}: not Vault's error shape: {body}"
        );
    }
    // What the policy does grant still works: `+` one segment, `*` a prefix.
    for p in ["team/public", "prefix", "exact"] {
        let r = app.get(&format!("secret/data/{p}")).await;
        assert_eq!(r.status, 200, "{p}: {:?}", r.body);
    }
    // LIST is its own capability: granted on metadata/app/, not read.
    let (status, body) = raw_get(&c.http, "/v1/secret/metadata/app/?list=true", &app_token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("config"), "{body}");
    assert_eq!(app.get("secret/metadata/app/config").await.status, 403);
    // Root's answers for the same tricks carry no other mount's data either.
    for t in [
        "/v1/secret/data/app/../../../sys/policies/acl/app",
        "/v1/secret/data/%2e%2e/%2e%2e/sys/seal-status",
    ] {
        let (status, _) = raw_get(&c.http, t, &root_token).await;
        assert!((400..500).contains(&status), "{t}: {status}");
    }
    assert_eq!(
        app.get("secret/data/app/config").await.status,
        200,
        "still serving"
    );
    drop(api);
    assert_nothing_leaked(
        &c,
        &[
            root_token.clone(),
            app_token.clone(),
            OTHER.to_string(),
            "app-value-77a1".into(),
            "exact-value-91b2".into(),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn use_limits_hold_under_concurrency_and_guesses_get_nowhere() {
    let c = Cluster::start_with(Layout::AllInOne, Store::SqliteFile, debug_logs());
    let api = c.client();
    let root_token = init_unsealed(&api).await;
    let root = api.with_token(&root_token);
    ok(root
        .put("sys/auth/approle", json!({"type": "approle"}))
        .await)
    .await;
    ok(root
        .put(
            "auth/approle/role/limited",
            json!({"secret_id_num_uses": 3, "token_policies": ["default"]}),
        )
        .await)
    .await;
    let role_id = ok(root.get("auth/approle/role/limited/role-id").await).await["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_string();
    let secret_id = ok(root
        .put("auth/approle/role/limited/secret-id", json!({}))
        .await)
    .await["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_string();

    // 20 logins at once with a secret-id good for 3: exactly 3 succeed.
    let logins = (0..20).map(|_| {
        let api = api.clone();
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        tokio::spawn(async move { api.put("auth/approle/login", body).await })
    });
    let mut won = Vec::new();
    for h in logins {
        let r = h.await.expect("login task");
        if r.status == 200 {
            won.push(
                r.body["auth"]["client_token"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        } else {
            assert!((400..500).contains(&r.status), "{}: {:?}", r.status, r.body);
        }
    }
    assert_eq!(
        won.len(),
        3,
        "secret_id_num_uses = 3 under 20 concurrent logins"
    );

    // A token with num_uses = 2, used 12 times at once: exactly 2 uses.
    let limited = token(&root, &["default"], json!({"num_uses": 2})).await;
    let uses = (0..12).map(|_| {
        let t = api.with_token(&limited);
        tokio::spawn(async move { t.get("auth/token/lookup-self").await.status })
    });
    let mut ok_uses = 0;
    for h in uses {
        if h.await.expect("use task") == 200 {
            ok_uses += 1;
        }
    }
    assert_eq!(ok_uses, 2, "num_uses = 2 under 12 concurrent uses");

    // Guessed tokens: each refused alike (403, same body), and the real one
    // still works afterwards. Token lookups go by keyed hash, never by a
    // comparison of the token itself, so there is no timing to learn from.
    let mut bodies = std::collections::BTreeSet::new();
    for i in 0..200 {
        let guess = format!("hvs.{}{i:04}", &root_token[4..root_token.len().min(20)]);
        let r = api.with_token(&guess).get("secret/data/x").await;
        assert_eq!(r.status, 403, "{guess}");
        bodies.insert(r.body.to_string());
    }
    assert_eq!(bodies.len(), 1, "refusals differ: {bodies:?}");
    assert_eq!(root.get("sys/mounts").await.status, 200);
    let mut secrets = vec![root_token.clone(), secret_id.clone(), limited.clone()];
    secrets.extend(won);
    assert_nothing_leaked(&c, &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_certificate_opens_neither_other_keys_nor_other_data() {
    use bulwark_shared::barrier::open_value;
    use bulwark_shared::tls::{InternalCa, ServiceIdentity};
    use sqlx::{Connection, Row};

    let pg = TestPg::new().await;
    let c = Cluster::start_with(
        Layout::Separate,
        Store::Postgres(pg.url.clone()),
        debug_logs(),
    );
    let api = c.client();
    let root_token = init_unsealed(&api).await;
    let root = api.with_token(&root_token);
    ok(root
        .put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await)
    .await;
    ok(root
        .put("secret/data/app", json!({"data": {"v": OTHER}}))
        .await)
    .await;

    // Each service gets its own data key over mTLS; pki's cannot open kv's
    // rows, nor can kv's key open a kv row moved under another namespace.
    let seal_addr = c.grpc_addr(ServiceName::Seal);
    let key_of = |name: ServiceName| {
        let id = c.identity(name);
        let addr = seal_addr.clone();
        async move {
            let ch = grpc::connect(&id, ServiceName::Seal, &addr).expect("channel");
            let k = SealClient::new(ch)
                .service_key(ServiceKeyRequest { term: 0 })
                .await
                .expect("service key")
                .into_inner();
            let mut key = zeroize::Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&k.key);
            key
        }
    };
    let kv_key = key_of(ServiceName::Kv).await;
    let pki_key = key_of(ServiceName::Pki).await;
    let mut conn = sqlx::PgConnection::connect(&pg.url).await.expect("pg");
    let rows = sqlx::query("SELECT key, value FROM bulwark_kv")
        .fetch_all(&mut conn)
        .await
        .expect("kv rows");
    assert!(!rows.is_empty());
    let aad = |ns: &str, path: &str| [ns.as_bytes(), &[0], path.as_bytes()].concat();
    let mut opened = 0;
    for row in &rows {
        let path: String = row.get("key");
        let value: Vec<u8> = row.get("value");
        assert!(!String::from_utf8_lossy(&value).contains(OTHER));
        if open_value(&kv_key, &aad("kv", &path), &value).is_some() {
            opened += 1;
        }
        assert!(open_value(&pki_key, &aad("kv", &path), &value).is_none());
        assert!(open_value(&kv_key, &aad("pki", &path), &value).is_none());
        assert!(open_value(&kv_key, &aad("kv", &format!("{path}x")), &value).is_none());
    }
    assert!(
        opened > 0,
        "kv's own key opens its rows (the check above is real)"
    );

    // Certificates from the right CA but outside their validity: refused.
    let ca = InternalCa::load(&c.cert_dir()).expect("internal CA");
    let now = time::OffsetDateTime::now_utc();
    for (what, from, to) in [
        (
            "expired",
            now - time::Duration::days(2),
            now - time::Duration::days(1),
        ),
        (
            "not yet valid",
            now + time::Duration::days(1),
            now + time::Duration::days(2),
        ),
    ] {
        let leaf = ca
            .issue_with_validity(ServiceName::Gateway, &[], from, to)
            .expect("leaf");
        let id = ServiceIdentity::from_pem(
            ServiceName::Gateway,
            leaf.cert_pem,
            leaf.key_pem,
            ca.cert_pem().to_string(),
        );
        let ch = grpc::connect(&id, ServiceName::Seal, &seal_addr).expect("channel");
        assert!(
            SealClient::new(ch).status(StatusRequest {}).await.is_err(),
            "{what} certificate accepted"
        );
    }
    // The same CA with a valid window: accepted (the refusals above are
    // about validity, not the CA).
    let leaf = ca.issue(ServiceName::Gateway, &[], 1).expect("leaf");
    let id = ServiceIdentity::from_pem(
        ServiceName::Gateway,
        leaf.cert_pem,
        leaf.key_pem,
        ca.cert_pem().to_string(),
    );
    let ch = grpc::connect(&id, ServiceName::Seal, &seal_addr).expect("channel");
    assert!(SealClient::new(ch).status(StatusRequest {}).await.is_ok());
    assert_nothing_leaked(&c, &[root_token.clone(), OTHER.to_string()]);
}

/// The harness's own leak check is real: a process whose output carries a
/// token a test sent fails the test when it is dropped.
#[test]
fn a_process_that_writes_a_sent_token_fails_the_test() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "hvs.HarnessLeakCheck0123456789";
    let (server, addr) = bulwark_e2e::dev_server(dir.path(), &[]);
    let _ = Api::new(&addr).with_token(token);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&server.stdout)
        .and_then(|mut f| writeln!(f, "a careless line with {token} in it"))
        .expect("append to the server's output");
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(server)));
    assert!(dropped.is_err(), "the leak went unnoticed");
}
