//! Bad config files (issue 11): every kind of mistake stops `bulwark server`
//! at once with a non-zero exit and one line naming the file, the line and
//! the key, and nothing is written.

use std::process::Command;
use std::time::{Duration, Instant};

use bulwark_e2e::bulwark_bin;

/// Runs the server on `body` (after a valid storage block unless the body
/// has its own); returns (exit code, stderr).
fn run(dir: &std::path::Path, name: &str, body: &str) -> (i32, String) {
    let db = dir.join(format!("{name}.db"));
    let storage = if body.contains("storage ") {
        String::new()
    } else {
        format!("storage \"sqlite\" {{\n  path = \"{}\"\n}}\n", db.display())
    };
    let file = dir.join(format!("{name}.hcl"));
    std::fs::write(&file, format!("{storage}{body}")).unwrap();
    let mut child = Command::new(bulwark_bin())
        .args(["server", "-config"])
        .arg(&file)
        .env("BULWARK_SEAL_KEY_UNSET_FOR_TEST", "")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{name}: the server started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert!(!db.exists(), "{name}: storage was created");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn every_mistake_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str, usize)] = &[
        ("unknown-key", "\nbogus_setting = 1\n", "bogus_setting", 5),
        ("log-format", "log_format = \"xml\"\n", "log_format", 4),
        (
            "table-prefix",
            "storage \"postgresql\" {\n  connection_url = \"postgres://127.0.0.1/x\"\n  table_prefix = \"Bad-\"\n}\n",
            "table_prefix",
            3,
        ),
        (
            "listener-address",
            "listener \"tcp\" {\n  address = \"nowhere\"\n  tls_disable = true\n}\n",
            "address",
            5,
        ),
        (
            "otlp-endpoint",
            "telemetry {\n  otlp_endpoint = \"collector:4317\"\n}\n",
            "otlp_endpoint",
            5,
        ),
        (
            "short-seal-key",
            "seal \"static\" {\n  current_key_id = \"k\"\n  current_key = \"00112233\"\n}\n",
            "current_key",
            6,
        ),
        ("empty-replicas", "cluster {\n  auth = []\n}\n", "auth", 5),
        ("tls-disable", "listener \"tcp\" {\n  tls_disable = \"maybe\"\n}\n", "tls_disable", 5),
        ("syntax", "listener \"tcp\" {\n  address = \n}\n", "HCL syntax", 0),
    ];
    for (name, body, key, line) in cases {
        let (code, err) = run(dir.path(), name, body);
        assert_ne!(code, 0, "{name}");
        assert_eq!(err.lines().count(), 1, "{name}: one line, got {err:?}");
        assert!(err.contains(&format!("{name}.hcl")), "{name}: {err}");
        assert!(err.contains(key), "{name}: {err}");
        let line = if *line == 0 { 5 } else { *line };
        assert!(
            err.contains(&format!("{name}.hcl:{line}:")),
            "{name}: {err}"
        );
    }
}
