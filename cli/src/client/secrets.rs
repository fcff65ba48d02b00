//! `secrets enable|disable|list|tune|move`: the mount table (`sys/mounts`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::output::{self, Format};
use super::{CliError, Client, CmdResult};

/// `bulwark secrets …`
#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Enable a secrets engine.
    Enable(EnableArgs),
    /// Disable a secrets engine.
    Disable(PathArg),
    /// List enabled secrets engines.
    List(ListArgs),
    /// Tune a secrets engine's configuration.
    Tune(TuneArgs),
    /// Move a secrets engine to a new path.
    Move(MoveArgs),
}

/// Mount configuration flags shared by `enable` and `tune`.
#[derive(Args, Debug)]
pub struct MountConfig {
    /// Human-friendly description.
    #[arg(long)]
    pub(super) description: Option<String>,
    /// Default lease TTL.
    #[arg(long = "default-lease-ttl")]
    default_lease_ttl: Option<String>,
    /// Maximum lease TTL.
    #[arg(long = "max-lease-ttl")]
    max_lease_ttl: Option<String>,
    /// Engine version (kv: 1 or 2).
    #[arg(long)]
    version: Option<u32>,
    /// Engine options `k=v` (repeatable).
    #[arg(long)]
    options: Vec<String>,
    /// Mount visibility (`unauth` or `hidden`).
    #[arg(long = "listing-visibility")]
    listing_visibility: Option<String>,
}

/// `secrets enable` arguments.
#[derive(Args, Debug)]
pub struct EnableArgs {
    /// Mount path (defaults to the type).
    #[arg(long)]
    path: Option<String>,
    /// Mark the mount local-only.
    #[arg(long)]
    local: bool,
    /// Enable seal wrapping.
    #[arg(long = "seal-wrap")]
    seal_wrap: bool,
    #[command(flatten)]
    config: MountConfig,
    /// Engine type.
    engine_type: String,
}

/// A single mount path.
#[derive(Args, Debug)]
pub struct PathArg {
    /// Mount path.
    path: String,
}

/// `secrets list` arguments.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print more columns.
    #[arg(long)]
    detailed: bool,
}

/// `secrets tune` arguments.
#[derive(Args, Debug)]
pub struct TuneArgs {
    #[command(flatten)]
    config: MountConfig,
    /// Mount path.
    path: String,
}

/// `secrets move` arguments.
#[derive(Args, Debug)]
pub struct MoveArgs {
    /// Current path.
    from: String,
    /// New path.
    to: String,
}

/// Normalizes a mount path to end with exactly one `/`.
pub fn ensure_slash(p: &str) -> String {
    format!("{}/", p.trim_matches('/'))
}

/// `config` and `options` objects of a mount request.
pub(super) type MountBody = (Map<String, Value>, Map<String, Value>);

pub(super) fn config_body(c: &MountConfig) -> Result<MountBody, CliError> {
    let mut cfg = Map::new();
    if let Some(t) = &c.default_lease_ttl {
        cfg.insert("default_lease_ttl".into(), json!(t));
    }
    if let Some(t) = &c.max_lease_ttl {
        cfg.insert("max_lease_ttl".into(), json!(t));
    }
    if let Some(v) = &c.listing_visibility {
        cfg.insert("listing_visibility".into(), json!(v));
    }
    let mut opts = super::parse_kv_args(&c.options)?;
    if let Some(v) = c.version {
        opts.insert("version".into(), json!(v.to_string()));
    }
    Ok((cfg, opts))
}

/// Dispatches `secrets` subcommands.
pub async fn run(c: &Client, cmd: SecretsCommand) -> CmdResult {
    match cmd {
        SecretsCommand::Enable(a) => enable(c, a).await,
        SecretsCommand::Disable(a) => {
            let p = ensure_slash(&a.path);
            c.call(
                &format!("disabling secrets engine at {p}"),
                Method::DELETE,
                &format!("sys/mounts/{p}"),
                None,
            )
            .await?;
            println!("Success! Disabled the secrets engine (if it existed) at: {p}");
            Ok(0)
        }
        SecretsCommand::List(a) => list(c, a).await,
        SecretsCommand::Tune(a) => tune(c, a).await,
        SecretsCommand::Move(a) => move_mount(c, a).await,
    }
}

async fn enable(c: &Client, a: EnableArgs) -> CmdResult {
    let (cfg, mut opts) = config_body(&a.config)?;
    let mut ty = a.engine_type.clone();
    // `kv-v2` is `kv` with version 2, as Vault stores it.
    if ty == "kv-v2" {
        ty = "kv".into();
        opts.insert("version".into(), json!("2"));
    } else if ty == "kv-v1" {
        ty = "kv".into();
        opts.insert("version".into(), json!("1"));
    }
    let path = ensure_slash(a.path.as_deref().unwrap_or(&a.engine_type));
    let mut body = Map::new();
    body.insert("type".into(), json!(ty));
    if let Some(d) = &a.config.description {
        body.insert("description".into(), json!(d));
    }
    if !cfg.is_empty() {
        body.insert("config".into(), Value::Object(cfg));
    }
    if !opts.is_empty() {
        body.insert("options".into(), Value::Object(opts));
    }
    if a.local {
        body.insert("local".into(), json!(true));
    }
    if a.seal_wrap {
        body.insert("seal_wrap".into(), json!(true));
    }
    c.call(
        "enabling",
        Method::POST,
        &format!("sys/mounts/{path}"),
        Some(&Value::Object(body)),
    )
    .await?;
    let what = match a.engine_type.as_str() {
        "plugin" => "plugin".to_string(),
        t => format!("{t} secrets engine"),
    };
    println!("Success! Enabled the {what} at: {path}");
    Ok(0)
}

