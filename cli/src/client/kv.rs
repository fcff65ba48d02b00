//! `kv …`: the KV secrets engine, v1 and v2, detected like `vault kv` does
//! with the `GET sys/internal/ui/mounts/<path>` preflight.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::generic::{output_list, output_secret, print_field};
use super::output::{self, Format};
use super::{parse_kv_args, split_list, CliError, Client, CmdResult};

/// `bulwark kv …`
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Create or replace a secret.
    Put(PutArgs),
    /// Read a secret.
    Get(GetArgs),
    /// List secrets under a path.
    List(KvPath),
    /// Delete a secret (v2: soft-delete the latest or given versions).
    Delete(VersionsArgs),
    /// Restore soft-deleted versions (v2).
    Undelete(VersionsArgs),
    /// Permanently destroy versions (v2).
    Destroy(VersionsArgs),
    /// Update some keys of a secret (v2).
    Patch(PatchArgs),
    /// Write an older version's data as the newest version (v2).
    Rollback(RollbackArgs),
    /// Secret metadata (v2).
    #[command(subcommand)]
    Metadata(MetadataCommand),
}

/// `kv metadata …`
#[derive(Subcommand, Debug)]
pub enum MetadataCommand {
    /// Read a secret's metadata and version history.
    Get(KvPath),
    /// Set a secret's metadata.
    Put(MetadataPutArgs),
    /// Delete a secret with all its versions.
    Delete(KvPath),
}

/// A secret path, optionally relative to `-mount`.
#[derive(Args, Debug)]
pub struct KvPath {
    /// Mount path of the KV engine; the path argument is then relative.
    #[arg(long)]
    mount: Option<String>,
    /// Secret path.
    path: String,
}

/// `kv put` arguments.
#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    p: KvPath,
    /// Check-and-set version (v2).
    #[arg(long, allow_hyphen_values = true)]
    cas: Option<i64>,
    /// Data: `k=v`, `k=@file`, `k=-`, `@file.json` or `-`.
    data: Vec<String>,
}

/// `kv get` arguments.
#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    p: KvPath,
    /// Version to read (v2; 0 = latest).
    #[arg(long)]
    version: Option<u64>,
}

/// Arguments of commands taking `-versions`.
#[derive(Args, Debug)]
pub struct VersionsArgs {
    #[command(flatten)]
    p: KvPath,
    /// Comma-separated versions.
    #[arg(long)]
    versions: Vec<String>,
}

/// `kv patch` arguments.
#[derive(Args, Debug)]
pub struct PatchArgs {
    #[command(flatten)]
    p: KvPath,
    /// Check-and-set version.
    #[arg(long, allow_hyphen_values = true)]
    cas: Option<i64>,
    /// `patch` (HTTP PATCH) or `rw` (read, then write with cas).
    #[arg(long)]
    method: Option<String>,
    /// Keys to remove.
    #[arg(long = "remove-data")]
    remove_data: Vec<String>,
    /// Data: `k=v`, `k=@file`, `k=-`, `@file.json` or `-`.
    data: Vec<String>,
}

/// `kv rollback` arguments.
#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    p: KvPath,
    /// Version to roll back to.
    #[arg(long)]
    version: Option<u64>,
}

/// `kv metadata put` arguments.
#[derive(Args, Debug)]
pub struct MetadataPutArgs {
    #[command(flatten)]
    p: KvPath,
    /// Number of versions to keep.
    #[arg(long = "max-versions")]
    max_versions: Option<u64>,
    /// Require check-and-set on writes.
    #[arg(long = "cas-required")]
    cas_required: Option<bool>,
    /// Delete versions after this duration.
    #[arg(long = "delete-version-after")]
    delete_version_after: Option<String>,
    /// Custom metadata `k=v` (repeatable).
    #[arg(long = "custom-metadata")]
    custom_metadata: Vec<String>,
}

/// Where a KV path lives: its mount and engine version.
struct Target {
    /// Mount path with trailing slash (`secret/`), empty if unknown.
    mount: String,
    /// Path relative to the mount.
    rel: String,
    /// Full path as given.
    full: String,
    v2: bool,
}

impl Target {
    /// API path for a v2 sub-tree (`data`, `metadata`, …).
    fn api(&self, prefix: &str) -> String {
        if self.v2 {
            format!("{}{prefix}/{}", self.mount, self.rel)
        } else {
            self.full.clone()
        }
    }
}

