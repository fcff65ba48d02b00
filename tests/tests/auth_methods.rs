//! Auth methods (AppRole, userpass, cert) and response wrapping end to end,
//! over HTTP, against the real services over mTLS.

use std::time::Duration;

use bulwark_e2e::{init_unsealed, Api, Cluster, Layout, Options, Store, TestCa};
use serde_json::{json, Value};

const READONLY_KV: &str = r#"
path "secret/data/mysql/webapp" {
  capabilities = [ "read" ]
}
"#;

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

async fn ok(api: &Api, path: &str, body: Value) -> Value {
    let r = api.put(path, body.clone()).await;
    assert!(
        r.status == 200 || r.status == 204,
        "PUT {path} {body}: {} {:?}",
        r.status,
        r.body
    );
    r.body
}

async fn approle_login(api: &Api, role_id: &str, secret_id: &str) -> bulwark_e2e::Reply {
    api.put(
        "auth/approle/login",
        json!({ "role_id": role_id, "secret_id": secret_id }),
    )
    .await
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The Node.js walkthrough (AppRole + a read-only policy), userpass, wrapping,
/// bad input, and disabling a method.
#[tokio::test(flavor = "multi_thread")]
async fn approle_userpass_and_wrapping() {
    let c = Cluster::start(Layout::Separate, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    ok(&root, "sys/mounts/secret", json!({"type": "kv-v2"})).await;
    let log = c.dir.path().join("audit.log");
    ok(
        &root,
        "sys/audit/file",
        json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}}),
    )
    .await;

    // --- The walkthrough: enable approle, policy, role, role-id, secret-id.
    let r = root
        .put("sys/auth/approle", json!({"type": "approle"}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = root.get("sys/auth").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["approle/"]["type"], "approle");
    assert_eq!(r.body["data"]["token/"]["type"], "token");
    assert_eq!(r.body["approle/"]["type"], "approle", "top-level copy");
    assert!(s(&r.body["data"]["approle/"]["accessor"]).starts_with("auth_approle_"));
    let r = root
        .put("sys/auth/approle", json!({"type": "approle"}))
        .await;
    assert_eq!(r.status, 400, "in use: {:?}", r.body);
    let r = root.get("sys/internal/ui/mounts").await;
    assert_eq!(
        r.body["data"]["auth"]["approle/"]["type"], "approle",
        "{:?}",
        r.body
    );

    ok(
        &root,
        "sys/policies/acl/readonly-kv-backend",
        json!({ "policy": READONLY_KV }),
    )
    .await;
    ok(
        &root,
        "auth/approle/role/node-app-role",
        json!({"token_ttl": "1h", "token_max_ttl": "4h", "token_policies": "readonly-kv-backend"}),
    )
    .await;
    let role = root.get("auth/approle/role/node-app-role").await;
    assert_eq!(role.status, 200, "{:?}", role.body);
    assert_eq!(role.body["data"]["token_ttl"], 3600);
    assert_eq!(role.body["data"]["token_max_ttl"], 14400);
    assert_eq!(role.body["data"]["bind_secret_id"], true);
    assert_eq!(
        role.body["data"]["token_policies"],
        json!(["readonly-kv-backend"])
    );
    let role_id = s(&root
        .get("auth/approle/role/node-app-role/role-id")
        .await
        .body["data"]["role_id"]);
    // `vault write -f` sends an empty body.
    let r = root
        .raw("POST", "auth/approle/role/node-app-role/secret-id", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let secret_id = s(&r.body["data"]["secret_id"]);
    assert!(!s(&r.body["data"]["secret_id_accessor"]).is_empty());
    ok(
        &root,
        "secret/data/mysql/webapp",
        json!({"data": {"db_name": "users", "username": "admin", "password": "passw0rd"}}),
    )
    .await;

    // node-vault's approleLogin, then read, then a refused delete.
    let r = approle_login(&api, &role_id, &secret_id).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"], Value::Null);
    let auth = &r.body["auth"];
    assert_eq!(auth["policies"], json!(["default", "readonly-kv-backend"]));
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["orphan"], true);
    assert_eq!(auth["metadata"]["role_name"], "node-app-role");
    let app = api.with_token(&s(&auth["client_token"]));
    let r = app.get("secret/data/mysql/webapp").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["data"]["db_name"], "users");
    let r = app.delete("secret/data/mysql/webapp").await;
    assert_eq!(r.status, 403);
    assert_eq!(root.get("secret/data/mysql/webapp").await.status, 200);
    let me = app.get("auth/token/lookup-self").await;
    assert_eq!(me.body["data"]["path"], "auth/approle/login");
    assert_eq!(me.body["data"]["display_name"], "approle");
    // Renewal is capped by token_max_ttl (4h).
    let r = app
        .put("auth/token/renew-self", json!({"increment": "100h"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["auth"]["lease_duration"].as_i64().unwrap() <= 14400);

    // Login errors: Vault's wording, nothing about which part was wrong.
    for (body, want) in [
        (json!({"secret_id": secret_id}), "missing role_id"),
        (json!({"role_id": role_id}), "missing secret_id"),
        (
            json!({"role_id": "nope", "secret_id": secret_id}),
            "invalid role or secret ID",
        ),
        (
            json!({"role_id": role_id, "secret_id": "nope"}),
            "invalid role or secret ID",
        ),
    ] {
        let r = api.put("auth/approle/login", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.errors(), [want], "{body}");
    }
    let r = api
        .raw("PUT", "auth/approle/login", Some(b"{nope".to_vec()))
        .await;
    assert_eq!(r.status, 400);

    // secret_id_num_uses = 1: one login.
    ok(
        &root,
        "auth/approle/role/one-shot",
        json!({"secret_id_num_uses": 1, "token_policies": ["readonly-kv-backend"]}),
    )
    .await;
    let one_id = s(&root.get("auth/approle/role/one-shot/role-id").await.body["data"]["role_id"]);
    let one_secret = s(
        &ok(&root, "auth/approle/role/one-shot/secret-id", json!({})).await["data"]["secret_id"],
    );
    assert_eq!(approle_login(&api, &one_id, &one_secret).await.status, 200);
    let r = approle_login(&api, &one_id, &one_secret).await;
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["invalid role or secret ID".to_string()])
    );

    // An expired secret-id is refused.
    ok(
        &root,
        "auth/approle/role/short",
        json!({"secret_id_ttl": "1s"}),
    )
    .await;
    let short_id = s(&root.get("auth/approle/role/short/role-id").await.body["data"]["role_id"]);
    let short_secret =
        s(&ok(&root, "auth/approle/role/short/secret-id", json!({})).await["data"]["secret_id"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = approle_login(&api, &short_id, &short_secret).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Secret-id metadata (a JSON string in, an object out), lookup, destroy.
    let r = ok(
        &root,
        "auth/approle/role/node-app-role/secret-id",
        json!({"metadata": "{\"env\":\"ci\"}"}),
    )
    .await;
    let (sid, acc) = (
        s(&r["data"]["secret_id"]),
        s(&r["data"]["secret_id_accessor"]),
    );
    let r = ok(
        &root,
        "auth/approle/role/node-app-role/secret-id/lookup",
        json!({ "secret_id": sid }),
    )
    .await;
    assert_eq!(r["data"]["metadata"], json!({"env": "ci"}));
    assert_eq!(r["data"]["secret_id_accessor"], acc.as_str());
    let r = root
        .raw("LIST", "auth/approle/role/node-app-role/secret-id", None)
        .await;
    assert!(r.body["data"]["keys"]
        .as_array()
        .unwrap()
        .contains(&json!(acc)));
    let login = approle_login(&api, &role_id, &sid).await;
    assert_eq!(login.body["auth"]["metadata"]["env"], "ci");
    ok(
        &root,
        "auth/approle/role/node-app-role/secret-id-accessor/destroy",
        json!({ "secret_id_accessor": acc }),
    )
    .await;
    assert_eq!(approle_login(&api, &role_id, &sid).await.status, 400);

    // Bad role input.
    for (path, body) in [
        ("auth/approle/role/bad%20name", json!({})),
        (
            "auth/approle/role/x",
            json!({"secret_id_bound_cidrs": "nope"}),
        ),
        ("auth/approle/role/x", json!({"token_ttl": "forever"})),
        ("auth/approle/role/x", json!({"bind_secret_id": false})),
        ("auth/approle/role/x", json!({"secret_id_num_uses": -1})),
    ] {
        let r = root.put(path, body.clone()).await;
        assert_eq!(r.status, 400, "{path} {body}: {:?}", r.body);
    }
    assert_eq!(root.get("auth/approle/role/x").await.status, 404);
    assert_eq!(root.get("auth/approle/nothing/here").await.status, 404);

    // --- Response wrapping.
    let r = root
        .put_wrapped(
            "auth/approle/role/node-app-role/secret-id",
            json!({}),
            "60s",
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"], Value::Null);
    assert_eq!(r.body["request_id"], "");
    let wi = &r.body["wrap_info"];
    assert_eq!(wi["ttl"], 60);
    assert_eq!(
        wi["creation_path"],
        "auth/approle/role/node-app-role/secret-id"
    );
    let wrap_token = s(&wi["token"]);
    assert!(!s(&wi["accessor"]).is_empty());
    // Lookup needs no token.
    let r = api
        .put("sys/wrapping/lookup", json!({ "token": wrap_token }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["creation_ttl"], 60);
    // Unwrap with the wrapping token as the request's token: once.
    let w = api.with_token(&wrap_token);
    let r = w.put("sys/wrapping/unwrap", json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let unwrapped = s(&r.body["data"]["secret_id"]);
    assert_eq!(approle_login(&api, &role_id, &unwrapped).await.status, 200);
    let r = w.put("sys/wrapping/unwrap", json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.errors(),
        ["wrapping token is not valid or does not exist"]
    );
    // Wrap any map; unwrap with the token in the body; rewrap.
    let r = root
        .put_wrapped("sys/wrapping/wrap", json!({"a": "b"}), "5m")
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t1 = s(&r.body["wrap_info"]["token"]);
    let r = root
        .put("sys/wrapping/rewrap", json!({ "token": t1 }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t2 = s(&r.body["wrap_info"]["token"]);
    assert_ne!(t1, t2);
    assert_eq!(r.body["wrap_info"]["ttl"], 300);
    let r = root
        .put("sys/wrapping/unwrap", json!({ "token": t1 }))
        .await;
    assert_eq!(r.status, 400, "old token dead after rewrap");
    let r = root
        .put("sys/wrapping/unwrap", json!({ "token": t2 }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["a"], "b");
    // Two racing unwraps: exactly one wins.
    let t3 = s(&root
        .put_wrapped("sys/wrapping/wrap", json!({"x": "y"}), "5m")
        .await
        .body["wrap_info"]["token"]);
    let (a, b) = tokio::join!(
        root.put("sys/wrapping/unwrap", json!({ "token": t3 })),
        root.put("sys/wrapping/unwrap", json!({ "token": t3 }))
    );
    let mut codes = [a.status, b.status];
    codes.sort();
    assert_eq!(codes, [200, 400]);
    // An expired wrapping token fails.
    let t4 = s(&root
        .put_wrapped("sys/wrapping/wrap", json!({"x": "y"}), "1s")
        .await
        .body["wrap_info"]["token"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = root
        .put("sys/wrapping/unwrap", json!({ "token": t4 }))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // Wrap TTL out of range or malformed; wrap without the header.
    for bad in ["-5", "soon", "900h"] {
        let r = root
            .put_wrapped("sys/wrapping/wrap", json!({"a": 1}), bad)
            .await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let r = root.put("sys/wrapping/wrap", json!({"a": 1})).await;
    assert_eq!(
        r.errors(),
        ["endpoint requires response wrapping to be used"]
    );
    let r = api
        .put("sys/wrapping/unwrap", json!({"token": "hvs.nope"}))
        .await;
    assert_eq!(r.status, 403, "a body token needs an authenticated caller");

    // --- userpass: alice, denied without the policy, allowed with it.
    ok(&root, "sys/auth/userpass", json!({"type": "userpass"})).await;
    ok(
        &root,
        "auth/userpass/users/alice",
        json!({"password": "Password123!", "token_ttl": "1h", "token_max_ttl": "24h"}),
    )
    .await;
    let r = root.get("auth/userpass/users/alice").await;
    assert_eq!(r.status, 200);
    assert!(r.body["data"].get("password").is_none());
    assert_eq!(r.body["data"]["token_ttl"], 3600);
    let r = root.raw("LIST", "auth/userpass/users", None).await;
    assert_eq!(r.body["data"]["keys"], json!(["alice"]));
    let login = |pw: &'static str| {
        let api = api.clone();
        async move {
            api.put("auth/userpass/login/alice", json!({ "password": pw }))
                .await
        }
    };
    let r = login("Password123!").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["auth"]["policies"], json!(["default"]));
    assert_eq!(r.body["auth"]["lease_duration"], 3600);
    assert_eq!(r.body["auth"]["metadata"]["username"], "alice");
    let alice = api.with_token(&s(&r.body["auth"]["client_token"]));
    assert_eq!(alice.get("secret/data/mysql/webapp").await.status, 403);
    let me = alice.get("auth/token/lookup-self").await;
    assert_eq!(me.body["data"]["display_name"], "userpass-alice");
    assert_eq!(me.body["data"]["path"], "auth/userpass/login/alice");
    ok(
        &root,
        "auth/userpass/users/alice",
        json!({"token_policies": "readonly-kv-backend"}),
    )
    .await;
    let r = login("Password123!").await;
    let alice = api.with_token(&s(&r.body["auth"]["client_token"]));
    assert_eq!(alice.get("secret/data/mysql/webapp").await.status, 200);
    // Wrong password and unknown user: the same 400.
    let r = login("wrong").await;
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["invalid username or password".to_string()])
    );
    let r = api
        .put("auth/userpass/login/mallory", json!({"password": "x"}))
        .await;
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["invalid username or password".to_string()])
    );
    // Bad input.
    for (path, body) in [
        ("auth/userpass/users/bob", json!({})),
        (
            "auth/userpass/users/bob",
            json!({"password": "p", "token_bound_cidrs": "300.1.1.1/8"}),
        ),
        (
            "auth/userpass/users/bob",
            json!({"password": "p", "token_ttl": []}),
        ),
        ("auth/userpass/users/bad%20name", json!({"password": "p"})),
        ("auth/userpass/login/alice", json!({"password": 12})),
    ] {
        let r = root.put(path, body.clone()).await;
        assert_eq!(r.status, 400, "{path} {body}: {:?}", r.body);
    }
    assert_eq!(root.get("auth/userpass/users/bob").await.status, 404);
    // Bound CIDRs: a token bound elsewhere is refused from here.
    ok(
        &root,
        "auth/userpass/users/carol",
        json!({"password": "pw-carol", "token_bound_cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    // Userpass checks a user's bound CIDRs at login already, as Vault does.
    let r = api
        .put("auth/userpass/login/carol", json!({"password": "pw-carol"}))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // A token from a SecretID bound to other addresses is refused on use.
    let r = ok(
        &root,
        "auth/approle/role/node-app-role/secret-id",
        json!({"token_bound_cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    let r = approle_login(&api, &role_id, &s(&r["data"]["secret_id"])).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let bound = api.with_token(&s(&r.body["auth"]["client_token"]));
    assert_eq!(bound.get("auth/token/lookup-self").await.status, 403);

    // The failed login was audited, the password HMAC'd.
    let entries = lines(&log);
    let failed = entries
        .iter()
        .find(|e| {
            e["type"] == "response"
                && e["request"]["path"] == "auth/userpass/login/alice"
                && e["error"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid username or password"))
        })
        .expect("failed login audited");
    assert!(s(&failed["request"]["data"]["password"]).starts_with("hmac-sha256:"));
    assert!(!std::fs::read_to_string(&log)
        .unwrap()
        .contains("Password123!"));

    // Disabling the method revokes its tokens at once.
    assert_eq!(alice.get("auth/token/lookup-self").await.status, 200);
    let r = root.delete("sys/auth/userpass").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(alice.get("auth/token/lookup-self").await.status, 403);
    assert_eq!(login("Password123!").await.status, 404);
    assert!(root.get("sys/auth").await.body["data"]
        .get("userpass/")
        .is_none());
    assert_eq!(root.delete("sys/auth/token").await.status, 400);
    // Re-enabled, it starts empty.
    ok(&root, "sys/auth/userpass", json!({"type": "userpass"})).await;
    assert_eq!(login("Password123!").await.status, 400);
    // Still serving.
    assert_eq!(app.get("secret/data/mysql/webapp").await.status, 200);
}

/// cert auth: a client certificate from the trusted CA logs in over the
/// HTTPS listener; one from another CA, or none, does not.
#[tokio::test(flavor = "multi_thread")]
async fn cert_login_over_https() {
    let c = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            https: true,
            ..Default::default()
        },
    );
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    ok(&root, "sys/auth/cert", json!({"type": "cert"})).await;
    let trusted = TestCa::new("clients CA");
    let other = TestCa::new("someone else's CA");
    let r = root
        .put(
            "auth/cert/certs/web",
            json!({"certificate": "not a pem", "token_policies": "default"}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    ok(
        &root,
        "auth/cert/certs/web",
        json!({
            "certificate": trusted.cert_pem,
            "display_name": "web",
            "token_policies": "web-policy",
            "token_ttl": "10m",
        }),
    )
    .await;
    let r = root.get("auth/cert/certs/web").await;
    assert_eq!(r.body["data"]["token_policies"], json!(["web-policy"]));

    let (cert, key) = trusted.leaf("web-client", true);
    let client = c.client_with_identity(&cert, &key);
    let r = client.put("auth/cert/login", json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["auth"]["policies"], json!(["default", "web-policy"]));
    assert_eq!(r.body["auth"]["lease_duration"], 600);
    assert_eq!(r.body["auth"]["metadata"]["common_name"], "web-client");
    let tok = api.with_token(&s(&r.body["auth"]["client_token"]));
    let me = tok.get("auth/token/lookup-self").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["data"]["display_name"], "cert-web");

    let (cert, key) = other.leaf("intruder", true);
    let r = c
        .client_with_identity(&cert, &key)
        .put("auth/cert/login", json!({}))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = api.put("auth/cert/login", json!({})).await;
    assert_eq!(r.status, 403, "no certificate: {:?}", r.body);
    let r = client
        .put("auth/cert/login", json!({"name": "missing-role"}))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}
