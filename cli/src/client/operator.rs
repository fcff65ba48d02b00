//! `status` and `operator init|seal|unseal`.

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
}

/// `operator init` flags.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Number of key shares to split the root key into.
    #[arg(long = "key-shares", alias = "n", default_value_t = 5)]
    key_shares: u32,
    /// Number of shares required to reconstruct the root key.
    #[arg(long = "key-threshold", alias = "t", default_value_t = 3)]
    key_threshold: u32,
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
    let mut rows = vec![
        ("Seal Type".to_string(), s("type")),
        ("Initialized".to_string(), s("initialized")),
        ("Sealed".to_string(), s("sealed")),
        ("Total Shares".to_string(), s("n")),
        ("Threshold".to_string(), s("t")),
    ];
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
    let body = json!({"secret_shares": a.key_shares, "secret_threshold": a.key_threshold});
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
    let root = b.get("root_token").and_then(Value::as_str).unwrap_or("");
    if c.cfg.format != Format::Table {
        let out = json!({
            "unseal_keys_b64": keys_b64,
            "unseal_keys_hex": keys_hex,
            "unseal_shares": a.key_shares,
            "unseal_threshold": a.key_threshold,
            "recovery_keys_b64": [],
            "recovery_keys_hex": [],
            "recovery_keys_shares": 0,
            "recovery_keys_threshold": 0,
            "root_token": root,
        });
        output::print_structured(c.cfg.format, &out);
        return Ok(0);
    }
    for (i, k) in keys_b64.iter().enumerate() {
        println!("Unseal Key {}: {k}", i + 1);
    }
    println!();
    println!("Initial Root Token: {root}");
    println!();
    let (n, t) = (a.key_shares, a.key_threshold);
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

/// Reads a secret from the terminal. No echo suppression is available
/// without extra dependencies, so the prompt says so and a line is read.
pub fn prompt(label: &str) -> Result<String, CliError> {
    use std::io::Write;
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("Error reading from stdin: {e}")))?;
    Ok(line.trim().to_string())
}

async fn unseal(c: &Client, a: UnsealArgs) -> CmdResult {
    let body = if a.reset {
        json!({"reset": true})
    } else {
        let key = match a.key {
            Some(k) if k != "-" => k,
            _ => prompt("Unseal Key (input is read from stdin): ")?,
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
