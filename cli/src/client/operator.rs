//! `status` and `operator init|seal|unseal|rotate|key-status|rekey|generate-root`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::output::{self, Format};
use super::{CliError, Client, CmdResult};

/// `bulwark operator …`
#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Initialize a server: generate the unseal keys and the root token.
    Init(InitArgs),
    /// Seal the server.
    Seal,
    /// Provide an unseal key share.
    Unseal(UnsealArgs),
    /// Rotate the underlying encryption key (a new keyring term).
    Rotate,
    /// Print information about the active encryption key.
    KeyStatus,
    /// Generate new unseal keys from a quorum of the current ones.
    Rekey(RekeyArgs),
    /// Generate a new root token from a quorum of unseal keys.
    GenerateRoot(GenerateRootArgs),
}

/// `operator init` flags. As Vault's CLI: the defaults (5 shares, threshold
/// 3) go to the unseal keys, or to the recovery keys when the server has an
/// auto seal (`recovery_seal` in its seal status); flags of the other kind
/// are sent as given, and the server refuses them.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Number of key shares to split the root key into (default 5).
    #[arg(long = "key-shares", alias = "n")]
    key_shares: Option<u32>,
    /// Number of shares required to reconstruct the root key (default 3).
    #[arg(long = "key-threshold", alias = "t")]
    key_threshold: Option<u32>,
    /// Auto-unseal: number of shares to split the recovery key into (default 5).
    #[arg(long = "recovery-shares")]
    recovery_shares: Option<u32>,
    /// Auto-unseal: number of shares required to reconstruct the recovery key (default 3).
    #[arg(long = "recovery-threshold")]
    recovery_threshold: Option<u32>,
    /// Only print whether the server is initialized (exit 0 yes, 2 no).
    #[arg(long)]
    status: bool,
}

/// `operator unseal` arguments.
#[derive(Args, Debug)]
pub struct UnsealArgs {
    /// Discard previously entered key shares.
    #[arg(long)]
    reset: bool,
    /// The key share (prompted for when omitted).
    key: Option<String>,
}

/// `operator rekey` flags and argument.
#[derive(Args, Debug)]
pub struct RekeyArgs {
    /// Start a rekey (-key-shares, -key-threshold).
    #[arg(long)]
    init: bool,
    /// Discard the rekey in progress and its submitted keys.
    #[arg(long)]
    cancel: bool,
    /// Print the status of the rekey in progress.
    #[arg(long)]
    status: bool,
    /// Number of new key shares.
    #[arg(long = "key-shares", alias = "n", default_value_t = 5)]
    key_shares: u32,
    /// Number of new shares required to reconstruct the root key.
    #[arg(long = "key-threshold", alias = "t", default_value_t = 3)]
    key_threshold: u32,
    /// Nonce of the rekey (default: the one in progress).
    #[arg(long, default_value = "")]
    nonce: String,
    /// Not supported (PGP-encrypted shares); refused by the server.
    #[arg(long = "pgp-keys", value_delimiter = ',')]
    pgp_keys: Vec<String>,
    /// Not supported (needs PGP keys); refused by the server.
    #[arg(long)]
    backup: bool,
    /// Not supported (rekey verification); refused by the server.
    #[arg(long)]
    verify: bool,
    /// "barrier" (the root key and its unseal keys) or "recovery" (the
    /// recovery keys of an auto-unsealed server).
    #[arg(long, default_value = "barrier")]
    target: String,
    /// A current unseal key ("-" reads stdin; prompted for when omitted).
    key: Option<String>,
}

