//! End-to-end tests of the `bulwark` client commands against a dev server
//! started as a child process (`bulwark server -dev`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bulwark");

/// A dev server child process, killed on drop.
struct DevServer {
    child: Child,
    addr: String,
    unseal_key: String,
}

impl DevServer {
    fn start() -> DevServer {
        let mut child = Command::new(BIN)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                "-dev-listen-address=127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dev server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut unseal_key) = (String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.expect("read server stdout");
            if let Some(a) = line.trim().strip_prefix("Api Address: ") {
                addr = a.to_string();
            }
            if let Some(k) = line.trim().strip_prefix("Unseal Key: ") {
                unseal_key = k.to_string();
            }
            if line.contains("Bulwark server started") {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        assert!(addr.starts_with("http://"), "no Api Address line");
        assert!(!unseal_key.is_empty(), "no Unseal Key line");
        DevServer {
            child,
            addr,
            unseal_key,
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI with a clean environment: VAULT_ADDR, HOME, optional token.
fn run(addr: &str, home: &Path, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("VAULT_TOKEN")
        .env_remove("BULWARK_TOKEN")
        .env_remove("VAULT_FORMAT")
        .env_remove("VAULT_NAMESPACE")
        .env("VAULT_ADDR", addr)
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("VAULT_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("spawn cli");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("cli output")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Asserts success and returns stdout.
fn ok(o: Output) -> String {
    assert_eq!(code(&o), 0, "stdout:\n{}\nstderr:\n{}", out(&o), err(&o));
    out(&o)
}

/// The value column of a `Key  Value` table row.
fn row<'a>(table: &'a str, key: &str) -> Option<&'a str> {
    table.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?;
        (rest.is_empty() || rest.starts_with("  ")).then(|| rest.trim())
    })
}

#[test]
fn vault_cli_workflow() {
    let srv = DevServer::start();
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let a = srv.addr.as_str();
    let cli = |args: &[&str]| run(a, h, None, args, "");

    // status
    let s = ok(cli(&["status"]));
    assert!(s.starts_with("Key "), "{s}");
    assert_eq!(row(&s, "Sealed"), Some("false"));
    assert_eq!(row(&s, "Initialized"), Some("true"));

    // login writes the token helper with mode 0600
    let s = ok(cli(&["login", "root"]));
    assert!(s.starts_with("Success! You are now authenticated."), "{s}");
    assert_eq!(row(&s, "token"), Some("root"));
    assert_eq!(row(&s, "token_policies"), Some("[\"root\"]"));
    let helper = h.join(".vault-token");
    assert_eq!(
        std::fs::read_to_string(&helper).expect("token file"),
        "root"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&helper)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // kv v2 put / get
    let s = ok(cli(&[
        "kv",
        "put",
        "secret/app",
        "password=s3cr3t",
        "user=admin",
    ]));
    assert!(
        s.starts_with("== Secret Path ==\nsecret/data/app\n\n"),
        "{s}"
    );
    assert!(s.contains("======= Metadata ======="), "{s}");
    assert_eq!(row(&s, "version"), Some("1"));
    let s = ok(cli(&["kv", "get", "secret/app"]));
    assert!(s.starts_with("== Secret Path ==\nsecret/data/app\n"), "{s}");
    assert!(
        s.contains(
            "======= Metadata =======\nKey                Value\n---                -----\n"
        ),
        "{s}"
    );
    assert!(s.contains("====== Data ======\nKey         Value\n---         -----\npassword    s3cr3t\nuser        admin\n"), "{s}");
    assert_eq!(row(&s, "deletion_time"), Some("n/a"));
    assert_eq!(
        ok(cli(&["kv", "get", "-field=password", "secret/app"])),
        "s3cr3t\n"
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(cli(&["kv", "get", "-format=json", "secret/app"]))).expect("json");
    assert_eq!(j["data"]["data"]["password"], "s3cr3t");
    assert_eq!(j["data"]["metadata"]["version"], 1);

    // kv v1 on a new mount
    assert_eq!(
        ok(cli(&["secrets", "enable", "-path=kv", "kv"])),
        "Success! Enabled the kv secrets engine at: kv/\n"
    );
    let p = "kv/vault-secret-management/local/flask_environment";
    assert_eq!(
        ok(cli(&["kv", "put", p, "FLASK_ENV=development"])),
        format!("Success! Data written to: {p}\n")
    );
    let s = ok(cli(&["kv", "get", p]));
    assert!(s.starts_with("Key "), "{s}");
    assert!(!s.contains("Secret Path"), "{s}");
    assert_eq!(row(&s, "FLASK_ENV"), Some("development"));
    let s = ok(cli(&["secrets", "list"]));
    assert!(s.starts_with("Path "), "{s}");
    assert!(s.lines().any(|l| l.starts_with("kv/ ")), "{s}");

    // policies
    let policy = "path \"secret/data/app\" {\n  capabilities = [\"read\"]\n}\n";
    let o = run(a, h, None, &["policy", "write", "readonly", "-"], policy);
    assert_eq!(ok(o), "Success! Uploaded policy: readonly\n");
    assert!(ok(cli(&["policy", "read", "readonly"])).contains("capabilities = [\"read\"]"));
    let s = ok(cli(&["policy", "list"]));
    assert!(s.lines().any(|l| l == "readonly"), "{s}");

    // a restricted token
    let j: serde_json::Value = serde_json::from_str(&ok(cli(&[
        "token",
        "create",
        "-policy=readonly",
        "-format=json",
    ])))
    .expect("json");
    let tok = j["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_string();
    assert!(j["auth"]["policies"]
        .as_array()
        .is_some_and(|p| p.iter().any(|x| x == "readonly")));
    let o = run(
        a,
        h,
        Some(&tok),
        &["kv", "get", "-field=user", "secret/app"],
        "",
    );
    assert_eq!(ok(o), "admin\n");
    let o = run(a, h, Some(&tok), &["kv", "get", "secret/other"], "");
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("permission denied"), "{}", err(&o));
    assert!(err(&o).contains("Code: 403. Errors:"), "{}", err(&o));

    // list, delete, undelete
    let s = ok(cli(&["kv", "list", "secret/"]));
    assert!(s.starts_with("Keys\n----\n"), "{s}");
    assert!(s.lines().any(|l| l == "app"), "{s}");
    assert_eq!(
        ok(cli(&["kv", "delete", "secret/app"])),
        "Success! Data deleted (if it existed) at: secret/data/app\n"
    );
    let s = ok(cli(&["kv", "get", "secret/app"]));
    assert!(!s.contains("Data"), "{s}");
    assert_ne!(row(&s, "deletion_time"), Some("n/a"));
    assert_eq!(
        ok(cli(&["kv", "undelete", "-versions=1", "secret/app"])),
        "Success! Data written to: secret/undelete/app\n"
    );
    assert_eq!(
        ok(cli(&["kv", "get", "-field=user", "secret/app"])),
        "admin\n"
    );
    let o = cli(&["kv", "get", "secret/missing"]);
    assert_eq!(code(&o), 2);
    assert_eq!(err(&o), "No value found at secret/data/missing\n");

    // seal / unseal
    assert_eq!(
        ok(cli(&["operator", "seal"])),
        "Success! Vault is sealed.\n"
    );
    let o = cli(&["status"]);
    assert_eq!(code(&o), 2);
    assert_eq!(row(&out(&o), "Sealed"), Some("true"));
    assert_eq!(row(&out(&o), "Unseal Progress"), Some("0/1"));
    let s = ok(cli(&["operator", "unseal", &srv.unseal_key]));
    assert_eq!(row(&s, "Sealed"), Some("false"));
    assert_eq!(row(&ok(cli(&["status"])), "Sealed"), Some("false"));

    // usage errors
    let o = cli(&["stauts"]);
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("Did you mean \"status\"?"), "{}", err(&o));
    let o = cli(&["kv", "get"]);
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("Usage:"), "{}", err(&o));
    for arg in ["@/nonexistent", "k=@/nonexistent"] {
        let o = cli(&["write", "secret/data/x", arg]);
        assert_eq!(code(&o), 1);
        assert!(err(&o).contains("/nonexistent"), "{}", err(&o));
    }
}

