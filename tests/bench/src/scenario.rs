//! Scenarios: what each one sets up through the API under the run's unique
//! prefix, what it sends while measured (a [`Plan`]), and how it is undone.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::Method;
use serde_json::{json, Value};

use crate::target::Target;

/// One kind of measured request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    Kv2Read,
    Kv2Write,
    Kv1Read,
    TokenCreate,
    UserpassLogin,
    ApproleLogin,
    PkiIssue,
    DbCreds,
    TransitHmac,
    TransitEncrypt,
}

impl Scenario {
    /// Every scenario, in the order the README lists them.
    pub const ALL: [Scenario; 10] = [
        Scenario::Kv2Read,
        Scenario::Kv2Write,
        Scenario::Kv1Read,
        Scenario::TokenCreate,
        Scenario::UserpassLogin,
        Scenario::ApproleLogin,
        Scenario::PkiIssue,
        Scenario::DbCreds,
        Scenario::TransitHmac,
        Scenario::TransitEncrypt,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kv2Read => "kv2-read",
            Scenario::Kv2Write => "kv2-write",
            Scenario::Kv1Read => "kv1-read",
            Scenario::TokenCreate => "token-create",
            Scenario::UserpassLogin => "userpass-login",
            Scenario::ApproleLogin => "approle-login",
            Scenario::PkiIssue => "pki-issue",
            Scenario::DbCreds => "db-creds",
            Scenario::TransitHmac => "transit-hmac",
            Scenario::TransitEncrypt => "transit-encrypt",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                anyhow!("unknown scenario {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// One weighted part of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub scenario: Scenario,
    pub weight: u32,
}

/// What one measurement sends: a single scenario, or a weighted mix whose
/// parts share the same clients (each request picks its part at random).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub components: Vec<Component>,
}

impl Workload {
    /// A workload of one scenario.
    pub fn single(scenario: Scenario) -> Workload {
        Workload {
            components: vec![Component {
                scenario,
                weight: 1,
            }],
        }
    }

    /// The name it is reported under: `kv2-read`, `kv2-read=80,kv2-write=20`.
    pub fn name(&self) -> String {
        if let [only] = self.components.as_slice() {
            return only.scenario.name().to_string();
        }
        self.components
            .iter()
            .map(|c| format!("{}={}", c.scenario, c.weight))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl FromStr for Workload {
    type Err = anyhow::Error;

    /// `kv2-read`, or a mix `kv2-read=80,kv2-write=20` (a part without a
    /// weight weighs 1).
    fn from_str(s: &str) -> Result<Workload> {
        let mut components: Vec<Component> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => {
                    let w: u32 = w
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("bad weight in {part:?}: want a whole number"))?;
                    (n.trim(), w)
                }
                None => (part, 1),
            };
            let scenario: Scenario = name.parse()?;
            if weight == 0 {
                bail!("weight 0 in {part:?}: leave the scenario out instead");
            }
            if components.iter().any(|c| c.scenario == scenario) {
                bail!("{scenario} appears twice in {s:?}");
            }
            components.push(Component { scenario, weight });
        }
        if components.is_empty() {
            bail!("empty scenario");
        }
        Ok(Workload { components })
    }
}

/// What a scenario sends while measured, fixed during setup so that the load
/// loop only picks a path and a body and sends them. Public so that callers
/// (and the tests) can aim a plan elsewhere or send it with another token.
/// Not `Debug`: it holds the token.
#[derive(Clone)]
pub struct Plan {
    pub method: Method,
    /// Paths under `/v1/`; each request takes one at random.
    pub paths: Vec<String>,
    /// JSON bodies; each request takes one at random. Empty: no body.
    pub bodies: Vec<bytes::Bytes>,
    /// Sent as `X-Vault-Token`; `None` for logins.
    pub token: Option<String>,
}

/// Something setup created, undone at cleanup in reverse order.
#[derive(Clone)]
pub(crate) enum Undo {
    Audit(String),
    Mount(String),
    Auth(String),
    Policy(String),
    TokenAccessor(String),
}

/// What setting a scenario up needs to know.
pub struct SetupOptions {
    /// Seeded secrets for the read scenarios (and distinct keys for writes).
    pub keys: usize,
    /// PostgreSQL connection URL for `db-creds`.
    pub pg_url: Option<String>,
}