/// `operator generate-root` flags and argument.
#[derive(Args, Debug)]
pub struct GenerateRootArgs {
    /// Start a root token generation (prints the one-time password).
    #[arg(long)]
    init: bool,
    /// Discard the generation in progress and its submitted keys.
    #[arg(long)]
    cancel: bool,
    /// Print the status of the generation in progress.
    #[arg(long)]
    status: bool,
    /// Decode this encoded token with -otp and print the root token.
    #[arg(long)]
    decode: Option<String>,
    /// Print a one-time password suitable for -init -otp.
    #[arg(long = "generate-otp")]
    generate_otp: bool,
    /// One-time password, for -decode or -init.
    #[arg(long, default_value = "")]
    otp: String,
    /// Not supported (PGP-encrypted root token); refused by the server.
    #[arg(long = "pgp-key", default_value = "")]
    pgp_key: String,
    /// Nonce of the generation (default: the one in progress).
    #[arg(long, default_value = "")]
    nonce: String,
    /// Not supported (no DR replication).
    #[arg(long = "dr-token")]
    dr_token: bool,
    /// Not supported (no recovery mode).
    #[arg(long = "recovery-token")]
    recovery_token: bool,
    /// An unseal key ("-" reads stdin; prompted for when omitted).
    key: Option<String>,
}

/// Dispatches `operator` subcommands.
pub async fn run(c: &Client, cmd: OperatorCommand) -> CmdResult {
    match cmd {
        OperatorCommand::Init(a) => init(c, a).await,
        OperatorCommand::Seal => {
            c.call("sealing", Method::PUT, "sys/seal", None).await?;
            println!("Success! Vault is sealed.");
            Ok(0)
        }
        OperatorCommand::Unseal(a) => unseal(c, a).await,
        OperatorCommand::Rotate => rotate(c).await,
        OperatorCommand::KeyStatus => key_status(c).await,
        OperatorCommand::Rekey(a) => rekey(c, a).await,
        OperatorCommand::GenerateRoot(a) => generate_root(c, a).await,
    }
}

/// `status`: exit 0 unsealed, 2 sealed, 1 on error (Vault's convention).
pub async fn status(c: &Client) -> CmdResult {
    let st = c
        .call("checking seal status", Method::GET, "sys/seal-status", None)
        .await
        .map_err(|e| match e {
            CliError::Transport(m) => CliError::Exit(m, 1),
            other => CliError::Exit(other.render(), 1),
        })?;
    let mut st = st.body.unwrap_or(Value::Null);
    let sealed = st.get("sealed").and_then(Value::as_bool).unwrap_or(true);
    let ha = if sealed {
        false
    } else {
        c.send("", Method::GET, "sys/leader", &[], None)
            .await
            .ok()
            .and_then(|r| r.body)
            .and_then(|b| b.get("ha_enabled").and_then(Value::as_bool))
            .unwrap_or(false)
    };
    if let Value::Object(m) = &mut st {
        m.insert("ha_enabled".into(), Value::Bool(ha));
    }
    print_seal_status(c.cfg.format, &st);
    Ok(if sealed { 2 } else { 0 })
}

/// Prints a seal-status object as Vault's `status` table (or JSON/YAML).
fn print_seal_status(format: Format, st: &Value) {
    if format != Format::Table {
        output::print_structured(format, st);
        return;
    }
    let s = |k: &str| st.get(k).map(output::go_fmt).unwrap_or_default();
    let sealed = st.get("sealed").and_then(Value::as_bool).unwrap_or(true);
    let recovery = st
        .get("recovery_seal")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut rows = vec![("Seal Type".to_string(), s("type"))];
    if recovery {
        rows.push(("Recovery Seal Type".into(), s("recovery_seal_type")));
    }
    rows.extend([
        ("Initialized".to_string(), s("initialized")),
        ("Sealed".to_string(), s("sealed")),
        (
            if recovery {
                "Total Recovery Shares"
            } else {
                "Total Shares"
            }
            .to_string(),
            s("n"),
        ),
        ("Threshold".to_string(), s("t")),
    ]);
    if sealed {
        rows.push((
            "Unseal Progress".into(),
            format!("{}/{}", s("progress"), s("t")),
        ));
        let nonce = s("nonce");
        rows.push((
            "Unseal Nonce".into(),
            if nonce.is_empty() {
                "n/a".into()
            } else {
                nonce
            },
        ));
    }
    rows.push(("Version".into(), s("version")));
    rows.push(("Build Date".into(), s("build_date")));
    rows.push(("Storage Type".into(), s("storage_type")));
    if !sealed {
        rows.push(("Cluster Name".into(), s("cluster_name")));
        rows.push(("Cluster ID".into(), s("cluster_id")));
    }
    rows.push(("HA Enabled".into(), s("ha_enabled")));
    print!("{}", output::kv_table(rows));
}