/// The auth-method steps of the walkthroughs: userpass and AppRole, a
/// wrapped SecretID, `auth list|disable`.
#[test]
fn auth_methods_workflow() {
    let srv = DevServer::start();
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let a = srv.addr.as_str();
    let root = |args: &[&str]| run(a, h, Some("root"), args, "");

    assert_eq!(
        ok(root(&["auth", "enable", "userpass"])),
        "Success! Enabled userpass auth method at: userpass/\n"
    );
    assert_eq!(
        ok(root(&[
            "write",
            "auth/userpass/users/alice",
            "password=Password123!",
            "token_ttl=1h",
            "token_max_ttl=24h",
        ])),
        "Success! Data written to: auth/userpass/users/alice\n"
    );
    // `login -method=userpass` stores the token in the helper.
    let o = run(
        a,
        h,
        None,
        &[
            "login",
            "-method=userpass",
            "username=alice",
            "password=Password123!",
        ],
        "",
    );
    let s = ok(o);
    assert!(s.starts_with("Success! You are now authenticated."), "{s}");
    assert_eq!(row(&s, "token_policies"), Some("[\"default\"]"));
    assert_eq!(row(&s, "token_duration"), Some("1h"));
    let alice = std::fs::read_to_string(h.join(".vault-token")).expect("token helper");
    assert!(alice.starts_with("hvs."), "{alice}");
    let o = run(a, h, None, &["token", "lookup"], "");
    assert_eq!(row(&ok(o), "display_name"), Some("userpass-alice"));
    let o = run(
        a,
        h,
        None,
        &[
            "login",
            "-method=userpass",
            "username=alice",
            "password=nope",
        ],
        "",
    );
    assert_eq!(code(&o), 2);
    assert!(
        err(&o).contains("invalid username or password"),
        "{}",
        err(&o)
    );

    ok(root(&["auth", "enable", "approle"]));
    ok(root(&[
        "write",
        "auth/approle/role/my-app",
        "secret_id_ttl=24h",
        "token_ttl=1h",
        "token_max_ttl=24h",
        "policies=default",
    ]));
    let role_id = ok(root(&[
        "read",
        "-field=role_id",
        "auth/approle/role/my-app/role-id",
    ]));
    let s = ok(root(&["write", "-f", "auth/approle/role/my-app/secret-id"]));
    let secret_id = row(&s, "secret_id").expect("secret_id row").to_string();
    assert!(row(&s, "secret_id_accessor").is_some(), "{s}");
    let s = ok(root(&[
        "write",
        "auth/approle/login",
        &format!("role_id={}", role_id.trim()),
        &format!("secret_id={secret_id}"),
    ]));
    assert!(
        row(&s, "token").is_some_and(|t| t.starts_with("hvs.")),
        "{s}"
    );
    assert_eq!(row(&s, "token_policies"), Some("[\"default\"]"));

    // A wrapped SecretID unwraps once.
    let s = ok(root(&[
        "write",
        "-wrap-ttl=60s",
        "-f",
        "auth/approle/role/my-app/secret-id",
    ]));
    let wrapping = row(&s, "wrapping_token:")
        .expect("wrapping token")
        .to_string();
    assert_eq!(row(&s, "wrapping_token_ttl:"), Some("1m"));
    assert_eq!(
        row(&s, "wrapping_token_creation_path:"),
        Some("auth/approle/role/my-app/secret-id")
    );
    let s = ok(run(a, h, None, &["unwrap", &wrapping], ""));
    assert!(row(&s, "secret_id").is_some(), "{s}");
    let o = root(&["unwrap", &wrapping]);
    assert_eq!(code(&o), 2);
    assert!(
        err(&o).contains("wrapping token is not valid"),
        "{}",
        err(&o)
    );

    let s = ok(root(&["auth", "list"]));
    for p in ["approle/", "token/", "userpass/"] {
        assert!(s.lines().any(|l| l.starts_with(p)), "{p}: {s}");
    }
    assert_eq!(
        ok(root(&["auth", "disable", "userpass"])),
        "Success! Disabled the auth method (if it existed) at: userpass/\n"
    );
    // Alice's token went with the method.
    let o = run(a, h, None, &["token", "lookup"], "");
    assert_eq!(code(&o), 2);
    let o = root(&["auth", "enable", "nosuchmethod"]);
    assert_eq!(code(&o), 2);
}

