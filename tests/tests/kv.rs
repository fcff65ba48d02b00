//! Mounts and the kv engine end to end: the kv v2 walkthrough of a real user,
//! kv v1, cubbyhole isolation, policies on data/metadata paths, concurrent
//! check-and-set, and bad input.

use bulwark_e2e::{init_unsealed, Api, Cluster, Layout, Store};
use serde_json::{json, Value};

async fn ok(r: bulwark_e2e::Reply, code: u16) -> Value {
    assert_eq!(r.status, code, "{:?}", r.body);
    r.body
}

async fn mount_v2(root: &Api, path: &str) {
    ok(
        root.put(
            &format!("sys/mounts/{path}"),
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await,
        204,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_v2_walkthrough() {
    let c = Cluster::start(Layout::Separate, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    for m in ["team-alpha", "team-beta", "shared"] {
        mount_v2(&root, m).await;
    }
    let mounts = ok(root.get("sys/mounts").await, 200).await;
    assert_eq!(mounts["data"]["team-alpha/"]["type"], "kv");
    assert_eq!(
        mounts["data"]["team-alpha/"]["options"],
        json!({"version": "2"})
    );
    assert_eq!(mounts["team-beta/"]["type"], "kv", "top-level copy");
    for builtin in ["sys/", "cubbyhole/", "identity/"] {
        assert!(mounts["data"][builtin].is_object(), "{builtin}");
    }
    // The CLI's preflight.
    let pre = ok(
        root.get("sys/internal/ui/mounts/team-alpha/app/db").await,
        200,
    )
    .await;
    assert_eq!(
        (
            pre["data"]["path"].clone(),
            pre["data"]["options"]["version"].clone()
        ),
        (json!("team-alpha/"), json!("2"))
    );

    // put / get / second version / read version 1.
    let w = ok(
        root.put(
            "team-alpha/data/app/db",
            json!({"data": {"user": "app", "password": "s3cr3t-1"}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(w["data"]["version"], 1);
    assert_eq!(w["data"]["deletion_time"], "");
    assert_eq!(w["data"]["destroyed"], false);
    let w = ok(
        root.put(
            "team-alpha/data/app/db",
            json!({"data": {"user": "app", "password": "s3cr3t-2"}, "options": {}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(w["data"]["version"], 2);
    let r = ok(root.get("team-alpha/data/app/db").await, 200).await;
    assert_eq!(r["data"]["data"]["password"], "s3cr3t-2");
    assert_eq!(r["data"]["metadata"]["version"], 2);
    assert_eq!(r["lease_duration"], 0);
    let r = ok(root.get("team-alpha/data/app/db?version=1").await, 200).await;
    assert_eq!(r["data"]["data"]["password"], "s3cr3t-1");

    // Soft delete: 404 that still carries the metadata; undelete brings it back.
    ok(root.delete("team-alpha/data/app/db").await, 204).await;
    let r = root.get("team-alpha/data/app/db").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["data"]["data"], Value::Null);
    assert_eq!(r.body["data"]["metadata"]["version"], 2);
    assert_ne!(r.body["data"]["metadata"]["deletion_time"], "");
    ok(
        root.put("team-alpha/undelete/app/db", json!({"versions": [2]}))
            .await,
        204,
    )
    .await;
    assert_eq!(
        ok(root.get("team-alpha/data/app/db").await, 200).await["data"]["data"]["password"],
        "s3cr3t-2"
    );
    // Destroy version 1: gone for good.
    ok(
        root.put("team-alpha/destroy/app/db", json!({"versions": [1]}))
            .await,
        204,
    )
    .await;
    let r = root.get("team-alpha/data/app/db?version=1").await;
    assert_eq!(
        (r.status, r.body["data"]["metadata"]["destroyed"].clone()),
        (404, json!(true))
    );
    let md = ok(root.get("team-alpha/metadata/app/db").await, 200).await;
    assert_eq!(md["data"]["current_version"], 2);
    assert_eq!(md["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(md["data"]["max_versions"], 0);

    // Patch (merge-patch only), subkeys, list.
    let r = root
        .raw(
            "PATCH",
            "team-alpha/data/app/db",
            Some(br#"{"data":{"password":"s3cr3t-3","port":"5432"}}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 415, "PATCH needs application/merge-patch+json");
    let r = bulwark_e2e::patch(
        &root,
        "team-alpha/data/app/db",
        json!({"data": {"password": "s3cr3t-3", "user": null, "port": "5432"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["version"], 3);
    let r = ok(root.get("team-alpha/data/app/db").await, 200).await;
    assert_eq!(
        r["data"]["data"],
        json!({"password": "s3cr3t-3", "port": "5432"})
    );
    // PATCH of a missing key: plain 404; of a deleted current version: 404 with metadata.
    let r = bulwark_e2e::patch(&root, "team-alpha/data/nope", json!({"data": {"a": "b"}})).await;
    assert_eq!((r.status, r.body["data"].clone()), (404, Value::Null));
    ok(
        root.put("team-beta/data/gone", json!({"data": {"a": "b"}}))
            .await,
        200,
    )
    .await;
    ok(root.delete("team-beta/data/gone").await, 204).await;
    let r = bulwark_e2e::patch(&root, "team-beta/data/gone", json!({"data": {"a": "c"}})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["data"]["metadata"]["version"], 1, "{:?}", r.body);
    let sk = ok(root.get("team-alpha/subkeys/app/db").await, 200).await;
    assert_eq!(
        sk["data"]["subkeys"],
        json!({"password": null, "port": null})
    );
    ok(
        root.put("team-alpha/data/app/cache", json!({"data": {"k": "v"}}))
            .await,
        200,
    )
    .await;
    ok(
        root.put("team-alpha/data/top", json!({"data": {"k": "v"}}))
            .await,
        200,
    )
    .await;
    let l = ok(root.raw("LIST", "team-alpha/metadata/app", None).await, 200).await;
    assert_eq!(l["data"]["keys"], json!(["cache", "db"]));
    let l = ok(root.get("team-alpha/metadata/?list=true").await, 200).await;
    assert_eq!(l["data"]["keys"], json!(["app/", "top"]));
    assert_eq!(
        root.raw("LIST", "team-alpha/metadata/nothing", None)
            .await
            .status,
        404
    );

    // cas_required via the mount config.
    ok(
        root.put("team-alpha/config", json!({"cas_required": true}))
            .await,
        204,
    )
    .await;
    assert_eq!(
        ok(root.get("team-alpha/config").await, 200).await["data"]["cas_required"],
        true
    );
    let r = root
        .put("team-alpha/data/app/db", json!({"data": {"a": "b"}}))
        .await;
    assert_eq!(
        (r.status, r.errors()),
        (
            400,
            vec!["check-and-set parameter required for this call".to_string()]
        )
    );
    let r = root
        .put(
            "team-alpha/data/app/db",
            json!({"data": {"a": "b"}, "options": {"cas": 1}}),
        )
        .await;
    assert_eq!(
        (r.status, r.errors()),
        (
            400,
            vec!["check-and-set parameter did not match the current version".to_string()]
        )
    );
    ok(
        root.put(
            "team-alpha/data/app/db",
            json!({"data": {"a": "b"}, "options": {"cas": 3}}),
        )
        .await,
        200,
    )
    .await;
    ok(
        root.put("team-alpha/config", json!({"cas_required": false}))
            .await,
        204,
    )
    .await;

    // max_versions=3 keeps three.
    ok(
        root.put(
            "team-beta/metadata/rotating",
            json!({"max_versions": 3, "custom_metadata": {"owner": "beta"}}),
        )
        .await,
        204,
    )
    .await;
    for i in 1..=5 {
        ok(
            root.put(
                "team-beta/data/rotating",
                json!({"data": {"n": i.to_string()}}),
            )
            .await,
            200,
        )
        .await;
    }
    let md = ok(root.get("team-beta/metadata/rotating").await, 200).await;
    assert_eq!(md["data"]["current_version"], 5);
    assert_eq!(md["data"]["versions"].as_object().unwrap().len(), 3);
    assert_eq!(md["data"]["custom_metadata"], json!({"owner": "beta"}));
    assert_eq!(
        root.get("team-beta/data/rotating?version=1").await.status,
        404
    );
    assert_eq!(
        ok(root.get("team-beta/data/rotating?version=3").await, 200).await["data"]["data"]["n"],
        "3"
    );

    // Metadata delete wipes every version.
    ok(root.delete("team-beta/metadata/rotating").await, 204).await;
    assert_eq!(root.get("team-beta/data/rotating").await.status, 404);
    assert_eq!(root.get("team-beta/metadata/rotating").await.status, 404);

    // Mounts are separate; disabling deletes the data.
    assert_eq!(root.get("shared/data/app/db").await.status, 404);
    ok(
        root.put("shared/data/x", json!({"data": {"k": "v"}})).await,
        200,
    )
    .await;
    ok(root.delete("sys/mounts/shared").await, 204).await;
    assert_eq!(root.get("shared/data/x").await.status, 404);
    mount_v2(&root, "shared").await;
    assert_eq!(
        root.get("shared/data/x").await.status,
        404,
        "a new mount starts empty"
    );

    // Paths a v2 mount does not serve.
    let r = root.get("team-alpha/app/db").await;
    assert_eq!(r.status, 404);
    assert!(r.body["warnings"][0]
        .as_str()
        .unwrap_or("")
        .contains("Invalid path for a versioned K/V"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_v1_cubbyhole_and_policies() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    ok(root.put("sys/mounts/kv", json!({"type": "kv"})).await, 204).await;
    let pre = ok(root.get("sys/internal/ui/mounts/kv").await, 200).await;
    assert!(pre["data"]["options"].is_null() || pre["data"]["options"]["version"] != "2");
    ok(
        root.put(
            "kv/vault-secret-management/local/flask_environment",
            json!({"FLASK_ENV": "development"}),
        )
        .await,
        204,
    )
    .await;
    let r = ok(
        root.get("kv/vault-secret-management/local/flask_environment")
            .await,
        200,
    )
    .await;
    assert_eq!(r["data"], json!({"FLASK_ENV": "development"}));
    assert_eq!(
        r["lease_duration"], 2764800,
        "kv v1 reports the mount's default TTL"
    );
    let l = ok(root.get("kv/vault-secret-management/?list=true").await, 200).await;
    assert_eq!(l["data"]["keys"], json!(["local/"]));
    assert_eq!(root.put("kv/empty", json!({})).await.status, 400);
    ok(
        root.delete("kv/vault-secret-management/local/flask_environment")
            .await,
        204,
    )
    .await;
    assert_eq!(
        root.get("kv/vault-secret-management/local/flask_environment")
            .await
            .status,
        404
    );

    // Upgrade v1 → v2 keeps the data as version 1.
    ok(root.put("kv/keep", json!({"a": "1"})).await, 204).await;
    ok(
        root.put("sys/mounts/kv/tune", json!({"options": {"version": "2"}}))
            .await,
        204,
    )
    .await;
    let r = ok(root.get("kv/data/keep").await, 200).await;
    assert_eq!(
        (
            r["data"]["data"]["a"].clone(),
            r["data"]["metadata"]["version"].clone()
        ),
        (json!("1"), json!(1))
    );

    // Cubbyhole: each token sees only its own.
    let created = root.put("auth/token/create", json!({})).await.body["auth"].clone();
    let t1 = created["client_token"].as_str().unwrap().to_string();
    let acc1 = created["accessor"].as_str().unwrap().to_string();
    let t2 = root.put("auth/token/create", json!({})).await.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (a1, a2) = (api.with_token(&t1), api.with_token(&t2));
    ok(a1.put("cubbyhole/mine", json!({"v": "one"})).await, 204).await;
    assert_eq!(
        ok(a1.get("cubbyhole/mine").await, 200).await["data"]["v"],
        "one"
    );
    assert_eq!(a2.get("cubbyhole/mine").await.status, 404);
    assert_eq!(a2.raw("LIST", "cubbyhole/", None).await.status, 404);
    assert_eq!(
        ok(a1.raw("LIST", "cubbyhole/", None).await, 200).await["data"]["keys"],
        json!(["mine"])
    );
    // Revoking the token destroys its cubbyhole (checked in the raw storage).
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        c.dir.path().join("bulwark.db").display()
    ))
    .await
    .unwrap();
    let count = |db: sqlx::SqlitePool, acc: String| async move {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM bulwark_kv WHERE key LIKE '%' || ?1 || '%'")
                .bind(acc)
                .fetch_one(&db)
                .await
                .unwrap();
        n
    };
    assert_eq!(count(db.clone(), acc1.clone()).await, 1);
    ok(
        root.put("auth/token/revoke", json!({"token": t1})).await,
        204,
    )
    .await;
    let mut left = 1;
    for _ in 0..100 {
        left = count(db.clone(), acc1.clone()).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the revoked token's cubbyhole is destroyed");
    db.close().await;

    // Policies on kv v2 paths: read-only can read data, not delete or write.
    mount_v2(&root, "secret").await;
    ok(
        root.put(
            "secret/data/mysql/webapp",
            json!({"data": {"db_name": "users", "password": "pw"}}),
        )
        .await,
        200,
    )
    .await;
    ok(root.put("sys/policies/acl/readonly-kv-backend", json!({"policy": "path \"secret/data/mysql/webapp\" {\n  capabilities = [\"read\"]\n}\n"})).await, 204).await;
    let ro = root
        .put(
            "auth/token/create",
            json!({"policies": ["readonly-kv-backend"]}),
        )
        .await
        .body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let ro = api.with_token(&ro);
    assert_eq!(
        ok(ro.get("secret/data/mysql/webapp").await, 200).await["data"]["data"]["password"],
        "pw"
    );
    assert_eq!(ro.delete("secret/data/mysql/webapp").await.status, 403);
    assert_eq!(
        ro.put("secret/data/mysql/webapp", json!({"data": {"x": "y"}}))
            .await
            .status,
        403
    );
    assert_eq!(ro.get("secret/metadata/mysql/webapp").await.status, 403);
    // The CLI's preflight answers only for mounts the token can reach.
    let pre = ok(
        ro.get("sys/internal/ui/mounts/secret/mysql/webapp").await,
        200,
    )
    .await;
    assert_eq!(pre["data"]["path"], "secret/");
    let r = ro.get("sys/internal/ui/mounts/kv/anything").await;
    assert_eq!(r.status, 403);
    assert!(
        r.errors()[0].contains("preflight capability check returned 403"),
        "{:?}",
        r.errors()
    );
    let listed = ok(ro.get("sys/internal/ui/mounts").await, 200).await;
    assert!(listed["data"]["secret"]["secret/"].is_object());
    assert!(listed["data"]["secret"]["kv/"].is_null());
    // create without update: a new key yes, an existing key no.
    ok(
        root.put(
            "sys/policies/acl/create-only",
            json!({"policy": "path \"secret/data/*\" { capabilities = [\"create\"] }"}),
        )
        .await,
        204,
    )
    .await;
    let co = root
        .put("auth/token/create", json!({"policies": ["create-only"]}))
        .await
        .body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let co = api.with_token(&co);
    ok(
        co.put("secret/data/new-one", json!({"data": {"a": "b"}}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        co.put("secret/data/new-one", json!({"data": {"a": "c"}}))
            .await
            .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cas_writers_and_bad_input() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    mount_v2(&root, "secret").await;
    // 50 writers, each round all racing with cas = current version.
    let mut current = 0u64;
    for _round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let r = root.clone();
            tasks.push(tokio::spawn(async move {
                r.put(
                    "secret/data/race",
                    json!({"data": {"writer": i.to_string()}, "options": {"cas": current}}),
                )
                .await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            let r = t.await.unwrap();
            match r.status {
                200 => wins += 1,
                400 => assert!(r.errors()[0].contains("check-and-set"), "{:?}", r.errors()),
                other => panic!("unexpected {other}: {:?}", r.body),
            }
        }
        assert_eq!(wins, 1, "exactly one writer wins version {}", current + 1);
        current += 1;
        let md = ok(root.get("secret/metadata/race").await, 200).await;
        assert_eq!(md["data"]["current_version"], current);
    }
    // 20 writers without cas: versions 4..=23, none lost or duplicated.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let r = root.clone();
        tasks.push(tokio::spawn(async move {
            r.put("secret/data/race", json!({"data": {"w": i.to_string()}}))
                .await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        versions.push(r.body["data"]["version"].as_u64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (4..=23).collect::<Vec<_>>());

    // Bad input: clear 4xx, nothing written.
    for (body, msg) in [
        (json!({"data": "not an object"}), "no data provided"),
        (json!({"data": [1, 2]}), "no data provided"),
        (json!({}), "no data provided"),
        (
            json!({"data": {"a": "b"}, "options": {"cas": "x"}}),
            "check-and-set",
        ),
        (json!({"data": {"a": "b"}, "options": "nope"}), "options"),
    ] {
        let r = root.put("secret/data/bad", body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(
            r.errors().iter().any(|e| e.contains(msg)),
            "{body}: {:?}",
            r.errors()
        );
    }
    assert_eq!(
        root.get("secret/metadata/bad").await.status,
        404,
        "nothing half-written"
    );
    assert_eq!(root.get("secret/data/race?version=abc").await.status, 400);
    assert_eq!(root.get("secret/data/race?version=-1").await.status, 400);
    assert_eq!(root.get("secret/data/race?version=999").await.status, 404);
    assert_eq!(root.put("secret/delete/race", json!({})).await.status, 400);
    assert_eq!(
        root.put("secret/destroy/race", json!({"versions": ["x"]}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.raw("PUT", "secret/data/race", Some(b"{broken".to_vec()))
            .await
            .status,
        400
    );
    assert_eq!(root.get("nowhere/data/x").await.status, 404);
    // Mount errors.
    let r = root.put("sys/mounts/secret", json!({"type": "kv"})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.errors()[0].contains("path is already in use at secret/"),
        "{:?}",
        r.errors()
    );
    assert_eq!(
        root.put("sys/mounts/secret/nested", json!({"type": "kv"}))
            .await
            .status,
        400
    );
    assert_eq!(
        root.put("sys/mounts/x", json!({"type": "nope"}))
            .await
            .status,
        400
    );
    assert_eq!(root.put("sys/mounts/x", json!({})).await.status, 400);
    assert_eq!(
        root.put(
            "sys/mounts/x",
            json!({"type": "kv", "options": {"version": "3"}})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        root.put(
            "sys/mounts/x",
            json!({"type": "kv", "config": {"max_lease_ttl": "forever"}})
        )
        .await
        .status,
        400
    );
    assert_eq!(root.delete("sys/mounts/sys").await.status, 400);
    assert_eq!(root.delete("sys/mounts/cubbyhole").await.status, 400);
    assert_eq!(
        root.put("sys/mounts/sys/x", json!({"type": "kv"}))
            .await
            .status,
        400
    );
    // Large values travel whole (Vault accepts 32 MiB requests); larger is 413.
    let big = "x".repeat(20 * 1024 * 1024);
    let w = root
        .put("secret/data/big", json!({"data": {"blob": big}}))
        .await;
    assert_eq!(w.status, 200, "{:?}", w.errors());
    let r = root.get("secret/data/big").await;
    assert_eq!(
        r.body["data"]["data"]["blob"].as_str().map(str::len),
        Some(big.len())
    );
    let (code, _) = bulwark_e2e::oversized_put(&c.http, "/v1/secret/data/big", true).await;
    assert_eq!(code, 413);
    // Still serving, data intact.
    assert_eq!(
        ok(root.get("secret/metadata/race").await, 200).await["data"]["current_version"],
        23
    );
}