async fn init(c: &Client, a: InitArgs) -> CmdResult {
    if a.status {
        let r = c
            .call("checking init status", Method::GET, "sys/init", None)
            .await?;
        let init = r
            .body
            .as_ref()
            .and_then(|b| b.get("initialized"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if init {
            println!("Vault is initialized");
            return Ok(0);
        }
        println!("Vault is not initialized");
        return Ok(2);
    }
    let st = c
        .call("checking seal status", Method::GET, "sys/seal-status", None)
        .await?;
    let auto = st
        .body
        .as_ref()
        .and_then(|b| b.get("recovery_seal"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (mut key_shares, mut key_threshold) =
        (a.key_shares.unwrap_or(0), a.key_threshold.unwrap_or(0));
    let (mut recovery_shares, mut recovery_threshold) = (
        a.recovery_shares.unwrap_or(0),
        a.recovery_threshold.unwrap_or(0),
    );
    if auto {
        recovery_shares = a.recovery_shares.unwrap_or(5);
        recovery_threshold = a.recovery_threshold.unwrap_or(3);
    } else {
        key_shares = a.key_shares.unwrap_or(5);
        key_threshold = a.key_threshold.unwrap_or(3);
    }
    let body = json!({
        "secret_shares": key_shares,
        "secret_threshold": key_threshold,
        "recovery_shares": recovery_shares,
        "recovery_threshold": recovery_threshold,
    });
    let r = c
        .call("initializing", Method::PUT, "sys/init", Some(&body))
        .await?;
    let b = r.body.unwrap_or(Value::Null);
    let list = |k: &str| -> Vec<String> {
        b.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let keys_b64 = list("keys_base64");
    let keys_hex = list("keys");
    let recovery_b64 = list("recovery_keys_base64");
    let recovery_hex = list("recovery_keys");
    let root = b.get("root_token").and_then(Value::as_str).unwrap_or("");
    if c.cfg.format != Format::Table {
        // Without unseal keys the root key is stored: one share (Vault).
        let (n, t) = if keys_hex.is_empty() {
            (1, 1)
        } else {
            (key_shares, key_threshold)
        };
        let out = json!({
            "unseal_keys_b64": keys_b64,
            "unseal_keys_hex": keys_hex,
            "unseal_shares": n,
            "unseal_threshold": t,
            "recovery_keys_b64": recovery_b64,
            "recovery_keys_hex": recovery_hex,
            "recovery_keys_shares": recovery_shares,
            "recovery_keys_threshold": recovery_threshold,
            "root_token": root,
        });
        output::print_structured(c.cfg.format, &out);
        return Ok(0);
    }
    for (i, k) in keys_b64.iter().enumerate() {
        println!("Unseal Key {}: {k}", i + 1);
    }
    for (i, k) in recovery_b64.iter().enumerate() {
        println!("Recovery Key {}: {k}", i + 1);
    }
    println!();
    println!("Initial Root Token: {root}");
    println!();
    if keys_b64.is_empty() {
        println!("Success! Vault is initialized");
        if !recovery_b64.is_empty() {
            println!();
            println!(
                "{}",
                wrap(&format!(
                    "Recovery key initialized with {recovery_shares} key shares and a key \
                     threshold of {recovery_threshold}. Please securely distribute the key \
                     shares printed above."
                ))
            );
        }
        return Ok(0);
    }
    let (n, t) = (key_shares, key_threshold);
    println!(
        "Vault initialized with {n} key shares and a key threshold of {t}. Please securely\n\
         distribute the key shares printed above. When the Vault is re-sealed,\n\
         restarted, or stopped, you must supply at least {t} of these keys to unseal it\n\
         before it can start servicing requests.\n\n\
         Vault does not store the generated root key. Without at least {t} keys to\n\
         reconstruct the root key, Vault will remain permanently sealed!\n\n\
         It is possible to generate new unseal keys, provided you have a quorum of\n\
         existing unseal keys shares. See \"vault operator rekey\" for more information."
    );
    Ok(0)
}

/// Reads a secret: one line from stdin, with the label on stderr. On a
/// terminal, echo is turned off while typing (through `stty`, restored
/// afterwards).
pub fn prompt(label: &str) -> Result<String, CliError> {
    use std::io::{IsTerminal, Write};
    use std::process::{Command, Stdio};
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        Command::new("stty")
            .arg(arg)
            .stdin(Stdio::inherit())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let hidden = std::io::stdin().is_terminal() && stty("-echo");
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = std::io::stdin().read_line(&mut line);
    if hidden {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| CliError::Usage(format!("Error reading from stdin: {e}")))?;
    Ok(line.trim().to_string())
}

async fn unseal(c: &Client, a: UnsealArgs) -> CmdResult {
    let body = if a.reset {
        json!({"reset": true})
    } else {
        let key = match a.key {
            Some(k) if k != "-" => k,
            _ => prompt("Unseal Key (will be hidden): ")?,
        };
        if key.is_empty() {
            return Err(CliError::Usage("Error unsealing: no key given".into()));
        }
        json!({ "key": key })
    };
    let r = c
        .call("unsealing", Method::PUT, "sys/unseal", Some(&body))
        .await?;
    let mut st = r.body.unwrap_or(Value::Null);
    if let Value::Object(m) = &mut st {
        m.entry("ha_enabled").or_insert(Value::Bool(false));
    }
    print_seal_status(c.cfg.format, &st);
    Ok(0)
}

/// Wraps text at 80 columns, as Vault's `wrapAtLength`.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 80 {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// Go's `time.RFC822` of an RFC 3339 UTC time (`02 Jan 06 15:04 UTC`), as
/// Vault's key-status table shows it; the input as-is if it does not parse.
fn rfc822(t: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parse = || -> Option<String> {
        let (date, time) = t.split_once('T')?;
        let mut d = date.split('-');
        let (y, m, day) = (d.next()?, d.next()?, d.next()?);
        let month = MONTHS.get(m.parse::<usize>().ok()?.checked_sub(1)?)?;
        let hm = time.get(..5)?;
        let year = y.get(y.len().checked_sub(2)?..)?;
        (t.ends_with('Z') && hm.as_bytes().get(2) == Some(&b':'))
            .then(|| format!("{day} {month} {year} {hm} UTC"))
    };
    parse().unwrap_or_else(|| t.to_string())
}

/// A JSON object printed with its keys in a fixed order (Vault prints Go
/// structs, in field order).
struct Ordered<'a>(&'a Value, &'a [&'a str]);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.1.len()))?;
        for k in self.1 {
            m.serialize_entry(k, field(self.0, k))?;
        }
        m.end()
    }
}

