//! `token create|lookup|renew|revoke|capabilities`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::generic::output_secret;
use super::output::{self, Format};
use super::{parse_kv_args, split_list, CliError, Client, CmdResult};

/// `bulwark token …`
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a new token.
    Create(CreateArgs),
    /// Display information about a token.
    Lookup(TokenArg),
    /// Renew a token's lease.
    Renew(RenewArgs),
    /// Revoke a token and its children.
    Revoke(RevokeArgs),
    /// Print the capabilities of a token on a path.
    Capabilities(CapArgs),
}

/// `token create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Policy to attach (repeatable, or comma-separated).
    #[arg(long = "policy")]
    policy: Vec<String>,
    /// Initial TTL.
    #[arg(long)]
    ttl: Option<String>,
    /// Hard maximum lifetime.
    #[arg(long = "explicit-max-ttl")]
    explicit_max_ttl: Option<String>,
    /// Make the token periodic with this period.
    #[arg(long)]
    period: Option<String>,
    /// Number of uses (0 = unlimited).
    #[arg(long = "num-uses")]
    num_uses: Option<u64>,
    /// Create an orphan token.
    #[arg(long)]
    orphan: bool,
    /// Do not attach the `default` policy.
    #[arg(long = "no-default-policy")]
    no_default_policy: bool,
    /// Display name.
    #[arg(long = "display-name")]
    display_name: Option<String>,
    /// Metadata `k=v` (repeatable).
    #[arg(long)]
    metadata: Vec<String>,
    /// Token role to create the token against.
    #[arg(long)]
    role: Option<String>,
    /// Custom token ID (root only).
    #[arg(long)]
    id: Option<String>,
    /// Token type (service or batch).
    #[arg(long = "type")]
    token_type: Option<String>,
    /// Allow the token to be renewed.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    renewable: Option<bool>,
}

/// An optional token argument with `-accessor`.
#[derive(Args, Debug)]
pub struct TokenArg {
    /// Treat the argument as an accessor.
    #[arg(long)]
    accessor: bool,
    /// Token (or accessor); the current token if omitted.
    token: Option<String>,
}

/// `token renew` arguments.
#[derive(Args, Debug)]
pub struct RenewArgs {
    /// Requested lease extension.
    #[arg(long, short = 'i')]
    increment: Option<String>,
    /// Treat the argument as an accessor.
    #[arg(long)]
    accessor: bool,
    /// Token; the current token if omitted.
    token: Option<String>,
}

/// `token revoke` arguments.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Treat the argument as an accessor.
    #[arg(long)]
    accessor: bool,
    /// Revoke the current token.
    #[arg(long = "self")]
    revoke_self: bool,
    /// `orphan` to leave children alive.
    #[arg(long)]
    mode: Option<String>,
    /// Token to revoke.
    token: Option<String>,
}

/// `token capabilities [token] path`
#[derive(Args, Debug)]
pub struct CapArgs {
    /// Treat the token argument as an accessor.
    #[arg(long)]
    accessor: bool,
    /// `[token] path`
    #[arg(required = true, num_args = 1..=2)]
    args: Vec<String>,
}

/// Dispatches `token` subcommands.
pub async fn run(c: &Client, cmd: TokenCommand) -> CmdResult {
    match cmd {
        TokenCommand::Create(a) => create(c, a).await,
        TokenCommand::Lookup(a) => lookup(c, a).await,
        TokenCommand::Renew(a) => renew(c, a).await,
        TokenCommand::Revoke(a) => revoke(c, a).await,
        TokenCommand::Capabilities(a) => capabilities(c, a).await,
    }
}

fn put_opt(m: &mut Map<String, Value>, k: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v.into());
    }
}

async fn create(c: &Client, a: CreateArgs) -> CmdResult {
    let mut body = Map::new();
    let policies = split_list(&a.policy);
    if !policies.is_empty() {
        body.insert("policies".into(), json!(policies));
    }
    put_opt(&mut body, "ttl", a.ttl);
    put_opt(&mut body, "explicit_max_ttl", a.explicit_max_ttl);
    put_opt(&mut body, "period", a.period);
    put_opt(&mut body, "num_uses", a.num_uses);
    put_opt(&mut body, "display_name", a.display_name);
    put_opt(&mut body, "id", a.id);
    put_opt(&mut body, "type", a.token_type);
    put_opt(&mut body, "renewable", a.renewable);
    if a.no_default_policy {
        body.insert("no_default_policy".into(), json!(true));
    }
    if a.orphan {
        body.insert("no_parent".into(), json!(true));
    }
    if !a.metadata.is_empty() {
        body.insert("meta".into(), Value::Object(parse_kv_args(&a.metadata)?));
    }
    let path = match (&a.role, a.orphan) {
        (Some(r), _) => format!("auth/token/create/{r}"),
        (None, true) => "auth/token/create-orphan".to_string(),
        (None, false) => "auth/token/create".to_string(),
    };
    let r = c
        .call(
            "creating token",
            Method::PUT,
            &path,
            Some(&Value::Object(body)),
        )
        .await?;
    output_secret(c, &r.body.unwrap_or(Value::Null), None)
}