/// The preflight: `GET sys/internal/ui/mounts/<path>`.
async fn target(c: &Client, p: &KvPath) -> Result<Target, CliError> {
    let path = p.path.trim_start_matches('/');
    let full = match &p.mount {
        Some(m) => format!("{}/{}", m.trim_matches('/'), path),
        None => path.to_string(),
    };
    let pre = format!("sys/internal/ui/mounts/{full}");
    let r = c.send("", Method::GET, &pre, &[], None).await?;
    if r.status == 404 {
        return Ok(Target {
            mount: String::new(),
            rel: full.clone(),
            full,
            v2: false,
        });
    }
    let r = c.check("", Method::GET, &pre, r)?;
    let data = r.data().cloned().unwrap_or(Value::Null);
    let mut mount = data
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if mount.is_empty() {
        if let Some(m) = &p.mount {
            mount = format!("{}/", m.trim_matches('/'));
        }
    }
    let v2 = data
        .get("options")
        .and_then(|o| o.get("version"))
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        })
        .is_some_and(|v| v == "2");
    let rel = full
        .strip_prefix(&mount)
        .or_else(|| full.strip_prefix(mount.trim_end_matches('/')))
        .unwrap_or(&full)
        .trim_start_matches('/')
        .to_string();
    Ok(Target {
        mount,
        rel,
        full,
        v2,
    })
}

/// Dispatches `kv` subcommands.
pub async fn run(c: &Client, cmd: KvCommand) -> CmdResult {
    match cmd {
        KvCommand::Put(a) => put(c, a).await,
        KvCommand::Get(a) => get(c, a).await,
        KvCommand::List(a) => list(c, a).await,
        KvCommand::Delete(a) => delete(c, a).await,
        KvCommand::Undelete(a) => versions_op(c, a, "undelete").await,
        KvCommand::Destroy(a) => versions_op(c, a, "destroy").await,
        KvCommand::Patch(a) => patch(c, a).await,
        KvCommand::Rollback(a) => rollback(c, a).await,
        KvCommand::Metadata(MetadataCommand::Get(a)) => metadata_get(c, a).await,
        KvCommand::Metadata(MetadataCommand::Put(a)) => metadata_put(c, a).await,
        KvCommand::Metadata(MetadataCommand::Delete(a)) => {
            let t = target(c, &a).await?;
            require_v2(&t, "Metadata")?;
            let path = t.api("metadata");
            c.call(&format!("deleting {path}"), Method::DELETE, &path, None)
                .await?;
            println!("Success! Data deleted (if it existed) at: {path}");
            Ok(0)
        }
    }
}

fn require_v2(t: &Target, what: &str) -> Result<(), CliError> {
    if t.v2 {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{what} not supported on KV Version 1"
        )))
    }
}

fn print_path(header: &str, path: &str) {
    println!("{}", output::pad_equal_signs(header, path.len()));
    println!("{path}\n");
}

fn metadata_rows(m: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows = output::data_rows(m);
    for (k, v) in &mut rows {
        if k == "deletion_time" && v.is_empty() {
            *v = "n/a".into();
        }
    }
    rows
}

/// Prints the section `name` as Vault's `kv` commands do.
fn print_section(name: &str, m: &Map<String, Value>) {
    println!("{}", output::header_for_map(name, m));
    print!("{}", output::kv_table(metadata_rows(m)));
}

/// Output of a v2 write (put, patch, rollback): the version metadata.
fn output_v2_write(c: &Client, path: &str, body: &Value) -> CmdResult {
    if c.cfg.field.is_some() || c.cfg.format != Format::Table {
        return output_secret(c, body, None);
    }
    print_path("Secret Path", path);
    if let Some(Value::Object(m)) = body.get("data") {
        print_section("Metadata", m);
    }
    Ok(0)
}

async fn put(c: &Client, a: PutArgs) -> CmdResult {
    let data = parse_kv_args(&a.data)?;
    if data.is_empty() {
        return Err(CliError::Usage("Must supply data".into()));
    }
    let t = target(c, &a.p).await?;
    if !t.v2 {
        let ctx = format!("writing data to {}", t.full);
        c.call(&ctx, Method::PUT, &t.full, Some(&Value::Object(data)))
            .await?;
        println!("Success! Data written to: {}", t.full);
        return Ok(0);
    }
    let mut options = Map::new();
    if let Some(cas) = a.cas.filter(|n| *n >= 0) {
        options.insert("cas".into(), json!(cas));
    }
    let path = t.api("data");
    let body = json!({"data": data, "options": options});
    let ctx = format!("writing data to {path}");
    let r = c.call(&ctx, Method::PUT, &path, Some(&body)).await?;
    output_v2_write(c, &path, &r.body.unwrap_or(Value::Null))
}