const REKEY_STATUS_KEYS: &[&str] = &[
    "nonce",
    "started",
    "t",
    "n",
    "progress",
    "required",
    "pgp_fingerprints",
    "backup",
    "verification_required",
];

const REKEY_UPDATE_KEYS: &[&str] = &[
    "nonce",
    "complete",
    "keys",
    "keys_base64",
    "pgp_fingerprints",
    "backup",
    "verification_required",
];

const GENERATE_ROOT_KEYS: &[&str] = &[
    "nonce",
    "started",
    "progress",
    "required",
    "complete",
    "encoded_token",
    "encoded_root_token",
    "pgp_fingerprint",
    "otp",
    "otp_length",
];

fn field<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or(&Value::Null)
}

fn text(v: &Value, k: &str) -> String {
    output::go_fmt(field(v, k))
}

/// Prints key-status data as Vault does (`columnOutput`, no header).
fn print_key_status(format: Format, st: &Value) {
    if format != Format::Table {
        let keys = ["term", "install_time", "encryptions"];
        output::print_structured(format, &Ordered(st, &keys));
        return;
    }
    let rows = vec![
        vec!["Key Term".to_string(), text(st, "term")],
        vec![
            "Install Time".to_string(),
            rfc822(field(st, "install_time").as_str().unwrap_or("")),
        ],
        vec!["Encryption Count".to_string(), text(st, "encryptions")],
    ];
    print!("{}", output::columns(&rows));
}

