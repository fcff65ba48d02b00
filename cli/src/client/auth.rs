//! `auth enable|disable|list|tune`: the auth method table (`sys/auth`), and
//! `unwrap`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::generic::output_secret;
use super::output;
use super::secrets::{cell, config_body, ensure_slash, mount_table, MountConfig};
use super::{CliError, Client, CmdResult, Config};

/// `bulwark auth …`
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Enable an auth method.
    Enable(EnableArgs),
    /// Disable an auth method (revokes every token it issued).
    Disable(PathArg),
    /// List enabled auth methods.
    List(ListArgs),
    /// Tune an auth method's configuration.
    Tune(TuneArgs),
}

/// `auth enable` arguments.
#[derive(Args, Debug)]
pub struct EnableArgs {
    /// Mount path (defaults to the type).
    #[arg(long)]
    path: Option<String>,
    /// Mark the mount local-only.
    #[arg(long)]
    local: bool,
    /// Type of tokens issued: service, batch, default-service, default-batch.
    #[arg(long = "token-type")]
    token_type: Option<String>,
    #[command(flatten)]
    config: MountConfig,
    /// Auth method type (userpass, approle, cert).
    method_type: String,
}

/// A single mount path.
#[derive(Args, Debug)]
pub struct PathArg {
    /// Mount path.
    path: String,
}

/// `auth list` arguments.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print more columns.
    #[arg(long)]
    detailed: bool,
}

/// `auth tune` arguments.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Type of tokens issued.
    #[arg(long = "token-type")]
    token_type: Option<String>,
    #[command(flatten)]
    config: MountConfig,
    /// Mount path.
    path: String,
}

/// `unwrap` arguments.
#[derive(Args, Debug)]
pub struct UnwrapArgs {
    /// The wrapping token (default: the client's own token).
    token: Option<String>,
}

/// Dispatches `auth` subcommands.
pub async fn run(c: &Client, cmd: AuthCommand) -> CmdResult {
    match cmd {
        AuthCommand::Enable(a) => enable(c, a).await,
        AuthCommand::Disable(a) => {
            let p = ensure_slash(&a.path);
            c.call(
                &format!("disabling auth method at {p}"),
                Method::DELETE,
                &format!("sys/auth/{p}"),
                None,
            )
            .await?;
            println!("Success! Disabled the auth method (if it existed) at: {p}");
            Ok(0)
        }
        AuthCommand::List(a) => list(c, a).await,
        AuthCommand::Tune(a) => {
            let (mut body, _) = config_body(&a.config)?;
            if let Some(d) = &a.config.description {
                body.insert("description".into(), json!(d));
            }
            if let Some(t) = &a.token_type {
                body.insert("token_type".into(), json!(t));
            }
            let p = ensure_slash(&a.path);
            c.call(
                "tuning auth method",
                Method::POST,
                &format!("sys/auth/{p}tune"),
                Some(&Value::Object(body)),
            )
            .await?;
            println!("Success! Tuned the auth method at: {p}");
            Ok(0)
        }
    }
}

async fn enable(c: &Client, a: EnableArgs) -> CmdResult {
    let (mut cfg, _) = config_body(&a.config)?;
    if let Some(t) = &a.token_type {
        cfg.insert("token_type".into(), json!(t));
    }
    let path = ensure_slash(a.path.as_deref().unwrap_or(&a.method_type));
    let mut body = Map::new();
    body.insert("type".into(), json!(a.method_type));
    if let Some(d) = &a.config.description {
        body.insert("description".into(), json!(d));
    }
    if !cfg.is_empty() {
        body.insert("config".into(), Value::Object(cfg));
    }
    if a.local {
        body.insert("local".into(), json!(true));
    }
    c.call(
        "enabling",
        Method::POST,
        &format!("sys/auth/{path}"),
        Some(&Value::Object(body)),
    )
    .await?;
    println!("Success! Enabled {} auth method at: {path}", a.method_type);
    Ok(0)
}

async fn list(c: &Client, a: ListArgs) -> CmdResult {
    let Some((paths, mounts)) = mount_table(c, "sys/auth", "enabled auth methods").await? else {
        return Ok(0);
    };
    let s = cell;
    let rows: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            let m = &mounts[p];
            let mut row = vec![
                p.to_string(),
                s(m, "type"),
                s(m, "accessor"),
                s(m, "description"),
            ];
            if a.detailed {
                let cfg = m.get("config").cloned().unwrap_or(Value::Null);
                row.push(s(&cfg, "token_type"));
                row.push(
                    if m.get("local").and_then(Value::as_bool).unwrap_or(false) {
                        "local"
                    } else {
                        "replicated"
                    }
                    .to_string(),
                );
                row.push(s(m, "uuid"));
            }
            row
        })
        .collect();
    let headers: &[&str] = if a.detailed {
        &[
            "Path",
            "Type",
            "Accessor",
            "Description",
            "Token Type",
            "Replication",
            "UUID",
        ]
    } else {
        &["Path", "Type", "Accessor", "Description"]
    };
    print!("{}", output::table(headers, rows));
    Ok(0)
}

/// `unwrap [token]`: as the Vault client does it, the wrapping token is sent
/// as the request's token when the client has none of its own, else in the
/// body.
pub async fn unwrap(c: &Client, a: UnwrapArgs) -> CmdResult {
    let r = match a.token {
        Some(t) if c.cfg.token.is_some() => {
            c.call(
                "unwrapping",
                Method::PUT,
                "sys/wrapping/unwrap",
                Some(&json!({ "token": t })),
            )
            .await?
        }
        other => {
            let token = other.or_else(|| c.cfg.token.clone()).ok_or_else(|| {
                CliError::Usage("No wrapping token given and no token configured".into())
            })?;
            let tc = Client::new(Config {
                token: Some(token),
                ..c.cfg.clone()
            })?;
            tc.call("unwrapping", Method::PUT, "sys/wrapping/unwrap", None)
                .await?
        }
    };
    let body = r.body.unwrap_or(Value::Null);
    output_secret(c, &body, None)
}