/// The database engine and leases through the CLI, against the machine's
/// PostgreSQL (trust auth; the password flows are in tests/tests/database.rs).
#[test]
fn database_and_lease_commands() {
    let srv = DevServer::start();
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let a = srv.addr.as_str();
    let root = |args: &[&str]| run(a, h, Some("root"), args, "");
    let pg = std::env::var("BULWARK_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = pg.replacen("postgres@", "{{username}}@", 1);

    assert_eq!(
        ok(root(&["secrets", "enable", "database"])),
        "Success! Enabled the database secrets engine at: database/\n"
    );
    ok(root(&[
        "write",
        "database/config/pg",
        "plugin_name=postgresql-database-plugin",
        &format!("connection_url={url}"),
        "username=postgres",
        "allowed_roles=ro",
    ]));
    ok(root(&[
        "write",
        "database/roles/ro",
        "db_name=pg",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
        "default_ttl=1h",
        "max_ttl=24h",
    ]));
    let s = ok(root(&["read", "database/creds/ro"]));
    let lease = row(&s, "lease_id").expect("lease_id").to_string();
    assert!(lease.starts_with("database/creds/ro/"), "{s}");
    assert_eq!(row(&s, "lease_duration"), Some("1h"));
    assert!(
        row(&s, "username").is_some_and(|u| u.starts_with("v-root-ro-")),
        "{s}"
    );

    let s = ok(root(&["lease", "lookup", &lease]));
    assert_eq!(row(&s, "id"), Some(lease.as_str()), "{s}");
    let s = ok(root(&["lease", "renew", "-increment=2h", &lease]));
    assert_eq!(row(&s, "lease_duration"), Some("2h"), "{s}");
    assert_eq!(
        ok(root(&["lease", "revoke", "-sync", &lease])),
        format!("Success! Revoked lease: {lease}\n")
    );
    let o = root(&["lease", "lookup", &lease]);
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("invalid lease"), "{}", err(&o));
    assert_eq!(
        ok(root(&["lease", "revoke", "-prefix", "database/creds/ro"])),
        "Success! Revoked any leases with prefix: database/creds/ro\n"
    );
}