async fn read_key_status(c: &Client) -> Result<Value, CliError> {
    let r = c
        .call("reading key status", Method::GET, "sys/key-status", None)
        .await?;
    Ok(r.data().cloned().unwrap_or(Value::Null))
}

async fn rotate(c: &Client) -> CmdResult {
    c.call("rotating key", Method::PUT, "sys/rotate", None)
        .await?;
    let st = read_key_status(c).await?;
    if c.cfg.format == Format::Table {
        println!("Success! Rotated key");
        println!();
    }
    print_key_status(c.cfg.format, &st);
    Ok(0)
}

async fn key_status(c: &Client) -> CmdResult {
    let st = read_key_status(c).await?;
    print_key_status(c.cfg.format, &st);
    Ok(0)
}

/// A key share from the argument: as given, from stdin (`-`), or prompted
/// for (after showing the operation's nonce). Returns the key and the nonce
/// to send: the -nonce flag, else the operation's.
fn key_and_nonce(
    key: Option<&str>,
    flag_nonce: &str,
    current_nonce: &str,
    nonce_label: &str,
) -> Result<(zeroize::Zeroizing<String>, String), CliError> {
    let nonce = if flag_nonce.is_empty() {
        current_nonce.to_string()
    } else {
        flag_nonce.to_string()
    };
    let key = zeroize::Zeroizing::new(match key {
        Some("-") => super::read_stdin()?.trim().to_string(),
        Some(k) => k.trim().to_string(),
        None => {
            eprintln!("{nonce_label}: {current_nonce}");
            prompt("Unseal Key (will be hidden): ")?
        }
    });
    if key.is_empty() {
        return Err(CliError::Usage(
            "Error posting unseal key: no key given".into(),
        ));
    }
    if nonce.is_empty() {
        return Err(CliError::Usage(
            "Missing nonce value: specify it via the -nonce flag".into(),
        ));
    }
    Ok((key, nonce))
}

/// Prints a rekey status (Vault's `Key / Value` table, or the object).
fn print_rekey_status(format: Format, st: &Value) {
    if format != Format::Table {
        output::print_structured(format, &Ordered(st, REKEY_STATUS_KEYS));
        return;
    }
    let started = field(st, "started").as_bool().unwrap_or(false);
    let mut rows = vec![
        ("Nonce".to_string(), text(st, "nonce")),
        ("Started".to_string(), text(st, "started")),
    ];
    if started {
        rows.push((
            "Rekey Progress".into(),
            format!("{}/{}", text(st, "progress"), text(st, "required")),
        ));
        rows.push(("New Shares".into(), text(st, "n")));
        rows.push(("New Threshold".into(), text(st, "t")));
        rows.push((
            "Verification Required".into(),
            text(st, "verification_required"),
        ));
    }
    print!("{}", output::kv_table(rows));
}

