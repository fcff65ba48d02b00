//! The HTTPS listener in production (issue 11): SIGHUP swaps the
//! certificate without dropping the process or its connections and applies
//! the config file's log level again; `tls_client_ca_file` verifies client
//! certificates and `tls_require_and_verify_client_cert` requires one.

use std::time::{Duration, Instant};

use bulwark_e2e::{Api, Cluster, Layout, Options, Store, TestCa};

/// Polls until `f` holds (SIGHUP is handled asynchronously).
async fn eventually(what: &str, f: impl AsyncFnMut() -> bool) {
    let mut f = f;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_the_log_level() {
    let c = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            https: true,
            env: vec![("RUST_LOG".into(), String::new())],
            ..Default::default()
        },
    );
    let old_ca = c.http_ca.clone().expect("https");
    assert_eq!(c.client().get("sys/health").await.status, 501);

    // A new certificate from another CA, written over the files.
    let new_ca = TestCa::new("rotated HTTPS CA");
    let (cert, key) = new_ca.leaf("bulwark-gateway", false);
    std::fs::write(c.dir.path().join("http.crt"), cert).unwrap();
    std::fs::write(c.dir.path().join("http.key"), key).unwrap();
    let cfg = std::fs::read_to_string(c.config_path()).unwrap();
    std::fs::write(c.config_path(), format!("{cfg}\nlog_level = \"debug\"\n")).unwrap();
    let proc = &c.procs[0];
    proc.signal("HUP");

    let base = c.http.clone();
    let trusting = |ca: String| Api::new_tls(&base, &ca, None);
    let (new_pem, old_pem) = (new_ca.cert_pem.clone(), old_ca.clone());
    eventually("the new certificate is served after SIGHUP", async || {
        try_health(&trusting(new_pem.clone())).await == Some(501)
    })
    .await;
    assert_eq!(
        try_health(&trusting(old_pem)).await,
        None,
        "the old certificate is gone"
    );
    let log = std::fs::read_to_string(&proc.stderr).unwrap();
    assert!(
        log.contains("SIGHUP: listener certificate reloaded"),
        "{log}"
    );
    assert!(log.contains("SIGHUP: log level applied"), "{log}");

    // A bad pair is refused and the current one stays.
    std::fs::write(c.dir.path().join("http.key"), "not a key").unwrap();
    proc.signal("HUP");
    eventually("the refusal is logged", async || {
        std::fs::read_to_string(&proc.stderr)
            .unwrap()
            .contains("SIGHUP: listener certificate kept")
    })
    .await;
    assert_eq!(
        try_health(&trusting(new_ca.cert_pem.clone())).await,
        Some(501)
    );
}

/// The health status through `api`, or `None` when TLS fails (the
/// harness's client panics on a transport error).
async fn try_health(api: &Api) -> Option<u16> {
    let api = api.clone();
    tokio::spawn(async move { api.get("sys/health").await.status })
        .await
        .ok()
}

#[tokio::test]
async fn client_certificates_are_verified_against_the_client_ca() {
    let client_ca = TestCa::new("client CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &client_ca.cert_pem).unwrap();
    let c = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            https: true,
            listener_extra: format!(
                "  tls_client_ca_file = \"{}\"\n  tls_require_and_verify_client_cert = true",
                ca_file.display()
            ),
            ..Default::default()
        },
    );
    let (cert, key) = client_ca.leaf("app", true);
    let good = c.client_with_identity(&cert, &key);
    assert_eq!(good.get("sys/health").await.status, 501);
    // No certificate, or one from another CA: no TLS session.
    assert_eq!(try_health(&c.client()).await, None);
    let stranger = TestCa::new("other CA");
    let (cert, key) = stranger.leaf("app", true);
    assert_eq!(try_health(&c.client_with_identity(&cert, &key)).await, None);
}
