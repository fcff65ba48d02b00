//! Tokens and ACL policies end to end, over HTTP, one process per service.

use std::time::Duration;

use bulwark_e2e::{init_unsealed, Api, Cluster, Layout, Store};
use serde_json::{json, Value};

async fn create_token(api: &Api, body: Value) -> (String, Value) {
    let r = api.put("auth/token/create", body.clone()).await;
    assert_eq!(r.status, 200, "create {body}: {:?}", r.body);
    assert_eq!(r.body["data"], Value::Null);
    let auth = r.body["auth"].clone();
    (auth["client_token"].as_str().unwrap().to_string(), auth)
}

async fn write_policy(root: &Api, name: &str, hcl: &str) {
    let r = root
        .put(
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": hcl }),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

const READ_POLICIES: &str = r#"
path "sys/policy/*" {
  capabilities = ["read"]
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_policies_end_to_end() {
    let c = Cluster::start(Layout::Separate, Store::SqliteFile);
    let api = c.client();
    let root_token = init_unsealed(&api).await;
    let root = api.with_token(&root_token);

    // The root token, handed from seal to auth at the first unseal.
    let r = root.get("auth/token/lookup-self").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["policies"], json!(["root"]));
    assert_eq!(r.body["data"]["path"], "auth/token/root");
    assert_eq!(r.body["data"]["expire_time"], Value::Null);
    assert_eq!(r.body["data"]["ttl"], 0);

    // No token, a bad token: 403.
    assert_eq!(api.get("sys/policy/default").await.status, 403);
    assert_eq!(
        api.with_token("hvs.nope")
            .get("sys/policy/default")
            .await
            .status,
        403
    );

    write_policy(&root, "p", READ_POLICIES).await;
    let (tok, auth) = create_token(
        &root,
        json!({"policies": ["p"], "ttl": "1h", "meta": {"app": "web"}}),
    )
    .await;
    assert!(tok.starts_with("hvs."));
    assert_eq!(auth["policies"], json!(["default", "p"]));
    assert_eq!(auth["token_policies"], json!(["default", "p"]));
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["orphan"], false);
    assert_eq!(auth["metadata"], json!({"app": "web"}));
    let child = api.with_token(&tok);

    let me = child.get("auth/token/lookup-self").await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    let d = &me.body["data"];
    assert_eq!(d["id"], tok.as_str());
    assert_eq!(d["accessor"], auth["accessor"]);
    assert_eq!(d["policies"], json!(["default", "p"]));
    assert_eq!(d["display_name"], "token");
    assert_eq!(d["path"], "auth/token/create");
    assert_eq!(d["creation_ttl"], 3600);
    assert_eq!(d["meta"], json!({"app": "web"}));
    assert_eq!(d["orphan"], false);
    assert_eq!(d["type"], "service");
    assert!(d["ttl"].as_i64().unwrap() > 3590);
    assert!(d["expire_time"].is_string());
    assert!(d["issue_time"].is_string());
    assert_eq!(d["num_uses"], 0);

    // What P allows, and nothing else.
    let r = child.get("sys/policy/p").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["rules"], READ_POLICIES);
    assert_eq!(r.body["rules"], READ_POLICIES, "top-level copy");
    assert_eq!(child.get("sys/policies/acl/p").await.status, 403);
    assert_eq!(
        child
            .put("sys/policy/p", json!({"policy": "x"}))
            .await
            .status,
        403
    );
    assert_eq!(child.get("secret/data/x").await.status, 403);

    // Editing P changes the answer on the very next request, both ways.
    write_policy(
        &root,
        "p",
        r#"path "sys/policies/acl/*" { capabilities = ["read"] }"#,
    )
    .await;
    assert_eq!(child.get("sys/policy/p").await.status, 403);
    assert_eq!(child.get("sys/policies/acl/p").await.status, 200);
    write_policy(&root, "p", READ_POLICIES).await;
    assert_eq!(child.get("sys/policy/p").await.status, 200);

    // Capabilities agree with what is enforced.
    let r = child
        .put(
            "sys/capabilities-self",
            json!({"paths": ["sys/policy/p", "sys/policies/acl/p"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["sys/policy/p"], json!(["read"]));
    assert_eq!(r.body["data"]["sys/policies/acl/p"], json!(["deny"]));
    let r = root
        .put(
            "sys/capabilities",
            json!({"token": tok, "paths": ["sys/policy/x"]}),
        )
        .await;
    assert_eq!(r.body["capabilities"], json!(["read"]));
    let r = root
        .put(
            "sys/capabilities-accessor",
            json!({"accessor": auth["accessor"], "paths": ["sys/policy/x"]}),
        )
        .await;
    assert_eq!(r.body["data"]["capabilities"], json!(["read"]));
    let r = root
        .put("sys/capabilities-self", json!({"path": "anything"}))
        .await;
    assert_eq!(r.body["capabilities"], json!(["root"]));

    // Parent → child tree: revoking the parent revokes the child, not the orphan.
    write_policy(
        &root,
        "maker",
        r#"path "auth/token/create*" { capabilities = ["update"] }"#,
    )
    .await;
    let (parent, _) = create_token(&root, json!({"policies": ["maker", "p"]})).await;
    let p_api = api.with_token(&parent);
    let (kid, _) = create_token(&p_api, json!({"policies": ["p"]})).await;
    let r = p_api
        .put("auth/token/create-orphan", json!({"policies": ["p"]}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["auth"]["orphan"], true);
    let orphan = r.body["auth"]["client_token"].as_str().unwrap().to_string();
    // Subset rule.
    let r = p_api
        .put("auth/token/create", json!({"policies": ["root"]}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.errors()[0].contains("subset"), "{:?}", r.errors());
    assert_eq!(api.with_token(&kid).get("sys/policy/p").await.status, 200);
    let r = root
        .put("auth/token/revoke", json!({"token": parent}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        api.with_token(&parent).get("sys/policy/p").await.status,
        403
    );
    assert_eq!(api.with_token(&kid).get("sys/policy/p").await.status, 403);
    assert_eq!(
        api.with_token(&orphan).get("sys/policy/p").await.status,
        200
    );

    // revoke-accessor, lookup-accessor.
    let (d_tok, d_auth) = create_token(&root, json!({"policies": ["p"]})).await;
    let acc = d_auth["accessor"].as_str().unwrap();
    let r = root
        .put("auth/token/lookup-accessor", json!({"accessor": acc}))
        .await;
    assert_eq!((r.status, r.body["data"]["id"].clone()), (200, json!("")));
    assert_eq!(api.with_token(&d_tok).get("sys/policy/p").await.status, 200);
    assert_eq!(
        root.put("auth/token/revoke-accessor", json!({"accessor": acc}))
            .await
            .status,
        204
    );
    assert_eq!(api.with_token(&d_tok).get("sys/policy/p").await.status, 403);
    let r = root.raw("LIST", "auth/token/accessors", None).await;
    assert_eq!(r.status, 200);
    assert!(!r.body["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == acc));

    // A token with ttl=2s is refused once expired.
    let (short, _) = create_token(&root, json!({"policies": ["p"], "ttl": "2s"})).await;
    assert_eq!(api.with_token(&short).get("sys/policy/p").await.status, 200);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(api.with_token(&short).get("sys/policy/p").await.status, 403);

    // num_uses=2 allows exactly two requests.
    let (limited, _) = create_token(&root, json!({"policies": ["p"], "num_uses": 2})).await;
    let l = api.with_token(&limited);
    assert_eq!(l.get("sys/policy/p").await.status, 200);
    assert_eq!(l.get("sys/policy/p").await.status, 200);
    assert_eq!(l.get("sys/policy/p").await.status, 403);

    // Renew: a child renews itself; root tokens are not renewable.
    let r = child
        .put("auth/token/renew-self", json!({"increment": "30m"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["auth"]["lease_duration"], 1800);
    let r = root.put("auth/token/renew-self", json!({})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // sudo: update alone does not seal; update + sudo does.
    write_policy(
        &root,
        "sealer",
        r#"path "sys/seal" { capabilities = ["update"] }"#,
    )
    .await;
    let (sealer, _) = create_token(&root, json!({"policies": ["sealer"]})).await;
    assert_eq!(
        api.with_token(&sealer)
            .put("sys/seal", json!({}))
            .await
            .status,
        403
    );
    write_policy(
        &root,
        "sealer",
        r#"path "sys/seal" { capabilities = ["update", "sudo"] }"#,
    )
    .await;
    assert_eq!(
        api.with_token(&sealer)
            .put("sys/seal", json!({}))
            .await
            .status,
        204
    );
    assert_eq!(api.get("sys/seal-status").await.body["sealed"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_policy_and_token_input() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    write_policy(&root, "keep", READ_POLICIES).await;

    // Unparseable HCL: 400 with the parser's position.
    let r = root
        .put(
            "sys/policies/acl/bad",
            json!({"policy": "path \"x\" {\n  capabilities = [\"read\"\n"}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.errors().iter().any(|e| e.contains("line")),
        "{:?}",
        r.errors()
    );
    // Unknown capability.
    let r = root
        .put(
            "sys/policies/acl/bad",
            json!({"policy": r#"path "x" { capabilities = ["fly"] }"#}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // Empty, wrong type, huge.
    assert_eq!(
        root.put("sys/policies/acl/bad", json!({"policy": ""}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.put("sys/policies/acl/bad", json!({"policy": 5}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.put("sys/policies/acl/bad", json!({"policy": ["x"]}))
            .await
            .status,
        400
    );
    let huge = format!(
        "path \"x\" {{ capabilities = [\"read\"] }}\n#{}",
        "a".repeat(10 * 1024 * 1024)
    );
    assert_eq!(
        root.put("sys/policies/acl/bad", json!({"policy": huge}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.get("sys/policies/acl/bad").await.status,
        404,
        "nothing half-written"
    );
    // Built-ins.
    assert_eq!(root.delete("sys/policies/acl/root").await.status, 400);
    assert_eq!(root.delete("sys/policies/acl/default").await.status, 400);
    assert_eq!(
        root.put("sys/policies/acl/root", json!({"policy": READ_POLICIES}))
            .await
            .status,
        400
    );
    let r = root.get("sys/policies/acl/default").await;
    assert!(r.body["data"]["policy"]
        .as_str()
        .unwrap()
        .contains("auth/token/lookup-self"));
    let r = root.raw("LIST", "sys/policies/acl", None).await;
    let keys = r.body["data"]["keys"].clone();
    for k in ["default", "keep", "root"] {
        assert!(keys.as_array().unwrap().iter().any(|v| v == k), "{keys}");
    }
    let r = root.get("sys/policy").await;
    assert_eq!(r.body["policies"], r.body["keys"]);

    // Bad token input.
    assert_eq!(
        root.put("auth/token/create", json!({"ttl": "forever"}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.put("auth/token/create", json!({"num_uses": -1}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.put("auth/token/create", json!({"policies": 7}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.raw("PUT", "auth/token/create", Some(b"{oops".to_vec()))
            .await
            .status,
        400
    );
    assert_eq!(root.put("auth/token/lookup", json!({})).await.status, 400);
    assert_eq!(
        root.put("auth/token/lookup-accessor", json!({"accessor": "nope"}))
            .await
            .status,
        400
    );
    assert_eq!(root.get("auth/token/no-such-endpoint").await.status, 404);
    let bearer = reqwest::Client::new()
        .get(format!("{}/v1/auth/token/lookup-self", c.http))
        .header("Authorization", "Bearer")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 403);
    let basic = reqwest::Client::new()
        .get(format!("{}/v1/auth/token/lookup-self", c.http))
        .header("Authorization", "Basic cm9vdDpyb290")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 403);

    // Still serving, nothing changed.
    assert_eq!(
        root.get("sys/policy/keep").await.body["data"]["rules"],
        READ_POLICIES
    );
}