async fn rekey(c: &Client, a: RekeyArgs) -> CmdResult {
    let recovery = match a.target.trim().to_ascii_lowercase().as_str() {
        "barrier" => false,
        "recovery" | "hsm" => true,
        other => return Err(CliError::Usage(format!("Unknown target: {other}"))),
    };
    let (init_path, update_path) = if recovery {
        (
            "sys/rekey-recovery-key/init",
            "sys/rekey-recovery-key/update",
        )
    } else {
        ("sys/rekey/init", "sys/rekey/update")
    };
    if a.cancel {
        c.call("canceling rekey", Method::DELETE, init_path, None)
            .await?;
        println!("Success! Canceled rekeying (if it was started)");
        return Ok(0);
    }
    if a.init {
        let body = json!({
            "secret_shares": a.key_shares,
            "secret_threshold": a.key_threshold,
            "pgp_keys": a.pgp_keys,
            "backup": a.backup,
            "require_verification": a.verify,
        });
        let r = c
            .call("initializing rekey", Method::PUT, init_path, Some(&body))
            .await?;
        if c.cfg.format == Format::Table {
            eprintln!(
                "{}\n",
                wrap(
                    "WARNING! The new unseal keys are shown once, when the rekey completes. \
                     If they are lost, there is no way to recover them."
                )
            );
        }
        print_rekey_status(c.cfg.format, &r.body.unwrap_or(Value::Null));
        return Ok(0);
    }
    let st = c
        .call("reading rekey status", Method::GET, init_path, None)
        .await?
        .body
        .unwrap_or(Value::Null);
    if a.status {
        print_rekey_status(c.cfg.format, &st);
        return Ok(0);
    }
    if !field(&st, "started").as_bool().unwrap_or(false) {
        return Err(CliError::Exit(
            wrap(
                "No rekey is in progress. Start a rekey process by running \
                 \"bulwark operator rekey -init\".",
            ),
            1,
        ));
    }
    let current = field(&st, "nonce").as_str().unwrap_or("").to_string();
    let (key, nonce) = key_and_nonce(
        a.key.as_deref(),
        &a.nonce,
        &current,
        "Rekey operation nonce",
    )?;
    let body = json!({ "key": key.as_str(), "nonce": nonce });
    let r = c
        .call("posting unseal key", Method::PUT, update_path, Some(&body))
        .await?;
    let resp = r.body.unwrap_or(Value::Null);
    if !field(&resp, "complete").as_bool().unwrap_or(false) {
        print_rekey_status(c.cfg.format, &resp);
        return Ok(0);
    }
    if c.cfg.format != Format::Table {
        output::print_structured(c.cfg.format, &Ordered(&resp, REKEY_UPDATE_KEYS));
        return Ok(0);
    }
    println!();
    let keys = field(&resp, "keys_base64")
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, k) in keys.iter().enumerate() {
        println!("Key {}: {}", i + 1, k.as_str().unwrap_or(""));
    }
    println!();
    println!("Operation nonce: {}", text(&resp, "nonce"));
    println!();
    let (n, t) = (text(&st, "n"), text(&st, "t"));
    let message = if recovery {
        format!(
            "Vault recovery keys rekeyed with {n} key shares and a key threshold of \
             {t}. Please securely distribute the key shares printed above."
        )
    } else if keys.is_empty() {
        // An auto seal: the new root key is stored, wrapped by the seal.
        "Vault rekeyed: a new root key is in force, stored wrapped by the auto seal; \
         there are no unseal keys to distribute."
            .to_string()
    } else {
        format!(
            "Vault rekeyed with {n} key shares and a key threshold of {t}. Please \
             securely distribute the key shares printed above. When Vault is \
             re-sealed, restarted, or stopped, you must supply at least {t} of \
             these keys to unseal it before it can start servicing requests."
        )
    };
    println!("{}", wrap(&message));
    Ok(0)
}