fn ttl_cell(v: Option<&Value>) -> String {
    match v.and_then(output::as_secs) {
        None | Some(0) => "system".into(),
        Some(n) => output::human_duration(n),
    }
}

/// Reads a mount table (`sys/mounts` or `sys/auth`). Prints it and returns
/// `None` for structured output formats; otherwise returns it, sorted paths
/// first, for the caller's table.
pub(super) async fn mount_table(
    c: &Client,
    path: &str,
    what: &str,
) -> Result<Option<(Vec<String>, Map<String, Value>)>, CliError> {
    let r = c
        .call(&format!("listing {what}"), Method::GET, path, None)
        .await?;
    let body = r.body.unwrap_or(Value::Null);
    let Some(Value::Object(mounts)) = body.get("data").cloned() else {
        return Err(CliError::Exit(format!("Error listing {what}: no data"), 2));
    };
    if c.cfg.format != Format::Table {
        output::print_structured(c.cfg.format, &mounts);
        return Ok(None);
    }
    let mut paths: Vec<String> = mounts.keys().cloned().collect();
    paths.sort();
    Ok(Some((paths, mounts)))
}

/// One cell of a mount table: the value as Go prints it, `n/a` when empty.
pub(super) fn cell(m: &Value, k: &str) -> String {
    let v = m.get(k).map(output::go_fmt).unwrap_or_default();
    if v.is_empty() || v == "<nil>" {
        "n/a".to_string()
    } else {
        v
    }
}

async fn list(c: &Client, a: ListArgs) -> CmdResult {
    let Some((paths, mounts)) = mount_table(c, "sys/mounts", "secrets engines").await? else {
        return Ok(0);
    };
    let s = cell;
    let rows: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            let m = &mounts[p];
            if a.detailed {
                let cfg = m.get("config").cloned().unwrap_or(Value::Null);
                let local = m.get("local").and_then(Value::as_bool).unwrap_or(false);
                vec![
                    p.to_string(),
                    s(m, "type"),
                    s(m, "accessor"),
                    ttl_cell(cfg.get("default_lease_ttl")),
                    ttl_cell(cfg.get("max_lease_ttl")),
                    cfg.get("force_no_cache")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    if local { "local" } else { "replicated" }.to_string(),
                    m.get("seal_wrap")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    m.get("external_entropy_access")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    m.get("options")
                        .filter(|o| !o.is_null())
                        .map(output::go_fmt)
                        .unwrap_or_else(|| "map[]".into()),
                    s(m, "description"),
                    s(m, "uuid"),
                ]
            } else {
                vec![
                    p.to_string(),
                    s(m, "type"),
                    s(m, "accessor"),
                    s(m, "description"),
                ]
            }
        })
        .collect();
    let headers: &[&str] = if a.detailed {
        &[
            "Path",
            "Plugin",
            "Accessor",
            "Default TTL",
            "Max TTL",
            "Force No Cache",
            "Replication",
            "Seal Wrap",
            "External Entropy Access",
            "Options",
            "Description",
            "UUID",
        ]
    } else {
        &["Path", "Type", "Accessor", "Description"]
    };
    print!("{}", output::table(headers, rows));
    Ok(0)
}

async fn tune(c: &Client, a: TuneArgs) -> CmdResult {
    let (cfg, opts) = config_body(&a.config)?;
    let mut body = cfg;
    if let Some(d) = &a.config.description {
        body.insert("description".into(), json!(d));
    }
    if !opts.is_empty() {
        body.insert("options".into(), Value::Object(opts));
    }
    let p = ensure_slash(&a.path);
    c.call(
        "tuning secrets engine",
        Method::POST,
        &format!("sys/mounts/{p}tune"),
        Some(&Value::Object(body)),
    )
    .await?;
    println!("Success! Tuned the secrets engine at: {p}");
    Ok(0)
}

async fn move_mount(c: &Client, a: MoveArgs) -> CmdResult {
    let from = ensure_slash(&a.from);
    let to = ensure_slash(&a.to);
    let body = json!({"from": from, "to": to});
    let r = c
        .call(
            "moving secrets engine",
            Method::POST,
            "sys/remount",
            Some(&body),
        )
        .await?;
    let id = r
        .body
        .as_ref()
        .and_then(|b| {
            b.get("migration_id")
                .or_else(|| b.pointer("/data/migration_id"))
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(id) = id else {
        println!("Success! Finished moving secrets engine {from} to {to}");
        return Ok(0);
    };
    // Wait for the migration to finish, as `vault secrets move` does.
    for _ in 0..50 {
        let st = c
            .send(
                "",
                Method::GET,
                &format!("sys/remount/status/{id}"),
                &[],
                None,
            )
            .await?;
        let status = st
            .body
            .as_ref()
            .and_then(|b| b.pointer("/data/migration_info/status"))
            .and_then(Value::as_str)
            .unwrap_or("success")
            .to_string();
        match status.as_str() {
            "success" => break,
            "failure" => {
                return Err(CliError::Exit(
                    format!("Failure! Error encountered moving secrets engine {from} to {to}, with migration ID {id}"),
                    2,
                ))
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    println!("Success! Finished moving secrets engine {from} to {to}, with migration ID {id}");
    Ok(0)
}