#[test]
fn unreachable_server() {
    let home = tempfile::tempdir().expect("tempdir");
    // Bind then drop a listener to get a port that is (very likely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let o = run(
        &addr,
        home.path(),
        Some("root"),
        &["kv", "get", "secret/x"],
        "",
    );
    assert_eq!(code(&o), 2);
    let e = err(&o);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.starts_with("Error"), "{e}");
    assert!(out(&o).is_empty());
}

/// `operator rotate|key-status|rekey|generate-root` against a dev server
/// (one unseal key, threshold 1).
#[test]
fn key_management_commands() {
    let srv = DevServer::start();
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let a = srv.addr.as_str();
    let root = |args: &[&str]| run(a, h, Some("root"), args, "");
    let anon = |args: &[&str], stdin: &str| run(a, h, None, args, stdin);

    // key-status and rotate (Vault's column output, no header).
    let s = ok(root(&["operator", "key-status"]));
    assert_eq!(row(&s, "Key Term"), Some("1"), "{s}");
    assert!(
        row(&s, "Install Time").is_some_and(|t| t.ends_with(" UTC") && t.len() == 19),
        "{s}"
    );
    assert_eq!(row(&s, "Encryption Count"), Some("0"), "{s}");
    ok(root(&["kv", "put", "secret/before", "v=1"]));
    let s = ok(root(&["operator", "rotate"]));
    assert!(s.starts_with("Success! Rotated key\n\nKey Term "), "{s}");
    assert_eq!(row(&s, "Key Term"), Some("2"), "{s}");
    let j: serde_json::Value =
        serde_json::from_str(&ok(root(&["operator", "key-status", "-format=json"]))).expect("json");
    assert_eq!(j["term"], 2);
    assert!(j["install_time"].as_str().is_some_and(|t| t.ends_with('Z')));
    ok(root(&["kv", "put", "secret/after", "v=2"]));
    assert_eq!(ok(root(&["kv", "get", "-field=v", "secret/before"])), "1\n");
    assert_eq!(ok(root(&["kv", "get", "-field=v", "secret/after"])), "2\n");
    let o = anon(&["operator", "rotate"], "");
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("Code: 403"), "{}", err(&o));

    // rekey: status, init, cancel, init again, provide the (only) key.
    let s = ok(anon(&["operator", "rekey", "-status"], ""));
    assert!(s.starts_with("Key "), "{s}");
    assert_eq!(row(&s, "Started"), Some("false"));
    let o = anon(&["operator", "rekey", &srv.unseal_key], "");
    assert_eq!(code(&o), 1);
    assert!(err(&o).contains("No rekey is in progress"), "{}", err(&o));
    let o = anon(
        &[
            "operator",
            "rekey",
            "-init",
            "-key-shares=3",
            "-key-threshold=2",
        ],
        "",
    );
    let s = ok(o);
    assert_eq!(row(&s, "Started"), Some("true"), "{s}");
    assert_eq!(row(&s, "Rekey Progress"), Some("0/1"), "{s}");
    assert_eq!(row(&s, "New Shares"), Some("3"), "{s}");
    assert_eq!(row(&s, "New Threshold"), Some("2"), "{s}");
    assert_eq!(row(&s, "Verification Required"), Some("false"), "{s}");
    assert_eq!(
        ok(anon(&["operator", "rekey", "-cancel"], "")),
        "Success! Canceled rekeying (if it was started)\n"
    );
    assert_eq!(
        row(&ok(anon(&["operator", "rekey", "-status"], "")), "Started"),
        Some("false")
    );
    let o = anon(&["operator", "rekey", "-init", "-pgp-keys=a.asc"], "");
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("not supported"), "{}", err(&o));
    let j: serde_json::Value = serde_json::from_str(&ok(anon(
        &[
            "operator",
            "rekey",
            "-init",
            "-key-shares=3",
            "-key-threshold=2",
            "-format=json",
        ],
        "",
    )))
    .expect("json");
    let nonce = j["nonce"].as_str().expect("nonce").to_string();
    assert_eq!((j["n"].clone(), j["t"].clone()), (3.into(), 2.into()));
    let o = anon(&["operator", "rekey", "-nonce=wrong", &srv.unseal_key], "");
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("incorrect nonce"), "{}", err(&o));
    // No key argument: read from the prompt (stdin here).
    let s = ok(anon(
        &["operator", "rekey", &format!("-nonce={nonce}")],
        &format!("{}\n", srv.unseal_key),
    ));
    let new: Vec<String> = s
        .lines()
        .filter_map(|l| l.strip_prefix("Key ").and_then(|r| r.split_once(": ")))
        .map(|(_, k)| k.to_string())
        .collect();
    assert_eq!(new.len(), 3, "{s}");
    assert!(s.contains(&format!("Operation nonce: {nonce}")), "{s}");
    assert!(
        s.contains("Vault rekeyed with 3 key shares and a key threshold of 2."),
        "{s}"
    );

    // The old key no longer unseals; two new ones do.
    ok(root(&["operator", "seal"]));
    let o = anon(&["operator", "unseal", &srv.unseal_key], "");
    assert_eq!(code(&o), 2);
    let s = ok(anon(&["operator", "unseal", &new[0]], ""));
    assert_eq!(row(&s, "Unseal Progress"), Some("1/2"), "{s}");
    let s = ok(anon(&["operator", "unseal", "-"], &new[2]));
    assert_eq!(row(&s, "Sealed"), Some("false"), "{s}");
    assert_eq!(ok(root(&["kv", "get", "-field=v", "secret/before"])), "1\n");

    // generate-root: init (OTP), two keys (argument, then stdin), decode.
    let s = ok(anon(&["operator", "generate-root", "-status"], ""));
    assert_eq!(row(&s, "Started"), Some("false"), "{s}");
    assert_eq!(row(&s, "Progress"), Some("0/2"), "{s}");
    assert_eq!(row(&s, "OTP Length"), Some("28"), "{s}");
    let o = anon(&["operator", "generate-root", &new[0]], "");
    assert_eq!(code(&o), 1);
    assert!(
        err(&o).contains("No root generation is in progress"),
        "{}",
        err(&o)
    );
    let o = anon(&["operator", "generate-root", "-init"], "");
    assert!(
        err(&o).contains("A One-Time-Password has been generated"),
        "{}",
        err(&o)
    );
    let s = ok(o);
    let otp = row(&s, "OTP").expect("OTP row").to_string();
    let gnonce = row(&s, "Nonce").expect("Nonce row").to_string();
    assert_eq!(otp.len(), 28);
    assert_eq!(row(&s, "Started"), Some("true"));
    let s = ok(anon(
        &[
            "operator",
            "generate-root",
            &format!("-nonce={gnonce}"),
            &new[1],
        ],
        "",
    ));
    assert_eq!(row(&s, "Progress"), Some("1/2"), "{s}");
    assert_eq!(row(&s, "Complete"), Some("false"), "{s}");
    let s = ok(anon(&["operator", "generate-root", "-"], &new[2]));
    assert_eq!(row(&s, "Complete"), Some("true"), "{s}");
    let encoded = row(&s, "Encoded Token").expect("encoded token").to_string();
    let token = ok(anon(
        &[
            "operator",
            "generate-root",
            &format!("-decode={encoded}"),
            &format!("-otp={otp}"),
        ],
        "",
    ));
    let token = token.trim().to_string();
    assert!(token.starts_with("hvs.") && token.len() == 28, "{token}");
    let j: serde_json::Value = serde_json::from_str(&ok(anon(
        &[
            "operator",
            "generate-root",
            "-format=json",
            &format!("-decode={encoded}"),
            &format!("-otp={otp}"),
        ],
        "",
    )))
    .expect("json");
    assert_eq!(j["token"], token.as_str());
    let s = ok(run(a, h, Some(&token), &["token", "lookup"], ""));
    assert_eq!(row(&s, "policies"), Some("[root]"), "{s}");
    let o = anon(
        &["operator", "generate-root", "-decode=AAAA", "-otp=short"],
        "",
    );
    assert_eq!(code(&o), 1);
    // -generate-otp, cancel, pgp refused.
    let g = ok(anon(&["operator", "generate-root", "-generate-otp"], ""));
    assert_eq!(g.trim().len(), 28, "{g}");
    ok(anon(
        &[
            "operator",
            "generate-root",
            "-init",
            &format!("-otp={}", g.trim()),
        ],
        "",
    ));
    assert_eq!(
        ok(anon(&["operator", "generate-root", "-cancel"], "")),
        "Success! Root token generation canceled (if it was started)\n"
    );
    assert_eq!(
        row(
            &ok(anon(&["operator", "generate-root", "-status"], "")),
            "Started"
        ),
        Some("false")
    );
    let o = anon(
        &["operator", "generate-root", "-init", "-pgp-key=key.asc"],
        "",
    );
    assert_eq!(code(&o), 2);
    assert!(err(&o).contains("not supported"), "{}", err(&o));
}

