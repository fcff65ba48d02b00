//! The client half of `bulwark`: commands that talk to a running server over
//! the Vault HTTP API and print what `vault <command>` prints.
//!
//! This module holds the pieces every command shares: the global flags and
//! environment (`VAULT_ADDR`, `VAULT_TOKEN`, …), the token helper file
//! (`~/.vault-token`), the HTTP client, the error type (which knows Vault's
//! exit codes) and `key=value` argument parsing. One submodule per command
//! family does the rest; [`output`] renders tables, JSON and YAML.

mod audit;
mod auth;
mod generic;
mod kv;
mod lease;
mod login;
mod operator;
mod output;
mod policy;
mod secrets;
mod token;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

pub use output::Format;

/// Flags every client command accepts (Vault's "HTTP Options" and "Output
/// Options"). They are global, so they may appear before or after the
/// subcommand name.
#[derive(Args, Debug, Default, Clone)]
pub struct GlobalArgs {
    /// Address of the server (overrides VAULT_ADDR).
    #[arg(long, global = true, hide = true)]
    pub address: Option<String>,
    /// Output format: table, json, yaml or raw (overrides VAULT_FORMAT).
    #[arg(long, global = true, hide = true)]
    pub format: Option<String>,
    /// Print only this field of the response.
    #[arg(long, global = true, hide = true)]
    pub field: Option<String>,
    /// Wrap the response in a cubbyhole token with this TTL.
    #[arg(long = "wrap-ttl", global = true, hide = true)]
    pub wrap_ttl: Option<String>,
    /// PEM CA certificate used to verify the server (overrides VAULT_CACERT).
    #[arg(long = "ca-cert", global = true, hide = true)]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate.
    #[arg(long = "tls-skip-verify", global = true, hide = true)]
    pub tls_skip_verify: bool,
    /// PEM client certificate for TLS authentication (overrides
    /// VAULT_CLIENT_CERT); needs -client-key.
    #[arg(long = "client-cert", global = true, hide = true)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of -client-cert (overrides VAULT_CLIENT_KEY).
    #[arg(long = "client-key", global = true, hide = true)]
    pub client_key: Option<PathBuf>,
    /// Accepted for compatibility and ignored (Bulwark has no namespaces).
    #[arg(long, global = true, hide = true)]
    pub namespace: Option<String>,
}

/// The client subcommands, flattened into the top-level `bulwark` command.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Print seal and HA status.
    Status,
    /// Perform operator-specific tasks (init, seal, unseal, rotate, key-status,
    /// rekey, generate-root).
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Authenticate locally.
    Login(login::LoginArgs),
    /// Interact with tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Interact with Vault's Key-Value storage.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Interact with secrets engines.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Interact with policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Interact with audit devices.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Interact with auth methods.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Unwrap a wrapped secret.
    Unwrap(auth::UnwrapArgs),
    /// Interact with leases.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Read data and retrieve secrets.
    Read(generic::ReadArgs),
    /// Write data, configuration, and secrets.
    Write(generic::WriteArgs),
    /// List data or secrets.
    List(generic::PathArgs),
    /// Delete secrets and configuration.
    Delete(generic::DeleteArgs),
    /// Patch data, configuration, and secrets.
    Patch(generic::WriteArgs),
}

/// Names of all top-level commands, used for "Did you mean …?" hints.
pub const COMMAND_NAMES: &[&str] = &[
    "server", "certs", "status", "operator", "login", "token", "kv", "secrets", "policy", "audit",
    "auth", "unwrap", "lease", "read", "write", "list", "delete", "patch",
];