/// A scenario once set up.
pub(crate) struct Prepared {
    pub plan: Plan,
    /// ACL rules the measured token needs (empty for logins).
    pub rules: String,
    /// What was created, for the report.
    pub created: String,
}

/// Users and secret-ids a login scenario spreads its requests over: enough to
/// avoid one hot row, few enough that setup stays quick.
const LOGIN_PRINCIPALS: usize = 16;

/// Distinct bodies for write-like scenarios, so that no request is a replay.
const BODY_VARIANTS: usize = 16;

/// Length of the seeded secrets' `password` value.
pub const SEED_PASSWORD_LEN: usize = 24;

/// How many setup writes run at once when seeding.
const SEED_CONCURRENCY: usize = 16;

/// Sets `scenario` up under `prefix` with the setup token; pushes what it
/// created onto `undo` as it goes, so that a half-done setup is still undone.
pub(crate) async fn prepare(
    target: &Target,
    scenario: Scenario,
    prefix: &str,
    opts: &SetupOptions,
    undo: &mut Vec<Undo>,
) -> Result<Prepared> {
    let keys = opts.keys.max(1);
    let p = prefix;
    let prepared = match scenario {
        Scenario::Kv2Read => {
            let mount = format!("{p}-kv2r");
            enable_mount(
                target,
                &mount,
                json!({"type": "kv", "options": {"version": "2"}}),
                undo,
            )
            .await?;
            let paths: Vec<String> = (0..keys).map(|i| format!("{mount}/data/key-{i}")).collect();
            seed(target, &paths, |i| json!({"data": seed_secret(p, i)})).await?;
            Prepared {
                plan: plan(Method::GET, paths, Vec::new()),
                rules: rule(&format!("{mount}/data/*"), &["read"]),
                created: format!("kv v2 mount {mount}/ with {keys} secrets"),
            }
        }
        Scenario::Kv2Write => {
            let mount = format!("{p}-kv2w");
            enable_mount(
                target,
                &mount,
                json!({"type": "kv", "options": {"version": "2"}}),
                undo,
            )
            .await?;
            let paths = (0..keys).map(|i| format!("{mount}/data/key-{i}")).collect();
            let bodies = (0..BODY_VARIANTS)
                .map(|i| json!({"data": seed_secret(&format!("{p}-w"), i)}))
                .collect();
            Prepared {
                plan: plan(Method::POST, paths, bodies),
                rules: rule(&format!("{mount}/data/*"), &["create", "update"]),
                created: format!("kv v2 mount {mount}/ ({keys} keys written over)"),
            }
        }
        Scenario::Kv1Read => {
            let mount = format!("{p}-kv1");
            enable_mount(
                target,
                &mount,
                json!({"type": "kv", "options": {"version": "1"}}),
                undo,
            )
            .await?;
            let paths: Vec<String> = (0..keys).map(|i| format!("{mount}/key-{i}")).collect();
            seed(target, &paths, |i| seed_secret(p, i)).await?;
            Prepared {
                plan: plan(Method::GET, paths, Vec::new()),
                rules: rule(&format!("{mount}/*"), &["read"]),
                created: format!("kv v1 mount {mount}/ with {keys} secrets"),
            }
        }
        Scenario::TokenCreate => {
            // Children of the measured token: revoked with it at cleanup, and
            // short-lived in case cleanup is skipped.
            let body = json!({"ttl": "2m", "display_name": "bench"});
            Prepared {
                plan: plan(Method::POST, vec!["auth/token/create".into()], vec![body]),
                rules: rule("auth/token/create", &["create", "update"]),
                created: "nothing (tokens are children of the measured token)".into(),
            }
        }
        Scenario::UserpassLogin => {
            let mount = format!("{p}-userpass");
            enable_auth(target, &mount, "userpass", undo).await?;
            let password = pseudo_random(&format!("{p}-userpass"), 0, 24);
            let mut paths = Vec::new();
            for i in 0..LOGIN_PRINCIPALS {
                let user = format!("user-{i}");
                target
                    .write(
                        &format!("auth/{mount}/users/{user}"),
                        &json!({"password": password, "token_ttl": "2m", "token_policies": "default"}),
                    )
                    .await?;
                paths.push(format!("auth/{mount}/login/{user}"));
            }
            Prepared {
                plan: plan(Method::POST, paths, vec![json!({"password": password})]),
                rules: String::new(),
                created: format!("userpass auth {mount}/ with {LOGIN_PRINCIPALS} users"),
            }
        }
        Scenario::ApproleLogin => {
            let mount = format!("{p}-approle");
            enable_auth(target, &mount, "approle", undo).await?;
            let role = format!("auth/{mount}/role/bench");
            target
                .write(
                    &role,
                    &json!({"token_ttl": "2m", "token_policies": "default"}),
                )
                .await?;
            let role_id = target.read(&format!("{role}/role-id")).await?["data"]["role_id"]
                .as_str()
                .ok_or_else(|| anyhow!("GET {role}/role-id: no data.role_id"))?
                .to_string();
            let mut bodies = Vec::new();
            for _ in 0..LOGIN_PRINCIPALS {
                let r = target
                    .write(&format!("{role}/secret-id"), &json!({}))
                    .await?
                    .ok_or_else(|| anyhow!("POST {role}/secret-id: empty answer"))?;
                let secret_id = r["data"]["secret_id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("POST {role}/secret-id: no data.secret_id"))?;
                bodies.push(json!({"role_id": role_id, "secret_id": secret_id}));
            }
            Prepared {
                plan: plan(Method::POST, vec![format!("auth/{mount}/login")], bodies),
                rules: String::new(),
                created: format!("approle auth {mount}/ with {LOGIN_PRINCIPALS} secret-ids"),
            }
        }
        Scenario::PkiIssue => {
            let mount = format!("{p}-pki");
            enable_mount(target, &mount, json!({"type": "pki"}), undo).await?;
            target
                .write(
                    &format!("{mount}/root/generate/internal"),
                    &json!({"common_name": format!("{p} bench root"), "key_type": "ec", "key_bits": 256, "ttl": "720h"}),
                )
                .await?;
            target
                .write(
                    &format!("{mount}/roles/bench"),
                    &json!({
                        "key_type": "ec",
                        "key_bits": 256,
                        "allowed_domains": "bench.example",
                        "allow_subdomains": true,
                        "ttl": "5m",
                        "max_ttl": "1h",
                    }),
                )
                .await?;
            let bodies = (0..BODY_VARIANTS)
                .map(|i| json!({"common_name": format!("host-{i}.bench.example"), "ttl": "5m"}))
                .collect();
            Prepared {
                plan: plan(Method::POST, vec![format!("{mount}/issue/bench")], bodies),
                rules: rule(&format!("{mount}/issue/bench"), &["create", "update"]),
                created: format!("pki mount {mount}/ with an EC P-256 root and role"),
            }
        }
        Scenario::DbCreds => {
            let url = opts
                .pg_url
                .as_deref()
                .ok_or_else(|| anyhow!("db-creds needs -pg-url"))?;
            let mount = format!("{p}-db");
            database_mount(target, &mount, url, "bench", ("2m", "10m"), undo).await?;
            Prepared {
                plan: plan(
                    Method::GET,
                    vec![format!("{mount}/creds/bench")],
                    Vec::new(),
                ),
                rules: rule(&format!("{mount}/creds/bench"), &["read"]),
                created: format!("database mount {mount}/ (PostgreSQL role, 2m leases)"),
            }
        }
        Scenario::TransitHmac | Scenario::TransitEncrypt => {
            let (suffix, op, field) = match scenario {
                Scenario::TransitHmac => ("hmac", "hmac", "input"),
                _ => ("encrypt", "encrypt", "plaintext"),
            };
            let mount = format!("{p}-transit-{suffix}");
            enable_mount(target, &mount, json!({"type": "transit"}), undo).await?;
            target
                .write(
                    &format!("{mount}/keys/bench"),
                    &json!({"type": "aes256-gcm96"}),
                )
                .await?;
            let b64 = base64::engine::general_purpose::STANDARD;
            let bodies = (0..BODY_VARIANTS)
                .map(|i| json!({ (field): b64.encode(pseudo_random(p, i, 64)) }))
                .collect();
            Prepared {
                plan: plan(Method::POST, vec![format!("{mount}/{op}/bench")], bodies),
                rules: rule(&format!("{mount}/{op}/bench"), &["create", "update"]),
                created: format!("transit mount {mount}/ with an aes256-gcm96 key"),
            }
        }
    };
    Ok(prepared)
}

/// Undoes one setup step with the setup token.
pub(crate) async fn undo(target: &Target, step: &Undo) -> Result<()> {
    match step {
        Undo::Audit(path) => target.delete(&format!("sys/audit/{path}")).await,
        Undo::Mount(path) => target.delete(&format!("sys/mounts/{path}")).await,
        Undo::Auth(path) => target.delete(&format!("sys/auth/{path}")).await,
        Undo::Policy(name) => target.delete(&format!("sys/policies/acl/{name}")).await,
        Undo::TokenAccessor(accessor) => target
            .write(
                "auth/token/revoke-accessor",
                &json!({ "accessor": accessor }),
            )
            .await
            .map(|_| ()),
    }
}

/// Enables a file audit device at `<prefix>-file`, as production runs.
pub(crate) async fn enable_audit(
    target: &Target,
    prefix: &str,
    file: &str,
    undo: &mut Vec<Undo>,
) -> Result<()> {
    let path = format!("{prefix}-file");
    target
        .write(
            &format!("sys/audit/{path}"),
            &json!({"type": "file", "options": {"file_path": file}}),
        )
        .await
        .context("enabling the file audit device")?;
    undo.push(Undo::Audit(path));
    Ok(())
}

/// Creates the policy the measured token carries and the token itself
/// (a child of the setup token, revoked at cleanup).
pub(crate) async fn measured_token(
    target: &Target,
    prefix: &str,
    rules: &str,
    undo: &mut Vec<Undo>,
) -> Result<String> {
    target
        .write(
            &format!("sys/policies/acl/{prefix}"),
            &json!({ "policy": rules }),
        )
        .await
        .context("writing the benchmark's policy")?;
    undo.push(Undo::Policy(prefix.to_string()));
    let body = json!({"policies": [prefix], "ttl": "24h", "display_name": "bench"});
    create_token(target, &body, "the measured token", undo).await
}

/// Creates a token with the setup token (revoked at cleanup); returns it.
async fn create_token(
    target: &Target,
    body: &Value,
    what: &str,
    undo: &mut Vec<Undo>,
) -> Result<String> {
    let r = target
        .write("auth/token/create", body)
        .await
        .with_context(|| format!("creating {what}"))?
        .ok_or_else(|| anyhow!("auth/token/create: empty answer"))?;
    let auth = &r["auth"];
    let (Some(token), Some(accessor)) = (auth["client_token"].as_str(), auth["accessor"].as_str())
    else {
        bail!("auth/token/create: no auth.client_token/accessor in the answer");
    };
    undo.push(Undo::TokenAccessor(accessor.to_string()));
    Ok(token.to_string())
}

/// Creates `n` live tokens (2h TTL) as children of one new parent token, so
/// that revoking the parent at cleanup revokes them all.
pub(crate) async fn seed_tokens(target: &Target, n: usize, undo: &mut Vec<Undo>) -> Result<()> {
    let body = json!({"ttl": "24h", "display_name": "bench-parent"});
    let parent = create_token(target, &body, "the seeded tokens' parent", undo).await?;
    let as_parent = target.with_token(&parent);
    let body = json!({"ttl": "2h", "display_name": "bench-seeded"});
    repeat(n, || as_parent.write("auth/token/create", &body))
        .await
        .context("seeding tokens")
}

/// Runs `call` `n` times, a few at a time; the first failure ends it.
async fn repeat<T, F: std::future::Future<Output = Result<T>>>(
    n: usize,
    call: impl Fn() -> F,
) -> Result<()> {
    futures::stream::iter((0..n).map(|_| call()))
        .buffer_unordered(SEED_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Creates `n` live leases (2h dynamic PostgreSQL credentials) on a database
/// mount of their own, revoked when the mount is disabled at cleanup.
pub(crate) async fn seed_leases(
    target: &Target,
    prefix: &str,
    pg_url: &str,
    n: usize,
    undo: &mut Vec<Undo>,
) -> Result<()> {
    let mount = format!("{prefix}-leases");
    database_mount(target, &mount, pg_url, "seed", ("2h", "4h"), undo).await?;
    let path = format!("{mount}/creds/seed");
    repeat(n, || target.read(&path))
        .await
        .context("seeding leases")
}

/// A database mount at `mount` on the PostgreSQL at `url`, with one role
/// `role` whose credentials live `ttl` (default, max).
async fn database_mount(
    target: &Target,
    mount: &str,
    url: &str,
    role: &str,
    ttl: (&str, &str),
    undo: &mut Vec<Undo>,
) -> Result<()> {
    enable_mount(target, mount, json!({"type": "database"}), undo).await?;
    target
        .write(
            &format!("{mount}/config/pg"),
            &json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": url,
                "allowed_roles": role,
                "verify_connection": true,
            }),
        )
        .await?;
    target
        .write(
            &format!("{mount}/roles/{role}"),
            &json!({
                "db_name": "pg",
                "creation_statements": r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#,
                "default_ttl": ttl.0,
                "max_ttl": ttl.1,
            }),
        )
        .await?;
    Ok(())
}

/// The kv secret seeded at index `i`: what a read scenario reads back.
pub fn seed_secret(prefix: &str, i: usize) -> Value {
    json!({
        "username": format!("bench-user-{i}"),
        "password": pseudo_random(prefix, i, SEED_PASSWORD_LEN),
    })
}

async fn enable_mount(
    target: &Target,
    path: &str,
    body: Value,
    undo: &mut Vec<Undo>,
) -> Result<()> {
    target
        .write(&format!("sys/mounts/{path}"), &body)
        .await
        .with_context(|| format!("mounting {path}/"))?;
    undo.push(Undo::Mount(path.to_string()));
    Ok(())
}

async fn enable_auth(target: &Target, path: &str, kind: &str, undo: &mut Vec<Undo>) -> Result<()> {
    target
        .write(&format!("sys/auth/{path}"), &json!({ "type": kind }))
        .await
        .with_context(|| format!("enabling {kind} auth at {path}/"))?;
    undo.push(Undo::Auth(path.to_string()));
    Ok(())
}

/// Writes `body(i)` at every `paths[i]`, a few at a time.
async fn seed(target: &Target, paths: &[String], body: impl Fn(usize) -> Value) -> Result<()> {
    futures::stream::iter(paths.iter().enumerate().map(|(i, path)| {
        let value = body(i);
        async move { target.write(path, &value).await.map(|_| ()) }
    }))
    .buffer_unordered(SEED_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await
    .context("seeding secrets")?;
    Ok(())
}

fn plan(method: Method, paths: Vec<String>, bodies: Vec<Value>) -> Plan {
    Plan {
        method,
        paths,
        bodies: bodies
            .into_iter()
            .map(|b| bytes::Bytes::from(b.to_string()))
            .collect(),
        token: None,
    }
}

fn rule(path: &str, caps: &[&str]) -> String {
    let caps: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
    format!(
        "path {path:?} {{\n  capabilities = [{}]\n}}\n",
        caps.join(", ")
    )
}

/// Alphanumeric filler derived from `(seed, i)`: stable within a run, so a
/// read's answer has a known size, and distinct across keys. Not a secret.
pub fn pseudo_random(seed: &str, i: usize, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64 ^ i as u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        | 1;
    (0..len)
        .map(|_| {
            x = crate::load::xorshift(x);
            char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// The scenarios of `workloads`, each once, in a stable order.
pub(crate) fn distinct(workloads: &[Workload]) -> Vec<Scenario> {
    let set: BTreeMap<Scenario, ()> = workloads
        .iter()
        .flat_map(|w| w.components.iter().map(|c| (c.scenario, ())))
        .collect();
    set.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_weighted_workloads() {
        let w: Workload = "kv2-read".parse().unwrap();
        assert_eq!(w, Workload::single(Scenario::Kv2Read));
        let w: Workload = "kv2-read=80, kv2-write=20".parse().unwrap();
        assert_eq!(w.components.len(), 2);
        assert_eq!(
            w.components[1],
            Component {
                scenario: Scenario::Kv2Write,
                weight: 20
            }
        );
        assert_eq!(w.name(), "kv2-read=80,kv2-write=20");
        for bad in [
            "",
            "kv3-read",
            "kv2-read=0",
            "kv2-read=x",
            "kv2-read,kv2-read=2",
        ] {
            assert!(bad.parse::<Workload>().is_err(), "{bad:?} accepted");
        }
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
        }
    }

    #[test]
    fn filler_is_stable_and_alphanumeric() {
        let a = pseudo_random("p", 3, 40);
        assert_eq!(a, pseudo_random("p", 3, 40));
        assert_ne!(a, pseudo_random("p", 4, 40));
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn rules_are_hcl() {
        assert_eq!(
            rule("a/b/*", &["read", "update"]),
            "path \"a/b/*\" {\n  capabilities = [\"read\", \"update\"]\n}\n"
        );
    }
}