async fn lookup(c: &Client, a: TokenArg) -> CmdResult {
    let r = match (a.token, a.accessor) {
        (None, true) => {
            return Err(CliError::Usage(
                "Not enough arguments (expected 1, got 0)".into(),
            ))
        }
        (None, false) => {
            c.call(
                "looking up token",
                Method::GET,
                "auth/token/lookup-self",
                None,
            )
            .await?
        }
        (Some(acc), true) => {
            let b = json!({ "accessor": acc });
            c.call(
                "looking up token",
                Method::PUT,
                "auth/token/lookup-accessor",
                Some(&b),
            )
            .await?
        }
        (Some(tok), false) => {
            let b = json!({ "token": tok });
            c.call(
                "looking up token",
                Method::PUT,
                "auth/token/lookup",
                Some(&b),
            )
            .await?
        }
    };
    output_secret(c, &r.body.unwrap_or(Value::Null), None)
}

async fn renew(c: &Client, a: RenewArgs) -> CmdResult {
    let mut body = Map::new();
    put_opt(&mut body, "increment", a.increment);
    let path = match (a.token, a.accessor) {
        (None, _) => "auth/token/renew-self",
        (Some(t), true) => {
            body.insert("accessor".into(), json!(t));
            "auth/token/renew-accessor"
        }
        (Some(t), false) => {
            body.insert("token".into(), json!(t));
            "auth/token/renew"
        }
    };
    let r = c
        .call(
            "renewing token",
            Method::PUT,
            path,
            Some(&Value::Object(body)),
        )
        .await?;
    output_secret(c, &r.body.unwrap_or(Value::Null), None)
}

async fn revoke(c: &Client, a: RevokeArgs) -> CmdResult {
    let orphan = match a.mode.as_deref() {
        None | Some("") => false,
        Some("orphan") => true,
        Some(m) => return Err(CliError::Usage(format!("Invalid mode: {m}"))),
    };
    let (path, body) = match (a.revoke_self, a.token, a.accessor) {
        (true, Some(_), _) => {
            return Err(CliError::Usage(
                "Too many arguments (expected 0, got 1)".into(),
            ))
        }
        (true, None, _) => ("auth/token/revoke-self", None),
        (false, None, _) => {
            return Err(CliError::Usage(
                "Not enough arguments (expected 1, got 0)".into(),
            ))
        }
        (false, Some(t), true) => ("auth/token/revoke-accessor", Some(json!({ "accessor": t }))),
        (false, Some(t), false) if orphan => {
            ("auth/token/revoke-orphan", Some(json!({ "token": t })))
        }
        (false, Some(t), false) => ("auth/token/revoke", Some(json!({ "token": t }))),
    };
    c.call("revoking token", Method::PUT, path, body.as_ref())
        .await?;
    println!("Success! Revoked token (if it existed)");
    Ok(0)
}

async fn capabilities(c: &Client, a: CapArgs) -> CmdResult {
    let (token, path) = match a.args.as_slice() {
        [p] => (None, p.clone()),
        [t, p] => (Some(t.clone()), p.clone()),
        _ => return Err(CliError::Usage("Expected a path".into())),
    };
    let r = match token {
        None => {
            let b = json!({ "paths": [path] });
            c.call(
                "listing capabilities",
                Method::PUT,
                "sys/capabilities-self",
                Some(&b),
            )
            .await?
        }
        Some(t) if a.accessor => {
            let b = json!({ "accessor": t, "paths": [path] });
            c.call(
                "listing capabilities",
                Method::PUT,
                "sys/capabilities-accessor",
                Some(&b),
            )
            .await?
        }
        Some(t) => {
            let b = json!({ "token": t, "paths": [path] });
            c.call(
                "listing capabilities",
                Method::PUT,
                "sys/capabilities",
                Some(&b),
            )
            .await?
        }
    };
    let body = r.body.unwrap_or(Value::Null);
    let data = body.get("data").unwrap_or(&body);
    let caps = data
        .get(&path)
        .or_else(|| data.get("capabilities"))
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    match c.cfg.format {
        Format::Table | Format::Raw => {
            let list: Vec<String> = caps
                .as_array()
                .into_iter()
                .flatten()
                .map(output::go_fmt)
                .collect();
            println!("{}", list.join(", "));
        }
        f => output::print_structured(f, &caps),
    }
    Ok(0)
}