/// A failed command, carrying what to print and Vault's exit code.
#[derive(Debug)]
pub enum CliError {
    /// The server answered with an error status (exit 2).
    Api {
        /// What we were doing, e.g. "reading secret/data/x".
        context: String,
        /// HTTP method.
        method: Method,
        /// Full request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Messages from the `errors` array.
        errors: Vec<String>,
    },
    /// The request never got an answer (exit 2).
    Transport(String),
    /// Bad input from the user: arguments, files (exit 1).
    Usage(String),
    /// Anything else that should exit with a given code.
    Exit(String, u8),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } | CliError::Transport(_) => 2,
            CliError::Usage(_) => 1,
            CliError::Exit(_, c) => *c,
        }
    }

    /// Vault's rendering of the error, printed on stderr.
    fn render(&self) -> String {
        match self {
            CliError::Api {
                context,
                method,
                url,
                status,
                errors,
            } => {
                let mut s = String::new();
                if !context.is_empty() {
                    s.push_str(&format!("Error {context}: "));
                }
                s.push_str(&format!(
                    "Error making API request.\n\nURL: {method} {url}\nCode: {status}. Errors:\n\n"
                ));
                for e in errors {
                    s.push_str(&format!("* {e}\n"));
                }
                s.trim_end().to_string()
            }
            CliError::Transport(m) | CliError::Usage(m) | CliError::Exit(m, _) => m.clone(),
        }
    }
}

/// Result type of every command: the exit code on success (0, or 2 for
/// "no value found"-style outcomes).
pub type CmdResult = Result<u8, CliError>;

/// Settings resolved from flags and the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base address, without a trailing slash.
    pub addr: String,
    /// Token to send, if any.
    pub token: Option<String>,
    /// Output format.
    pub format: Format,
    /// `-field`, if given.
    pub field: Option<String>,
    /// `-wrap-ttl`, if given.
    pub wrap_ttl: Option<String>,
    ca_cert: Option<PathBuf>,
    skip_verify: bool,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "t" | "yes")
}

impl Config {
    /// Flags win over `VAULT_*`, which win over `BULWARK_*` and the token helper.
    fn resolve(g: &GlobalArgs) -> Result<Config, CliError> {
        if g.namespace.is_some() || env_nonempty("VAULT_NAMESPACE").is_some() {
            eprintln!(
                "WARNING! Namespaces are not supported by Bulwark; the namespace is ignored."
            );
        }
        let addr = g
            .address
            .clone()
            .or_else(|| env_nonempty("VAULT_ADDR"))
            .or_else(|| env_nonempty("BULWARK_ADDR"))
            .unwrap_or_else(|| "https://127.0.0.1:8200".to_string())
            .trim_end_matches('/')
            .to_string();
        let token = env_nonempty("VAULT_TOKEN")
            .or_else(|| env_nonempty("BULWARK_TOKEN"))
            .or_else(read_token_helper);
        let format_s = g
            .format
            .clone()
            .or_else(|| env_nonempty("VAULT_FORMAT"))
            .unwrap_or_else(|| "table".to_string());
        let format = Format::parse(&format_s).ok_or_else(|| {
            CliError::Usage(format!(
                "Invalid output format: {format_s}. Valid formats are: table, json, yaml, raw"
            ))
        })?;
        Ok(Config {
            addr,
            token,
            format,
            field: g.field.clone(),
            wrap_ttl: g.wrap_ttl.clone(),
            ca_cert: g
                .ca_cert
                .clone()
                .or_else(|| env_nonempty("VAULT_CACERT").map(PathBuf::from)),
            skip_verify: g.tls_skip_verify
                || env_nonempty("VAULT_SKIP_VERIFY").is_some_and(|v| truthy(&v)),
            client_cert: g
                .client_cert
                .clone()
                .or_else(|| env_nonempty("VAULT_CLIENT_CERT").map(PathBuf::from)),
            client_key: g
                .client_key
                .clone()
                .or_else(|| env_nonempty("VAULT_CLIENT_KEY").map(PathBuf::from)),
        })
    }
}