async fn get(c: &Client, a: GetArgs) -> CmdResult {
    let t = target(c, &a.p).await?;
    let path = t.api("data");
    let mut q = Vec::new();
    if let Some(v) = a.version.filter(|_| t.v2) {
        q.push(("version", v.to_string()));
    }
    let Some(r) = c.read(&format!("reading {path}"), &path, &q).await? else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let body = r.body.unwrap_or(Value::Null);
    if !t.v2 {
        return output_secret(c, &body, None);
    }
    let inner = body
        .get("data")
        .and_then(|d| d.get("data"))
        .filter(|d| !d.is_null());
    if let Some(field) = c.cfg.field.clone() {
        return match inner.and_then(|d| d.get(&field)) {
            Some(v) => print_field(c.cfg.format, v, &field),
            None => Err(CliError::Usage(format!(
                "Field \"{field}\" not present in secret"
            ))),
        };
    }
    if c.cfg.format != Format::Table {
        return output_secret(c, &body, None);
    }
    print_path("Secret Path", &path);
    if let Some(Value::Object(m)) = body.get("data").and_then(|d| d.get("metadata")) {
        print_section("Metadata", m);
    }
    if let Some(Value::Object(d)) = inner {
        println!();
        println!("{}", output::header_for_map("Data", d));
        print!("{}", output::kv_table(output::data_rows(d)));
    }
    Ok(0)
}

async fn list(c: &Client, a: KvPath) -> CmdResult {
    let t = target(c, &a).await?;
    let path = t.api("metadata");
    match c.list(&format!("listing {path}"), &path).await? {
        None => {
            eprintln!("No value found at {path}");
            Ok(2)
        }
        Some(r) => output_list(c, &r.body.unwrap_or(Value::Null)),
    }
}

fn parse_versions(v: &[String]) -> Result<Vec<u64>, CliError> {
    split_list(v)
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| CliError::Usage(format!("Invalid version number: {s}")))
        })
        .collect()
}

async fn delete(c: &Client, a: VersionsArgs) -> CmdResult {
    let t = target(c, &a.p).await?;
    let versions = parse_versions(&a.versions)?;
    let path = if t.v2 && !versions.is_empty() {
        let path = t.api("delete");
        let body = json!({ "versions": versions });
        c.call(&format!("deleting {path}"), Method::PUT, &path, Some(&body))
            .await?;
        path
    } else {
        let path = t.api("data");
        c.call(&format!("deleting {path}"), Method::DELETE, &path, None)
            .await?;
        path
    };
    println!("Success! Data deleted (if it existed) at: {path}");
    Ok(0)
}

async fn versions_op(c: &Client, a: VersionsArgs, op: &str) -> CmdResult {
    let versions = parse_versions(&a.versions)?;
    if versions.is_empty() {
        return Err(CliError::Usage(
            "No versions provided, use the \"-versions\" flag to specify the version(s)".into(),
        ));
    }
    let t = target(c, &a.p).await?;
    let mut what = op.to_string();
    if let Some(f) = what.get_mut(..1) {
        f.make_ascii_uppercase();
    }
    require_v2(&t, &what)?;
    let path = t.api(op);
    let body = json!({ "versions": versions });
    c.call(
        &format!("writing data to {path}"),
        Method::PUT,
        &path,
        Some(&body),
    )
    .await?;
    println!("Success! Data written to: {path}");
    Ok(0)
}

