//! `audit enable|disable|list`: audit devices (`sys/audit`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::output::{self, Format};
use super::secrets::ensure_slash;
use super::{parse_kv_args, Client, CmdResult};

/// `bulwark audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Enable an audit device.
    Enable(EnableArgs),
    /// Disable an audit device.
    Disable(PathArg),
    /// List enabled audit devices.
    List(ListArgs),
}

/// `audit enable [-path=P] TYPE [k=v…]`
#[derive(Args, Debug)]
pub struct EnableArgs {
    /// Device path (defaults to the type).
    #[arg(long)]
    path: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Local-only device.
    #[arg(long)]
    local: bool,
    /// Device type (file, socket, syslog).
    device_type: String,
    /// Device options `k=v`.
    options: Vec<String>,
}

/// A device path.
#[derive(Args, Debug)]
pub struct PathArg {
    /// Device path.
    path: String,
}

/// `audit list` flags.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print more columns.
    #[arg(long)]
    detailed: bool,
}

/// Dispatches `audit` subcommands.
pub async fn run(c: &Client, cmd: AuditCommand) -> CmdResult {
    match cmd {
        AuditCommand::Enable(a) => {
            let path = ensure_slash(a.path.as_deref().unwrap_or(&a.device_type));
            let mut body = Map::new();
            body.insert("type".into(), json!(a.device_type));
            if let Some(d) = &a.description {
                body.insert("description".into(), json!(d));
            }
            body.insert("options".into(), Value::Object(parse_kv_args(&a.options)?));
            if a.local {
                body.insert("local".into(), json!(true));
            }
            c.call(
                "enabling audit device",
                Method::PUT,
                &format!("sys/audit/{}", path.trim_end_matches('/')),
                Some(&Value::Object(body)),
            )
            .await?;
            println!(
                "Success! Enabled the {} audit device at: {path}",
                a.device_type
            );
            Ok(0)
        }
        AuditCommand::Disable(a) => {
            let path = ensure_slash(&a.path);
            c.call(
                "disabling audit device",
                Method::DELETE,
                &format!("sys/audit/{}", path.trim_end_matches('/')),
                None,
            )
            .await?;
            println!("Success! Disabled audit device (if it was enabled) at: {path}");
            Ok(0)
        }
        AuditCommand::List(a) => list(c, a).await,
    }
}

async fn list(c: &Client, a: ListArgs) -> CmdResult {
    let r = c
        .call("retrieving audit devices", Method::GET, "sys/audit", None)
        .await?;
    let body = r.body.unwrap_or(Value::Null);
    let devices = match body.get("data") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if c.cfg.format != Format::Table {
        output::print_structured(c.cfg.format, &devices);
        return Ok(0);
    }
    if devices.is_empty() {
        println!("No audit devices are enabled.");
        return Ok(2);
    }
    let mut paths: Vec<&String> = devices.keys().collect();
    paths.sort();
    let na = |s: String| if s.is_empty() { "n/a".to_string() } else { s };
    let rows = paths
        .iter()
        .map(|p| {
            let d = &devices[*p];
            let g = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut row = vec![p.to_string(), g("type"), na(g("description"))];
            if a.detailed {
                let local = d.get("local").and_then(Value::as_bool).unwrap_or(false);
                row.push(if local { "local" } else { "replicated" }.into());
                row.push(d.get("options").map(output::go_fmt).unwrap_or_default());
            }
            row
        })
        .collect();
    let headers: &[&str] = if a.detailed {
        &["Path", "Type", "Description", "Replication", "Options"]
    } else {
        &["Path", "Type", "Description"]
    };
    print!("{}", output::table(headers, rows));
    Ok(0)
}