/// The TLS client identity of `-client-cert`/`-client-key` (or
/// `VAULT_CLIENT_CERT`/`VAULT_CLIENT_KEY`): both or neither.
fn client_identity(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Option<reqwest::Identity>, CliError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(CliError::Usage(
                "Error loading client certificate: both a client certificate and its key must be provided (-client-cert and -client-key, or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY)".into(),
            ))
        }
    };
    let read = |what: &str, p: &std::path::Path, marker: &str| {
        let bad = |m: String| {
            CliError::Usage(format!("Error loading client {what} {}: {m}", p.display()))
        };
        let pem = zeroize::Zeroizing::new(std::fs::read(p).map_err(|e| bad(e.to_string()))?);
        if !pem.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            return Err(bad(format!(
                "no {} block found in PEM",
                marker.trim_end_matches('-')
            )));
        }
        Ok(pem)
    };
    let cert_pem = read("certificate", cert, "CERTIFICATE-----")?;
    let key_pem = read("key", key, "PRIVATE KEY-----")?;
    let mut pem = zeroize::Zeroizing::new(Vec::with_capacity(cert_pem.len() + key_pem.len() + 1));
    pem.extend_from_slice(&cert_pem);
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    // reqwest's message names what is missing; it never echoes the key.
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
        CliError::Usage(format!(
            "Error loading client certificate {} and key {}: {e}",
            cert.display(),
            key.display()
        ))
    })?;
    Ok(Some(identity))
}

/// Path of the token helper file, `$HOME/.vault-token`.
pub fn token_helper_path() -> Option<PathBuf> {
    env_nonempty("HOME").map(|h| PathBuf::from(h).join(".vault-token"))
}

fn read_token_helper() -> Option<String> {
    let p = token_helper_path()?;
    let s = std::fs::read_to_string(p).ok()?;
    let t = s.trim().to_string();
    (!t.is_empty()).then_some(t)
}

/// Stores a token in the token helper file with mode 0600.
pub fn write_token_helper(token: &str) -> Result<(), CliError> {
    let p = token_helper_path()
        .ok_or_else(|| CliError::Exit("Error storing token: HOME is not set".into(), 2))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let res = opts.open(&p).and_then(|mut f| {
        use std::io::Write;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(token.as_bytes())
    });
    res.map_err(|e| CliError::Exit(format!("Error storing token: {}: {e}", p.display()), 2))
}

/// A response: status and parsed JSON body (None for empty bodies).
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Parsed body, if any.
    pub body: Option<Value>,
}

impl Response {
    /// `body.data`, if present and not null.
    pub fn data(&self) -> Option<&Value> {
        self.body.as_ref()?.get("data").filter(|d| !d.is_null())
    }
}

/// Thin HTTP client for the `/v1/` API.
pub struct Client {
    http: reqwest::Client,
    /// Resolved configuration.
    pub cfg: Config,
}

