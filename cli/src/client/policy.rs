//! `policy write|read|list|delete|fmt` (ACL policies via `sys/policies/acl`,
//! as the Go SDK does).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::output::{self, Format};
use super::{read_stdin, CliError, Client, CmdResult};

/// `bulwark policy …`
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Upload a policy from a file or stdin (`-`).
    Write(WriteArgs),
    /// Print a policy's rules.
    Read(NameArg),
    /// List policy names.
    List,
    /// Delete a policy.
    Delete(NameArg),
    /// Format a policy file in place (canonical HCL).
    Fmt(FmtArgs),
}

/// `policy write NAME FILE|-`
#[derive(Args, Debug)]
pub struct WriteArgs {
    /// Policy name.
    name: String,
    /// File with the policy, or `-` for stdin.
    file: String,
}

/// A policy name.
#[derive(Args, Debug)]
pub struct NameArg {
    /// Policy name.
    name: String,
}

/// `policy fmt FILE`
#[derive(Args, Debug)]
pub struct FmtArgs {
    /// Policy file to rewrite.
    file: String,
}

/// Dispatches `policy` subcommands.
pub async fn run(c: &Client, cmd: PolicyCommand) -> CmdResult {
    match cmd {
        PolicyCommand::Write(a) => {
            let rules = if a.file == "-" {
                read_stdin()?
            } else {
                std::fs::read_to_string(&a.file).map_err(|e| {
                    CliError::Usage(format!("Error opening policy file: {}: {e}", a.file))
                })?
            };
            let name = a.name.trim().to_lowercase();
            let body = json!({ "policy": rules });
            c.call(
                "uploading policy",
                Method::PUT,
                &format!("sys/policies/acl/{name}"),
                Some(&body),
            )
            .await?;
            println!("Success! Uploaded policy: {name}");
            Ok(0)
        }
        PolicyCommand::Read(a) => {
            let name = a.name.trim().to_lowercase();
            let path = format!("sys/policies/acl/{name}");
            let Some(r) = c.read("reading policy", &path, &[]).await? else {
                return Err(CliError::Exit(format!("No policy named: {name}"), 2));
            };
            let body = r.body.unwrap_or(Value::Null);
            if c.cfg.format != Format::Table {
                let d = body.get("data").cloned().unwrap_or(Value::Null);
                let out = json!({"name": d.get("name"), "policy": d.get("policy")});
                output::print_structured(c.cfg.format, &out);
                return Ok(0);
            }
            let rules = body
                .pointer("/data/policy")
                .or_else(|| body.pointer("/data/rules"))
                .and_then(Value::as_str)
                .unwrap_or("");
            println!("{}", rules.trim_end_matches('\n'));
            Ok(0)
        }
        PolicyCommand::List => {
            let Some(r) = c.list("listing policies", "sys/policies/acl").await? else {
                return Ok(0);
            };
            let keys = r
                .body
                .as_ref()
                .and_then(|b| b.pointer("/data/keys"))
                .cloned()
                .unwrap_or(Value::Array(vec![]));
            if c.cfg.format != Format::Table {
                output::print_structured(c.cfg.format, &keys);
                return Ok(0);
            }
            for k in keys.as_array().into_iter().flatten() {
                println!("{}", output::go_fmt(k));
            }
            Ok(0)
        }
        PolicyCommand::Delete(a) => {
            let name = a.name.trim().to_lowercase();
            c.call(
                "deleting",
                Method::DELETE,
                &format!("sys/policies/acl/{name}"),
                None,
            )
            .await?;
            println!("Success! Deleted policy: {name}");
            Ok(0)
        }
        PolicyCommand::Fmt(a) => fmt(&a.file),
    }
}

/// Rewrites a policy file in canonical HCL formatting (via `hcl-rs`: the
/// file is parsed and re-emitted, so comments are not preserved).
fn fmt(file: &str) -> CmdResult {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("Error opening policy file: {file}: {e}")))?;
    // Deep nesting overflows hcl's recursive parser, and its error `Display`
    // panics past column 65535: check first, format the parts (issue 13).
    bulwark_shared::hcl_depth::check(&text)
        .map_err(|e| CliError::Usage(format!("Error parsing policy: {e}")))?;
    let body = hcl::parse(&text).map_err(|e| {
        let why = match e {
            hcl::Error::Parse(p) => format!(
                "line {}, column {}: {}",
                p.location().line(),
                p.location().column(),
                p.message()
            ),
            other => other.to_string(),
        };
        CliError::Usage(format!("Error parsing policy: {why}"))
    })?;
    let mut out = hcl::format::to_string(&body)
        .map_err(|e| CliError::Usage(format!("Error formatting policy: {e}")))?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    std::fs::write(file, out)
        .map_err(|e| CliError::Usage(format!("Error writing policy file: {file}: {e}")))?;
    println!("Success! Formatted policy: {file}");
    Ok(0)
}