/// Prints a root generation status (Vault's column output, no header).
fn print_generate_root_status(format: Format, st: &Value) {
    if format != Format::Table {
        output::print_structured(format, &Ordered(st, GENERATE_ROOT_KEYS));
        return;
    }
    let nonempty = |k: &str| field(st, k).as_str().filter(|s| !s.is_empty());
    let mut rows = vec![
        vec!["Nonce".to_string(), text(st, "nonce")],
        vec!["Started".to_string(), text(st, "started")],
        vec![
            "Progress".to_string(),
            format!("{}/{}", text(st, "progress"), text(st, "required")),
        ],
        vec!["Complete".to_string(), text(st, "complete")],
    ];
    if let Some(f) = nonempty("pgp_fingerprint") {
        rows.push(vec!["PGP Fingerprint".into(), f.to_string()]);
    }
    if let Some(t) = nonempty("encoded_token") {
        rows.push(vec!["Encoded Token".into(), t.to_string()]);
    } else if let Some(t) = nonempty("encoded_root_token") {
        rows.push(vec!["Encoded Root Token".into(), t.to_string()]);
    }
    if let Some(otp) = nonempty("otp") {
        eprintln!(
            "{}",
            wrap(
                "A One-Time-Password has been generated for you and is shown in the OTP \
                 field. You will need this value to decode the resulting root token, so \
                 keep it safe."
            )
        );
        rows.push(vec!["OTP".into(), otp.to_string()]);
    }
    if field(st, "otp_length").as_u64().unwrap_or(0) != 0 {
        rows.push(vec!["OTP Length".into(), text(st, "otp_length")]);
    }
    print!("{}", output::columns(&rows));
}

/// The root token of `-decode`: base64 (unpadded, padding accepted) XORed
/// with the one-time password.
fn decode_root_token(encoded: &str, otp: &str) -> Result<zeroize::Zeroizing<String>, CliError> {
    use base64::Engine as _;
    let raw = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded.trim().trim_end_matches('='))
            .map_err(|e| CliError::Usage(format!("Error decoding base64'd token: {e}")))?,
    );
    if raw.len() != otp.len() {
        return Err(CliError::Usage(format!(
            "Error xoring token: length of byte slices is not equivalent: {} != {}",
            raw.len(),
            otp.len()
        )));
    }
    let plain: Vec<u8> = raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(plain)
        .map(zeroize::Zeroizing::new)
        .map_err(|_| CliError::Usage("Error xoring token: the result is not text".into()))
}