impl Client {
    fn new(cfg: Config) -> Result<Client, CliError> {
        let mut b = reqwest::Client::builder();
        if cfg.skip_verify {
            // Only on the user's explicit request (VAULT_SKIP_VERIFY or
            // -tls-skip-verify), as the Vault CLI; never by default.
            eprintln!("WARNING: TLS certificate verification is disabled (VAULT_SKIP_VERIFY); the server's identity is not checked");
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &cfg.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| {
                CliError::Usage(format!(
                    "Error loading CA certificate {}: {e}",
                    ca.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                CliError::Usage(format!(
                    "Error loading CA certificate {}: {e}",
                    ca.display()
                ))
            })?;
            b = b.add_root_certificate(cert);
        }
        if let Some(identity) =
            client_identity(cfg.client_cert.as_deref(), cfg.client_key.as_deref())?
        {
            b = b.identity(identity);
        }
        let http = b
            .build()
            .map_err(|e| CliError::Exit(format!("Error initializing client: {e}"), 2))?;
        Ok(Client { http, cfg })
    }

    /// Full URL for an API path (without the `/v1/` prefix).
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.cfg.addr, path.trim_start_matches('/'))
    }

    /// Sends a request and returns whatever status came back.
    pub async fn send(
        &self,
        context: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Response, CliError> {
        let mut url = self.url(path);
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("X-Vault-Request", "true");
        if let Some(t) = &self.cfg.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(w) = &self.cfg.wrap_ttl {
            req = req.header("X-Vault-Wrap-TTL", w);
        }
        if let Some(b) = body {
            let ct = if method == Method::PATCH {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            req = req.header("Content-Type", ct).body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            let mut root: &dyn std::error::Error = &e;
            while let Some(s) = root.source() {
                root = s;
            }
            let title = method_title(&method);
            let prefix = if context.is_empty() {
                "Error".to_string()
            } else {
                format!("Error {context}")
            };
            CliError::Transport(format!("{prefix}: {title} \"{url}\": {root}"))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| CliError::Transport(format!("Error reading response: {e}")))?;
        let body = if text.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
        };
        Ok(Response { status, body })
    }

    /// Turns a non-2xx response into [`CliError::Api`].
    pub fn check(
        &self,
        context: &str,
        method: Method,
        path: &str,
        r: Response,
    ) -> Result<Response, CliError> {
        if (200..300).contains(&r.status) {
            return Ok(r);
        }
        Err(self.api_error(context, method, path, &r))
    }

    /// Builds the API error for a response.
    pub fn api_error(&self, context: &str, method: Method, path: &str, r: &Response) -> CliError {
        let errors = r
            .body
            .as_ref()
            .and_then(|b| b.get("errors"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        CliError::Api {
            context: context.to_string(),
            method,
            url: self.url(path),
            status: r.status,
            errors,
        }
    }

    /// Sends and requires a 2xx status.
    pub async fn call(
        &self,
        context: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, CliError> {
        let r = self.send(context, method.clone(), path, &[], body).await?;
        self.check(context, method, path, r)
    }

    /// GET that maps 404 to `None` (Vault's "no secret").
    pub async fn read(
        &self,
        context: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Response>, CliError> {
        let r = self.send(context, Method::GET, path, query, None).await?;
        if r.status == 404 {
            // A 404 that still carries data (KV v2 deleted versions) counts.
            let has_data = r.body.as_ref().is_some_and(|b| {
                b.get("data").is_some_and(|d| !d.is_null())
                    || b.get("warnings").is_some_and(|w| !w.is_null())
            });
            return Ok(has_data.then_some(r));
        }
        self.check(context, Method::GET, path, r).map(Some)
    }

    /// LIST via `GET ?list=true`; 404 maps to `None`.
    pub async fn list(&self, context: &str, path: &str) -> Result<Option<Response>, CliError> {
        let p = format!("{}/", path.trim_end_matches('/'));
        let r = self
            .send(context, Method::GET, &p, &[("list", "true".into())], None)
            .await?;
        if r.status == 404 {
            return Ok(None);
        }
        self.check(context, Method::GET, &p, r).map(Some)
    }
}

fn method_title(m: &Method) -> String {
    let s = m.as_str();
    let mut out = s[..1].to_string();
    out.push_str(&s[1..].to_ascii_lowercase());
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads all of stdin as a string.
pub fn read_stdin() -> Result<String, CliError> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::Usage(format!("Error reading from stdin: {e}")))?;
    Ok(s)
}

/// Parses Vault's data arguments: `k=v`, `k=@file`, `k=-` (value from
/// stdin), `@file.json` and `-` (a JSON object from a file or stdin).
pub fn parse_kv_args(args: &[String]) -> Result<Map<String, Value>, CliError> {
    let bad = |m: String| CliError::Usage(format!("Failed to parse K=V data: {m}"));
    let mut out = Map::new();
    for a in args {
        if a == "-" || (a.starts_with('@') && !a.contains('=')) {
            let text = if a == "-" {
                read_stdin()?
            } else {
                std::fs::read_to_string(&a[1..])
                    .map_err(|e| bad(format!("error reading {}: {e}", &a[1..])))?
            };
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| bad(format!("invalid JSON in {a}: {e}")))?;
            match v {
                Value::Object(m) => out.extend(m),
                _ => return Err(bad(format!("{a} does not contain a JSON object"))),
            }
            continue;
        }
        let Some((k, v)) = a.split_once('=') else {
            return Err(bad(format!(
                "invalid key/value pair \"{a}\": format must be key=value"
            )));
        };
        if k.is_empty() {
            return Err(bad(format!("invalid key/value pair \"{a}\": empty key")));
        }
        let value = if let Some(file) = v.strip_prefix('@') {
            std::fs::read_to_string(file).map_err(|e| bad(format!("error reading {file}: {e}")))?
        } else if v == "-" {
            read_stdin()?
        } else {
            v.to_string()
        };
        out.insert(k.to_string(), Value::String(value));
    }
    Ok(out)
}

/// Splits repeatable, comma-separable flag values (`-policy=a,b -policy=c`).
pub fn split_list(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs a client command and returns the process exit code.
pub fn run(cmd: ClientCommand, globals: GlobalArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let cfg = Config::resolve(&globals)?;
        let client = Client::new(cfg)?;
        dispatch(&client, cmd).await
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", e.render());
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(c: &Client, cmd: ClientCommand) -> CmdResult {
    match cmd {
        ClientCommand::Status => operator::status(c).await,
        ClientCommand::Operator(o) => operator::run(c, o).await,
        ClientCommand::Login(a) => login::run(c, a).await,
        ClientCommand::Token(t) => token::run(c, t).await,
        ClientCommand::Kv(k) => kv::run(c, k).await,
        ClientCommand::Secrets(s) => secrets::run(c, s).await,
        ClientCommand::Policy(p) => policy::run(c, p).await,
        ClientCommand::Audit(a) => audit::run(c, a).await,
        ClientCommand::Auth(a) => auth::run(c, a).await,
        ClientCommand::Unwrap(a) => auth::unwrap(c, a).await,
        ClientCommand::Lease(a) => lease::run(c, a).await,
        ClientCommand::Read(a) => generic::read(c, a).await,
        ClientCommand::Write(a) => generic::write(c, a, Method::PUT).await,
        ClientCommand::List(a) => generic::list(c, a).await,
        ClientCommand::Delete(a) => generic::delete(c, a).await,
        ClientCommand::Patch(a) => generic::write(c, a, Method::PATCH).await,
    }
}

/// The closest top-level command name, for "Did you mean …?" hints.
pub fn suggest(word: &str) -> Option<&'static str> {
    closest(word, COMMAND_NAMES)
}

/// The candidate closest to `word` by edit distance, if reasonably close.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn lev(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (lev(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_shared::tls::InternalCa;
    use bulwark_shared::ServiceName;

    fn usage(r: Result<Option<reqwest::Identity>, CliError>) -> String {
        match r {
            Err(CliError::Usage(m)) => m,
            Err(e) => panic!("not a usage error: {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn client_identity_both_or_neither() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = InternalCa::generate()
            .unwrap()
            .issue(ServiceName::Gateway, &[], 1)
            .unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, leaf.key_pem.as_bytes()).unwrap();
        let missing = dir.path().join("missing.pem");

        assert!(client_identity(None, None).unwrap().is_none());
        assert!(client_identity(Some(&cert), Some(&key)).unwrap().is_some());
        let e = usage(client_identity(Some(&cert), None));
        assert!(e.contains("-client-key"), "{e}");
        let e = usage(client_identity(None, Some(&key)));
        assert!(e.contains("-client-cert"), "{e}");
        let e = usage(client_identity(Some(&missing), Some(&key)));
        assert!(
            e.contains("client certificate") && e.contains("missing.pem"),
            "{e}"
        );
        let e = usage(client_identity(Some(&cert), Some(&missing)));
        assert!(e.contains("client key") && e.contains("missing.pem"), "{e}");
        // Swapped files: each names what it lacks, and no key is echoed.
        let e = usage(client_identity(Some(&key), Some(&cert)));
        assert!(e.contains("no CERTIFICATE block"), "{e}");
        assert!(!e.contains("BEGIN"), "{e}");
        let e = usage(client_identity(Some(&cert), Some(&cert)));
        assert!(e.contains("no PRIVATE KEY block"), "{e}");
        // A client with an identity builds.
        let cfg = Config {
            addr: "https://127.0.0.1:8200".into(),
            token: None,
            format: Format::parse("table").unwrap(),
            field: None,
            wrap_ttl: None,
            ca_cert: None,
            skip_verify: false,
            client_cert: Some(cert),
            client_key: Some(key),
        };
        assert!(Client::new(cfg).is_ok());
    }
}