async fn patch(c: &Client, a: PatchArgs) -> CmdResult {
    let mut data = parse_kv_args(&a.data)?;
    for k in &a.remove_data {
        data.insert(k.clone(), Value::Null);
    }
    if data.is_empty() {
        return Err(CliError::Usage("Must supply data".into()));
    }
    let t = target(c, &a.p).await?;
    require_v2(&t, "Patch")?;
    let path = t.api("data");
    let ctx = format!("writing data to {path}");
    let method = a.method.as_deref().unwrap_or("");
    if !matches!(method, "" | "patch" | "rw") {
        return Err(CliError::Usage(format!(
            "Unsupported method provided to -method flag: {method}"
        )));
    }
    if method != "rw" {
        let mut options = Map::new();
        if let Some(cas) = a.cas.filter(|n| *n >= 0) {
            options.insert("cas".into(), json!(cas));
        }
        let body = json!({"data": data, "options": options});
        let r = c.send(&ctx, Method::PATCH, &path, &[], Some(&body)).await?;
        if r.status == 404 {
            eprintln!("No value found at {path}");
            return Ok(2);
        }
        let fallback = method.is_empty() && matches!(r.status, 403 | 405);
        if !fallback {
            let r = c.check(&ctx, Method::PATCH, &path, r)?;
            return output_v2_write(c, &path, &r.body.unwrap_or(Value::Null));
        }
    }
    // Read, merge, write back with check-and-set on the version read.
    let Some(cur) = c.read(&format!("reading {path}"), &path, &[]).await? else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let cur = cur.body.unwrap_or(Value::Null);
    let Some(Value::Object(mut existing)) = cur.get("data").and_then(|d| d.get("data")).cloned()
    else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let version = cur
        .get("data")
        .and_then(|d| d.get("metadata"))
        .and_then(|m| m.get("version"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    for (k, v) in data {
        if v.is_null() {
            existing.remove(&k);
        } else {
            existing.insert(k, v);
        }
    }
    let cas = a.cas.filter(|n| *n >= 0).unwrap_or(version);
    let body = json!({"data": existing, "options": {"cas": cas}});
    let r = c.call(&ctx, Method::PUT, &path, Some(&body)).await?;
    output_v2_write(c, &path, &r.body.unwrap_or(Value::Null))
}

async fn rollback(c: &Client, a: RollbackArgs) -> CmdResult {
    let Some(version) = a.version.filter(|v| *v > 0) else {
        return Err(CliError::Usage(
            "Must specify a version to rollback to with -version".into(),
        ));
    };
    let t = target(c, &a.p).await?;
    require_v2(&t, "Rollback")?;
    let path = t.api("data");
    let ctx = format!("reading {path}");
    let Some(cur) = c.read(&ctx, &path, &[]).await? else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let cur_version = cur
        .body
        .as_ref()
        .and_then(|b| b.pointer("/data/metadata/version"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let Some(old) = c
        .read(&ctx, &path, &[("version", version.to_string())])
        .await?
    else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let old = old.body.unwrap_or(Value::Null);
    let meta = old
        .pointer("/data/metadata")
        .cloned()
        .unwrap_or(Value::Null);
    if meta.get("destroyed").and_then(Value::as_bool) == Some(true) {
        return Err(CliError::Exit(
            "Cannot roll back to a version that has been destroyed".into(),
            2,
        ));
    }
    if meta
        .get("deletion_time")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(CliError::Exit(
            "Cannot roll back to a version that has been deleted".into(),
            2,
        ));
    }
    let Some(data) = old.pointer("/data/data").filter(|d| d.is_object()).cloned() else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let body = json!({"data": data, "options": {"cas": cur_version}});
    let r = c
        .call(
            &format!("writing data to {path}"),
            Method::PUT,
            &path,
            Some(&body),
        )
        .await?;
    output_v2_write(c, &path, &r.body.unwrap_or(Value::Null))
}

async fn metadata_get(c: &Client, a: KvPath) -> CmdResult {
    let t = target(c, &a).await?;
    require_v2(&t, "Metadata")?;
    let path = t.api("metadata");
    let Some(r) = c.read(&format!("reading {path}"), &path, &[]).await? else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let body = r.body.unwrap_or(Value::Null);
    if c.cfg.field.is_some() || c.cfg.format != Format::Table {
        return output_secret(c, &body, None);
    }
    let Some(Value::Object(mut m)) = body.get("data").cloned() else {
        eprintln!("No value found at {path}");
        return Ok(2);
    };
    let versions = m.remove("versions");
    print_path("Metadata Path", &path);
    print_section("Metadata", &m);
    if let Some(Value::Object(vs)) = versions {
        let mut keys: Vec<(u64, &String)> =
            vs.keys().map(|k| (k.parse().unwrap_or(0), k)).collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.0));
        for (_, k) in keys {
            if let Some(Value::Object(v)) = vs.get(k) {
                println!();
                print_section(&format!("Version {k}"), v);
            }
        }
    }
    Ok(0)
}

async fn metadata_put(c: &Client, a: MetadataPutArgs) -> CmdResult {
    let t = target(c, &a.p).await?;
    require_v2(&t, "Metadata")?;
    let mut body = Map::new();
    if let Some(n) = a.max_versions {
        body.insert("max_versions".into(), json!(n));
    }
    if let Some(b) = a.cas_required {
        body.insert("cas_required".into(), json!(b));
    }
    if let Some(d) = a.delete_version_after {
        body.insert("delete_version_after".into(), json!(d));
    }
    if !a.custom_metadata.is_empty() {
        body.insert(
            "custom_metadata".into(),
            Value::Object(parse_kv_args(&a.custom_metadata)?),
        );
    }
    let path = t.api("metadata");
    c.call(
        &format!("writing data to {path}"),
        Method::PUT,
        &path,
        Some(&Value::Object(body)),
    )
    .await?;
    println!("Success! Data written to: {path}");
    Ok(0)
}