/// A server from a configuration file with `seal "static"` (auto-unseal):
/// certificates and a raw 32-byte key file in `dir`, SQLite, plain HTTP on
/// an ephemeral port.
struct AutoUnsealServer {
    child: Child,
    addr: String,
}

impl AutoUnsealServer {
    fn start(dir: &Path) -> AutoUnsealServer {
        let certs = dir.join("certs");
        let status = Command::new(BIN)
            .args(["certs", "-dir", certs.to_str().expect("utf-8 path")])
            .stdout(Stdio::null())
            .status()
            .expect("run bulwark certs");
        assert!(status.success(), "bulwark certs failed");
        let key = dir.join("seal.key");
        std::fs::write(&key, [0xa7u8; 32]).expect("write key");
        let config = dir.join("bulwark.hcl");
        std::fs::write(
            &config,
            format!(
                "storage \"sqlite\" {{ path = \"{}\" }}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}}\n\
                 cluster {{\n  cert_dir = \"{}\"\n}}\n\
                 seal \"static\" {{\n  current_key_id = \"cli-test\"\n  current_key = \"file://{}\"\n}}\n",
                dir.join("bulwark.db").display(),
                certs.display(),
                key.display()
            ),
        )
        .expect("write config");
        let mut child = Command::new(BIN)
            .args(["server", "-config", config.to_str().expect("utf-8 path")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = String::new();
        for line in lines.by_ref() {
            let line = line.expect("read server stdout");
            if let Some(a) = line.trim().strip_prefix("Api Address: ") {
                addr = a.to_string();
            }
            if line.contains("Bulwark server started") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        assert!(addr.starts_with("http://"), "no Api Address line");
        AutoUnsealServer { child, addr }
    }
}

impl Drop for AutoUnsealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `status`, `operator init` and `operator rekey -target=recovery` against
/// an auto-unsealed server: recovery keys, as Vault's CLI shows them.
#[test]
fn auto_unseal_init_and_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = AutoUnsealServer::start(dir.path());
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let anon = |args: &[&str]| run(&srv.addr, h, None, args, "");

    let o = anon(&["status"]);
    assert_eq!(code(&o), 2, "sealed before init");
    let s = out(&o);
    assert_eq!(row(&s, "Seal Type"), Some("static"), "{s}");
    assert_eq!(row(&s, "Recovery Seal Type"), Some("shamir"), "{s}");
    assert_eq!(row(&s, "Initialized"), Some("false"), "{s}");

    // Unseal key flags are refused by the server under an auto seal.
    let o = anon(&["operator", "init", "-key-shares=3"]);
    assert_eq!(code(&o), 2);
    assert!(
        err(&o).contains("parameters secret_shares not applicable to seal type static"),
        "{}",
        err(&o)
    );

    let s = ok(anon(&[
        "operator",
        "init",
        "-recovery-shares=5",
        "-recovery-threshold=3",
    ]));
    // Vault's lines: `Recovery Key <i>: <base64>`.
    let line = |label: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(str::to_string)
    };
    for i in 1..=5 {
        let k = line(&format!("Recovery Key {i}: ")).unwrap_or_default();
        assert_eq!(k.len(), 44, "base64 of a 33-byte share: {s}");
    }
    assert!(!s.contains("Unseal Key"), "{s}");
    assert!(
        line("Initial Root Token: ").is_some_and(|t| t.starts_with("hvs.")),
        "{s}"
    );
    assert!(s.contains("Success! Vault is initialized"), "{s}");
    assert!(
        s.contains("Recovery key initialized with 5 key shares and a key threshold of 3."),
        "{s}"
    );

    // Already unsealed; the table names the recovery shares.
    let s = ok(anon(&["status"]));
    assert_eq!(row(&s, "Sealed"), Some("false"), "{s}");
    assert_eq!(row(&s, "Total Recovery Shares"), Some("5"), "{s}");
    assert_eq!(row(&s, "Threshold"), Some("3"), "{s}");
    assert!(row(&s, "Total Shares").is_none(), "{s}");

    // The recovery keys are rekeyed through sys/rekey-recovery-key.
    let s = ok(anon(&[
        "operator",
        "rekey",
        "-target=recovery",
        "-init",
        "-key-shares=3",
        "-key-threshold=2",
    ]));
    assert_eq!(row(&s, "New Shares"), Some("3"), "{s}");
    assert_eq!(row(&s, "Rekey Progress"), Some("0/3"), "{s}");
    ok(anon(&["operator", "rekey", "-target=recovery", "-cancel"]));
    let s = ok(anon(&["operator", "rekey", "-target=recovery", "-status"]));
    assert_eq!(row(&s, "Started"), Some("false"), "{s}");
}
