//! Foundation end to end: init 5/3, unseal with progress, seal, restart and
//! unseal again, on every layout and storage backend; bad input; dev mode.

use std::time::Duration;

use bulwark_e2e::{Api, Cluster, Layout, Proc, Store, TestPg};
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_shared::grpc;
use bulwark_shared::ServiceName;
use serde_json::{json, Value};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

struct Init {
    hex: Vec<String>,
    b64: Vec<String>,
    root: String,
}

async fn init_5_3(api: &Api) -> Init {
    let r = api.get("sys/init").await;
    assert_eq!((r.status, &r.body), (200, &json!({"initialized": false})));
    let r = api
        .put(
            "sys/init",
            json!({"secret_shares": 5, "secret_threshold": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let hex: Vec<String> = serde_json::from_value(r.body["keys"].clone()).unwrap();
    let b64: Vec<String> = serde_json::from_value(r.body["keys_base64"].clone()).unwrap();
    let root = r.body["root_token"].as_str().unwrap().to_string();
    assert_eq!(hex.len(), 5);
    assert_eq!(b64.len(), 5);
    let mut distinct = hex.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "keys are distinct");
    assert!(hex.iter().all(|k| k.len() == 66), "33-byte shares as hex");
    assert!(root.starts_with("hvs.") && root.len() > 20);
    assert_eq!(api.get("sys/init").await.body, json!({"initialized": true}));
    Init { hex, b64, root }
}

async fn status(api: &Api) -> Value {
    let r = api.get("sys/seal-status").await;
    assert_eq!(r.status, 200);
    r.body
}

async fn unseal(api: &Api, key: &str) -> Value {
    let r = api.put("sys/unseal", json!({ "key": key })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// Health of a keyed service, asked over mTLS as the gateway.
async fn service_health(c: &Cluster, name: ServiceName) -> Option<ServingStatus> {
    let id = c.identity(ServiceName::Gateway);
    let ch = grpc::connect(&id, name, &c.grpc_addr(name)).ok()?;
    let r = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(r.into_inner().status).ok()
}

async fn wait_service(c: &Cluster, name: ServiceName, want: ServingStatus) {
    for _ in 0..200 {
        if service_health(c, name).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reported {want:?}");
}

async fn lifecycle(mut c: Cluster) {
    let api = c.client();
    assert_eq!(api.get("sys/health").await.status, 501, "uninitialized");
    let keys = init_5_3(&api).await;
    let st = status(&api).await;
    assert_eq!(
        (
            st["sealed"].clone(),
            st["t"].clone(),
            st["n"].clone(),
            st["progress"].clone()
        ),
        (json!(true), json!(3), json!(5), json!(0))
    );
    assert_eq!(st["type"], "shamir");
    assert_eq!(api.get("sys/health").await.status, 503, "sealed");
    assert_eq!(api.get("secret/data/x").await.status, 503);

    // Progress 1/3, 2/3 with a stable nonce (hex and base64 both accepted).
    let s1 = unseal(&api, &keys.hex[0]).await;
    assert_eq!(
        (s1["progress"].clone(), s1["sealed"].clone()),
        (json!(1), json!(true))
    );
    let nonce = s1["nonce"].as_str().unwrap().to_string();
    assert!(!nonce.is_empty());
    let s2 = unseal(&api, &keys.b64[1]).await;
    assert_eq!(
        (s2["progress"].clone(), s2["nonce"].as_str().unwrap()),
        (json!(2), nonce.as_str())
    );
    assert_eq!(status(&api).await["progress"], 2);

    // A wrong key is refused and clears progress.
    let wrong = hex::encode([7u8; 33]);
    let r = api.put("sys/unseal", json!({ "key": wrong })).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(status(&api).await["progress"], 0);

    // Reset clears progress too.
    unseal(&api, &keys.hex[0]).await;
    let r = api.put("sys/unseal", json!({ "reset": true })).await;
    assert_eq!(
        (
            r.status,
            r.body["progress"].clone(),
            r.body["nonce"].clone()
        ),
        (200, json!(0), json!(""))
    );

    for k in &keys.hex[0..3] {
        unseal(&api, k).await;
    }
    let st = status(&api).await;
    assert_eq!(
        (st["sealed"].clone(), st["progress"].clone()),
        (json!(false), json!(0))
    );
    assert!(st["cluster_id"].as_str().is_some_and(|s| !s.is_empty()));
    let h = api.get("sys/health").await;
    assert_eq!(
        (
            h.status,
            h.body["sealed"].clone(),
            h.body["initialized"].clone()
        ),
        (200, json!(false), json!(true))
    );
    assert_eq!(
        api.get("secret/data/x").await.status,
        403,
        "unsealed: no token"
    );
    let r = api.with_token(&keys.root).get("secret/data/x").await;
    assert_eq!(
        r.status, 404,
        "unsealed, root: routing, no such mount yet: {:?}",
        r.body
    );
    if c.procs.len() > 1 {
        // Every keyed service got its key from seal over mTLS.
        for name in [ServiceName::Auth, ServiceName::Kv, ServiceName::Audit] {
            wait_service(&c, name, ServingStatus::Serving).await;
        }
    }

    // Sealing needs the root token.
    assert_eq!(api.put("sys/seal", json!({})).await.status, 403);
    assert_eq!(
        api.with_token("hvs.bogus")
            .put("sys/seal", json!({}))
            .await
            .status,
        403
    );
    let r = api.with_token(&keys.root).put("sys/seal", json!({})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(status(&api).await["sealed"], true);
    let r = api.get("secret/data/x").await;
    assert_eq!(
        (r.status, r.errors()),
        (503, vec!["Vault is sealed".to_string()])
    );
    assert_eq!(api.get("sys/health").await.status, 503);
    if c.procs.len() > 1 {
        wait_service(&c, ServiceName::Kv, ServingStatus::NotServing).await;
    }

    // A different 3 of the 5 unseal it again.
    for k in [&keys.b64[4], &keys.hex[3], &keys.b64[2]] {
        unseal(&api, k).await;
    }
    assert_eq!(status(&api).await["sealed"], false);

    // Restart everything: still initialized, sealed; unsealing recovers it.
    c.restart();
    let api = c.client();
    let st = api
        .wait_until("sys/seal-status", |r| r.status == 200)
        .await
        .body;
    assert_eq!(
        (st["initialized"].clone(), st["sealed"].clone()),
        (json!(true), json!(true))
    );
    for k in [&keys.hex[1], &keys.hex[2], &keys.hex[4]] {
        unseal(&api, k).await;
    }
    assert_eq!(status(&api).await["sealed"], false);
    let r = api.with_token(&keys.root).put("sys/seal", json!({})).await;
    assert_eq!(r.status, 204, "the root token survives a restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn separate_processes_on_sqlite() {
    let c = Cluster::start(Layout::Separate, Store::SqliteFile);
    assert_eq!(c.procs.len(), ServiceName::ALL.len());
    assert!(c.dir.path().join("bulwark.db").exists());
    lifecycle(c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_on_sqlite() {
    lifecycle(Cluster::start(Layout::AllInOne, Store::SqliteFile)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_on_postgres() {
    let pg = TestPg::new().await;
    lifecycle(Cluster::start(
        Layout::AllInOne,
        Store::Postgres(pg.url.clone()),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn separate_processes_on_postgres() {
    let pg = TestPg::new().await;
    lifecycle(Cluster::start(
        Layout::Separate,
        Store::Postgres(pg.url.clone()),
    ))
    .await;
}

/// No plaintext secret reaches storage: the root token and the key shares
/// appear nowhere in the SQLite files or the PostgreSQL rows.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_stored_in_the_clear() {
    let pg = TestPg::new().await;
    for store in [Store::SqliteFile, Store::Postgres(pg.url.clone())] {
        let c = Cluster::start(Layout::AllInOne, store.clone());
        let api = c.client();
        let keys = init_5_3(&api).await;
        for k in &keys.hex[..3] {
            unseal(&api, k).await;
        }
        let mut needles: Vec<Vec<u8>> = vec![keys.root.as_bytes().to_vec()];
        for (h, b) in keys.hex.iter().zip(&keys.b64) {
            needles.push(h.as_bytes().to_vec());
            needles.push(b.as_bytes().to_vec());
            needles.push(hex::decode(h).unwrap());
        }
        let mut stored: Vec<Vec<u8>> = vec![];
        match &store {
            Store::SqliteFile => {
                for entry in std::fs::read_dir(c.dir.path()).unwrap() {
                    let p = entry.unwrap().path();
                    if p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("bulwark.db")
                    {
                        stored.push(std::fs::read(&p).unwrap());
                    }
                }
                assert!(!stored.is_empty());
            }
            Store::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let rows: Vec<(String, Vec<u8>)> =
                    sqlx::query_as("SELECT key, value FROM bulwark_seal")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                assert!(!rows.is_empty());
                stored.extend(rows.into_iter().map(|(k, v)| [k.into_bytes(), v].concat()));
                pool.close().await;
            }
        }
        for blob in &stored {
            for n in &needles {
                assert!(
                    !blob.windows(n.len()).any(|w| w == n.as_slice()),
                    "secret found in storage"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    // Unseal before init.
    let r = api
        .put("sys/unseal", json!({"key": hex::encode([1u8; 33])}))
        .await;
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["Vault is not initialized".to_string()])
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "failed to parse JSON"),
        (b"[1,2,3]".to_vec(), "JSON object"),
        (
            br#"{"secret_shares":"five","secret_threshold":3}"#.to_vec(),
            "secret_shares",
        ),
        (
            br#"{"secret_shares":3,"secret_threshold":5}"#.to_vec(),
            "threshold cannot be larger than shares",
        ),
        (
            br#"{"secret_shares":3,"secret_threshold":0}"#.to_vec(),
            "threshold must be at least one",
        ),
        (
            br#"{"secret_shares":300,"secret_threshold":3}"#.to_vec(),
            "shares must be less than 256",
        ),
        (
            br#"{"secret_shares":-1,"secret_threshold":3}"#.to_vec(),
            "secret_shares",
        ),
        (br#"{}"#.to_vec(), "shares must be at least one"),
    ];
    for (body, msg) in cases {
        let r = api.raw("PUT", "sys/init", Some(body.clone())).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&body));
        assert!(
            r.errors().iter().any(|e| e.contains(msg)),
            "{:?} should mention {msg:?}",
            r.errors()
        );
    }
    // A body over 32 MiB is refused: announced by Content-Length, or streamed.
    let (code, body) = bulwark_e2e::oversized_put(&c.http, "/v1/sys/init", true).await;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("errors"));
    let (code, body) = bulwark_e2e::oversized_put(&c.http, "/v1/sys/init", false).await;
    assert_eq!(code, 413, "{body}");
    // Still uninitialized and serving.
    assert_eq!(
        api.get("sys/init").await.body,
        json!({"initialized": false})
    );

    let keys = init_5_3(&api).await;
    let r = api
        .put(
            "sys/init",
            json!({"secret_shares": 5, "secret_threshold": 3}),
        )
        .await;
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["Vault is already initialized".to_string()])
    );
    for (body, msg) in [
        (json!({}), "'key' must be specified"),
        (json!({"key": ""}), "'key' must be specified"),
        (json!({"key": "not-hex-or-base64!"}), "valid hex or base64"),
        (json!({"key": "abcd"}), "invalid unseal key"),
        (json!({"key": 12}), "valid hex or base64"),
        (json!({"key": ["x"]}), "must be a string"),
        (json!({"reset": "maybe"}), "boolean"),
    ] {
        let r = api.put("sys/unseal", body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(
            r.errors().iter().any(|e| e.contains(msg)),
            "{body}: {:?}",
            r.errors()
        );
    }
    // Unknown paths, wrong verbs, bad query values.
    assert_eq!(api.raw("DELETE", "sys/init", None).await.status, 405);
    assert_eq!(api.raw("PATCH", "sys/seal-status", None).await.status, 405);
    assert_eq!(api.raw("TRACE", "sys/health", None).await.status, 405);
    assert_eq!(api.get("sys/health?sealedcode=abc").await.status, 400);
    assert_eq!(api.get("sys/health?sealedcode=299").await.status, 299);
    assert_eq!(api.get("sys/health?standbyok=perhaps").await.status, 400);
    assert_eq!(api.get("sys/seal-status?list=maybe").await.status, 400);
    assert_eq!(api.raw("HEAD", "sys/health", None).await.status, 503);
    let r = reqwest::get(format!("{}/not-the-api", c.http))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The unseal keys still work; nothing was broken by the noise.
    for k in &keys.hex[2..5] {
        unseal(&api, k).await;
    }
    assert_eq!(status(&api).await["sealed"], false);
    let r = api.get("sys/leader").await;
    assert_eq!(
        (r.status, r.body["ha_enabled"].clone()),
        (200, json!(false))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_mode_starts_unsealed_with_the_given_root_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(
        dir.path(),
        "dev",
        &[
            "server",
            "-dev",
            "-dev-root-token-id=root",
            "-dev-listen-address=127.0.0.1:0",
        ],
    );
    let addr = p.field("Api Address:").expect("api address");
    let key = p.field("Unseal Key:").expect("unseal key");
    assert_eq!(p.field("Root Token:").as_deref(), Some("root"));
    let api = Api::new(&addr);
    let st = status(&api).await;
    assert_eq!(
        (
            st["initialized"].clone(),
            st["sealed"].clone(),
            st["t"].clone()
        ),
        (json!(true), json!(false), json!(1))
    );
    // Like Vault's dev mode: kv v2 at secret/.
    let root = api.with_token("root");
    let m = root.get("sys/mounts").await;
    assert_eq!(m.body["data"]["secret/"]["options"]["version"], "2");
    let w = root
        .put("secret/data/hello", json!({"data": {"foo": "world"}}))
        .await;
    assert_eq!(w.status, 200, "{:?}", w.body);
    assert_eq!(
        api.with_token("root")
            .put("sys/seal", json!({}))
            .await
            .status,
        204
    );
    assert_eq!(status(&api).await["sealed"], true);
    assert_eq!(unseal(&api, &key).await["sealed"], false);
}

/// Services refuse callers without a certificate, with a certificate from
/// another CA, and with a valid certificate for the wrong service.
#[tokio::test(flavor = "multi_thread")]
async fn mtls_refuses_strangers_and_wrong_names() {
    use bulwark_proto::seal::v1::{ServiceKeyRequest, StatusRequest, UnsealRequest};
    use bulwark_shared::tls::{InternalCa, ServiceIdentity};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

    let c = Cluster::start(Layout::Separate, Store::SqliteFile);
    let api = c.client();
    let keys = init_5_3(&api).await;
    for k in &keys.hex[..3] {
        unseal(&api, k).await;
    }
    let seal_addr = c.grpc_addr(ServiceName::Seal);
    let ca_pem = std::fs::read_to_string(c.cert_dir().join("ca.pem")).unwrap();

    // No client certificate: the TLS handshake fails.
    let ch = Endpoint::from_shared(format!("https://{seal_addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca_pem))
                .domain_name("seal"),
        )
        .unwrap()
        .connect_lazy();
    assert!(SealClient::new(ch).status(StatusRequest {}).await.is_err());

    // A certificate from a foreign CA naming the gateway: refused.
    let foreign = InternalCa::generate().unwrap();
    let leaf = foreign.issue(ServiceName::Gateway, &[], 1).unwrap();
    let impostor = ServiceIdentity::from_pem(
        ServiceName::Gateway,
        leaf.cert_pem,
        leaf.key_pem,
        ca_pem.clone(),
    );
    let ch = grpc::connect(&impostor, ServiceName::Seal, &seal_addr).unwrap();
    assert!(SealClient::new(ch).status(StatusRequest {}).await.is_err());

    // A valid certificate for kv may follow the state but not drive it.
    let kv = c.identity(ServiceName::Kv);
    let mut as_kv = SealClient::new(grpc::connect(&kv, ServiceName::Seal, &seal_addr).unwrap());
    assert!(as_kv.status(StatusRequest {}).await.is_ok());
    let err = as_kv
        .unseal(UnsealRequest {
            key: vec![1; 33],
            reset: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Each service gets its own key and only its own.
    let kv_key = as_kv
        .service_key(ServiceKeyRequest { term: 0 })
        .await
        .unwrap()
        .into_inner();
    let pki = c.identity(ServiceName::Pki);
    let mut as_pki = SealClient::new(grpc::connect(&pki, ServiceName::Seal, &seal_addr).unwrap());
    let pki_key = as_pki
        .service_key(ServiceKeyRequest { term: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kv_key.key.len(), 32);
    assert_ne!(kv_key.key, pki_key.key);
    assert_eq!(kv_key.term, pki_key.term);

    // The gateway's certificate cannot pose as the seal service to a client
    // that expects seal: hostname verification against the service name.
    let gw = c.identity(ServiceName::Gateway);
    let kv_addr = c.grpc_addr(ServiceName::Kv);
    let ch = grpc::connect(&gw, ServiceName::Seal, &kv_addr).unwrap();
    assert!(SealClient::new(ch).status(StatusRequest {}).await.is_err());
}
