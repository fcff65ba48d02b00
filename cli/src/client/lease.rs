//! `lease renew|revoke|lookup`: the lease registry (`sys/leases/*`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::generic::output_secret;
use super::{CliError, Client, CmdResult};

/// `bulwark lease …`
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Renew a lease.
    Renew(RenewArgs),
    /// Revoke a lease, or every lease under a prefix.
    Revoke(RevokeArgs),
    /// Look up a lease.
    Lookup(IdArg),
}

/// `lease renew` arguments.
#[derive(Args, Debug)]
pub struct RenewArgs {
    /// Requested extension (a duration, e.g. 1h).
    #[arg(long)]
    increment: Option<String>,
    /// Lease id.
    id: String,
}

/// `lease revoke` arguments.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Treat the id as a prefix.
    #[arg(long)]
    prefix: bool,
    /// Delete the leases even if the engine cannot revoke them (implies -prefix).
    #[arg(long)]
    force: bool,
    /// Wait for the revocation to finish.
    #[arg(long)]
    sync: bool,
    /// Lease id or prefix.
    id: String,
}

/// A lease id.
#[derive(Args, Debug)]
pub struct IdArg {
    /// Lease id.
    id: String,
}

/// Dispatches `lease` subcommands.
pub async fn run(c: &Client, cmd: LeaseCommand) -> CmdResult {
    match cmd {
        LeaseCommand::Renew(a) => {
            let mut body = json!({ "lease_id": a.id });
            if let Some(i) = a.increment {
                body["increment"] = json!(i);
            }
            let r = c
                .call(
                    "renewing lease",
                    Method::PUT,
                    "sys/leases/renew",
                    Some(&body),
                )
                .await?;
            output_secret(c, &r.body.unwrap_or(Value::Null), None)
        }
        LeaseCommand::Revoke(a) => {
            let id = a.id.trim_start_matches('/');
            if a.force {
                c.call(
                    "force revoking leases",
                    Method::PUT,
                    &format!("sys/leases/revoke-force/{id}"),
                    None,
                )
                .await?;
                println!("Success! Force revoked any leases with prefix: {id}");
            } else if a.prefix {
                c.call(
                    "revoking leases",
                    Method::PUT,
                    &format!("sys/leases/revoke-prefix/{id}"),
                    Some(&json!({ "sync": a.sync })),
                )
                .await?;
                println!("Success! Revoked any leases with prefix: {id}");
            } else {
                c.call(
                    "revoking lease",
                    Method::PUT,
                    "sys/leases/revoke",
                    Some(&json!({ "lease_id": id, "sync": a.sync })),
                )
                .await?;
                if a.sync {
                    println!("Success! Revoked lease: {id}");
                } else {
                    println!("All revocation operations queued successfully!");
                }
            }
            Ok(0)
        }
        LeaseCommand::Lookup(a) => {
            let r = c
                .call(
                    "looking up lease",
                    Method::PUT,
                    "sys/leases/lookup",
                    Some(&json!({ "lease_id": a.id })),
                )
                .await?;
            let body = r.body.unwrap_or(Value::Null);
            if body.get("data").is_none_or(Value::is_null) {
                return Err(CliError::Exit(format!("No lease found: {}", a.id), 2));
            }
            output_secret(c, &body, None)
        }
    }
}