/// A random base62 string, for `-generate-otp`.
fn random_base62(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn generate_root(c: &Client, a: GenerateRootArgs) -> CmdResult {
    if a.dr_token || a.recovery_token {
        return Err(CliError::Exit(
            "Error: DR operation and recovery tokens are not supported by this server".into(),
            2,
        ));
    }
    const ATTEMPT: &str = "sys/generate-root/attempt";
    if a.generate_otp {
        let st = c
            .call("getting root generation status", Method::GET, ATTEMPT, None)
            .await?
            .body
            .unwrap_or(Value::Null);
        let len = field(&st, "otp_length").as_u64().unwrap_or(28) as usize;
        let otp = zeroize::Zeroizing::new(random_base62(len));
        if c.cfg.format == Format::Table {
            println!("{}", otp.as_str());
        } else {
            output::print_structured(
                c.cfg.format,
                &json!({"otp": otp.as_str(), "otp_length": len}),
            );
        }
        return Ok(0);
    }
    if let Some(encoded) = a.decode.as_deref() {
        if encoded.is_empty() {
            return Err(CliError::Usage(
                "Missing encoded value: use -decode=<string> to supply it".into(),
            ));
        }
        if a.otp.is_empty() {
            return Err(CliError::Usage("Missing otp: use -otp to supply it".into()));
        }
        let encoded = if encoded == "-" {
            super::read_stdin()?.trim().to_string()
        } else {
            encoded.to_string()
        };
        let token = decode_root_token(&encoded, &a.otp)?;
        if c.cfg.format == Format::Table {
            println!("{}", token.as_str());
        } else {
            output::print_structured(c.cfg.format, &json!({ "token": token.as_str() }));
        }
        return Ok(0);
    }
    if a.cancel {
        c.call(
            "canceling root token generation",
            Method::DELETE,
            ATTEMPT,
            None,
        )
        .await?;
        println!("Success! Root token generation canceled (if it was started)");
        return Ok(0);
    }
    if a.init {
        if !a.otp.is_empty() && !a.pgp_key.is_empty() {
            return Err(CliError::Usage(
                "Error initializing: cannot specify both -otp and -pgp-key".into(),
            ));
        }
        let mut body = serde_json::Map::new();
        if !a.otp.is_empty() {
            body.insert("otp".into(), Value::String(a.otp.clone()));
        }
        if !a.pgp_key.is_empty() {
            body.insert("pgp_key".into(), Value::String(a.pgp_key.clone()));
        }
        let r = c
            .call(
                "initializing root generation",
                Method::PUT,
                ATTEMPT,
                Some(&Value::Object(body)),
            )
            .await?;
        print_generate_root_status(c.cfg.format, &r.body.unwrap_or(Value::Null));
        return Ok(0);
    }
    let st = c
        .call("getting root generation status", Method::GET, ATTEMPT, None)
        .await?
        .body
        .unwrap_or(Value::Null);
    if a.status {
        print_generate_root_status(c.cfg.format, &st);
        return Ok(0);
    }
    if !field(&st, "started").as_bool().unwrap_or(false) {
        return Err(CliError::Exit(
            format!(
                "{}\n{}",
                wrap(
                    "No root generation is in progress. Start a root generation by \
                     running \"bulwark operator generate-root -init\"."
                ),
                wrap(&format!(
                    "If starting root generation using the OTP method and generating your \
                     own OTP, the length of the OTP string needs to be {} characters in length.",
                    text(&st, "otp_length")
                ))
            ),
            1,
        ));
    }
    let current = field(&st, "nonce").as_str().unwrap_or("").to_string();
    let (key, nonce) = key_and_nonce(a.key.as_deref(), &a.nonce, &current, "Operation nonce")?;
    let body = json!({ "key": key.as_str(), "nonce": nonce });
    let r = c
        .call(
            "posting unseal key",
            Method::PUT,
            "sys/generate-root/update",
            Some(&body),
        )
        .await?;
    print_generate_root_status(c.cfg.format, &r.body.unwrap_or(Value::Null));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_status_time_like_go_rfc822() {
        assert_eq!(rfc822("2017-01-01T12:30:45.123Z"), "01 Jan 17 12:30 UTC");
        assert_eq!(rfc822("2026-11-24T09:05:00Z"), "24 Nov 26 09:05 UTC");
        assert_eq!(rfc822("garbage"), "garbage");
        assert_eq!(rfc822("2026-13-01T00:00:00Z"), "2026-13-01T00:00:00Z");
    }

    #[test]
    fn decode_inverts_the_servers_encoding() {
        use base64::Engine as _;
        let token = "hvs.ABCDEFGHIJKLMNOPQRSTUVWX";
        let otp = random_base62(token.len());
        let mixed: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&mixed);
        assert_eq!(decode_root_token(&enc, &otp).unwrap().as_str(), token);
        let padded = base64::engine::general_purpose::STANDARD.encode(&mixed);
        assert_eq!(decode_root_token(&padded, &otp).unwrap().as_str(), token);
        assert!(decode_root_token(&enc, "short").is_err());
        assert!(decode_root_token("***", &otp).is_err());
    }

    #[test]
    fn wraps_at_eighty_columns() {
        let w = wrap(&"word ".repeat(40));
        assert!(w.lines().all(|l| l.len() <= 80));
        assert_eq!(w.split_whitespace().count(), 40);
    }
}
