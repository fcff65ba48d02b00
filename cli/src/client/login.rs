//! `login`: validate a token (or log in with an auth method) and store the
//! resulting token in the token helper file `~/.vault-token`.

use clap::Args;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::generic::output_secret;
use super::operator::prompt;
use super::output::{self, Format};
use super::{parse_kv_args, write_token_helper, CliError, Client, CmdResult, Config};

/// `login` arguments.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Auth method: `token` (default), `userpass`, `approle`, …
    #[arg(long, default_value = "token")]
    method: String,
    /// Mount path of the auth method (defaults to the method name).
    #[arg(long)]
    path: Option<String>,
    /// Do not store the token in the token helper.
    #[arg(long = "no-store")]
    no_store: bool,
    /// Print only the token.
    #[arg(long = "token-only")]
    token_only: bool,
    /// Do not print anything on success.
    #[arg(long = "no-print")]
    no_print: bool,
    /// Token (token method), or `k=v` credentials for other methods.
    args: Vec<String>,
}

/// Runs `login`.
pub async fn run(c: &Client, a: LoginArgs) -> CmdResult {
    let body = if a.method == "token" {
        login_token(c, &a).await?
    } else {
        login_method(c, &a).await?
    };
    let auth = body.get("auth").cloned().unwrap_or(Value::Null);
    let token = auth
        .get("client_token")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if token.is_empty() {
        return Err(CliError::Exit(
            "Error authenticating: no token was returned".into(),
            2,
        ));
    }
    if a.token_only {
        println!("{token}");
        return Ok(0);
    }
    if !a.no_store {
        write_token_helper(&token)?;
    }
    if a.no_print {
        return Ok(0);
    }
    if c.cfg.format == Format::Table && c.cfg.field.is_none() {
        if a.no_store {
            println!(
                "Success! You are now authenticated. The token information displayed below\n\
                 is not stored in the token helper. Set the VAULT_TOKEN environment variable\n\
                 to use this token.\n"
            );
        } else {
            println!(
                "Success! You are now authenticated. The token information displayed below\n\
                 is already stored in the token helper. You do NOT need to run \"vault login\"\n\
                 again. Future Vault requests will automatically use this token.\n"
            );
        }
        print!("{}", output::kv_table(output::auth_rows(&auth)));
        return Ok(0);
    }
    output_secret(c, &body, None)
}

/// Token login: `lookup-self` with the given token, turned into an auth block.
async fn login_token(c: &Client, a: &LoginArgs) -> Result<Value, CliError> {
    let token = match a.args.as_slice() {
        [] => prompt("Token (input is read from stdin): ")?,
        [t] if t == "-" => super::read_stdin()?.trim().to_string(),
        [t] => t.trim_start_matches("token=").to_string(),
        _ => {
            return Err(CliError::Usage(format!(
                "Too many arguments (expected 1, got {})",
                a.args.len()
            )))
        }
    };
    if token.is_empty() {
        return Err(CliError::Usage(
            "Error authenticating: no token given".into(),
        ));
    }
    let cfg = Config {
        token: Some(token.clone()),
        ..c.cfg.clone()
    };
    let tc = Client::new(cfg)?;
    let r = tc
        .call(
            "authenticating",
            Method::GET,
            "auth/token/lookup-self",
            None,
        )
        .await?;
    let body = r.body.unwrap_or(Value::Null);
    let d = body.get("data").cloned().unwrap_or(Value::Null);
    let g = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
    let policies = g("policies");
    let auth = json!({
        "client_token": token,
        "accessor": g("accessor"),
        "policies": policies,
        "token_policies": policies,
        "identity_policies": g("identity_policies"),
        "metadata": g("meta"),
        "lease_duration": g("ttl"),
        "renewable": g("renewable"),
        "entity_id": g("entity_id"),
        "orphan": g("orphan"),
    });
    let mut out = Map::new();
    for k in ["request_id", "lease_id", "lease_duration", "renewable"] {
        out.insert(k.into(), body.get(k).cloned().unwrap_or(Value::Null));
    }
    out.insert("data".into(), Value::Null);
    out.insert("warnings".into(), Value::Null);
    out.insert("auth".into(), auth);
    Ok(Value::Object(out))
}

/// Other methods: `POST auth/<mount>/login[/<username>]` with the `k=v` args.
async fn login_method(c: &Client, a: &LoginArgs) -> Result<Value, CliError> {
    let mut data = parse_kv_args(&a.args)?;
    let mount = a.path.clone().unwrap_or_else(|| a.method.clone());
    let mount = mount.trim_matches('/');
    let path = if matches!(a.method.as_str(), "userpass" | "ldap" | "okta" | "radius") {
        let user = data
            .get("username")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| CliError::Usage("'username' must be specified".into()))?;
        if !data.contains_key("password") {
            let p = prompt("Password (input is read from stdin): ")?;
            data.insert("password".into(), json!(p));
        }
        data.remove("username");
        format!("auth/{mount}/login/{user}")
    } else {
        format!("auth/{mount}/login")
    };
    let r = c
        .call(
            "authenticating",
            Method::PUT,
            &path,
            Some(&Value::Object(data)),
        )
        .await?;
    Ok(r.body.unwrap_or(Value::Null))
}
