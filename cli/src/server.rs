//! `bulwark server`: runs any set of services in one process.
//!
//! Services are started in dependency order (seal first, the gateway last) and
//! stopped together. Services in the same process still talk to each other
//! over mTLS gRPC on loopback, exactly as separate processes do.
//!
//! * `-dev`: every service, SQLite in memory, certificates generated in
//!   memory, initialized with one share and unsealed, root token printed.
//! * `-config FILE`: what the file says (storage, listener, cluster
//!   addresses, certificate directory), starting uninitialized or sealed.
//!   The gateway serves HTTPS unless the listener says `tls_disable = true`
//!   (`-dev` always serves plain HTTP).
//! * `--target=seal,kv`: only these services (overrides the file's `target`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use base64::Engine as _;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_proto::seal::v1::{InitRequest, UnsealRequest};
use bulwark_shared::config::{
    parse_targets, ListenerTls, SealSettings, ServerConfig, TelemetryConfig,
};
use bulwark_shared::grpc::{self, Channel};
use bulwark_shared::storage::{Database, StorageConfig};
use bulwark_shared::telemetry::{self, LogFormat, LogLevelHandle, TelemetrySettings, TraceExport};
use bulwark_shared::tls::{ensure_certs, InternalCa, ServiceIdentity};
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Development mode: everything in memory, initialized, unsealed.
    #[arg(long)]
    pub dev: bool,
    /// Root token to create in dev mode (default: random).
    #[arg(long = "dev-root-token-id", env = "VAULT_DEV_ROOT_TOKEN_ID")]
    pub dev_root_token_id: Option<String>,
    /// HTTP address in dev mode.
    #[arg(
        long = "dev-listen-address",
        env = "VAULT_DEV_LISTEN_ADDRESS",
        default_value = "127.0.0.1:8200"
    )]
    pub dev_listen_address: String,
    /// Server configuration file (HCL).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Services to run: `all`, or a comma-separated list (seal, auth, policy,
    /// kv, dynamic-db, pki, audit, transit, gateway).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// Log level (trace, debug, info, warn, error).
    #[arg(long = "log-level", env = "VAULT_LOG_LEVEL")]
    pub log_level: Option<String>,
}

enum Certs {
    /// Generated in memory for this process only (dev mode).
    Memory(BTreeMap<ServiceName, ServiceIdentity>),
    /// Read from a directory (created there if missing).
    Dir(PathBuf),
}

struct Plan {
    targets: Vec<ServiceName>,
    storage: StorageConfig,
    http_address: String,
    /// HTTPS certificate and key of the gateway's listener (`None`: HTTP).
    http_tls: Option<ListenerTls>,
    addresses: BTreeMap<ServiceName, Vec<String>>,
    certs: Certs,
    dev_root_token: Option<String>,
    log_level: String,
    log_format: LogFormat,
    telemetry: TelemetryConfig,
    /// The file given with -config (SIGHUP reads it again).
    config_path: Option<PathBuf>,
    /// `seal "static"` (its key read) or `seal "transit"` (its token and
    /// files read); only when this process runs seal.
    seal: Option<SealSettings>,
    /// The gateway's bound on requests in flight (`max_request_in_flight`).
    max_request_in_flight: usize,
    /// The deadline of each call to another service (`default_max_request_duration`).
    rpc_deadline: std::time::Duration,
    /// Serve the web UI at `/ui` (`ui = true`; always in dev mode).
    ui: bool,
    /// Lock the process's memory (not in dev mode, nor with
    /// `disable_mlock = true`).
    mlock: bool,
}

impl Plan {
    fn dev(a: &ServerArgs) -> anyhow::Result<Plan> {
        let ca = InternalCa::generate()?;
        let mut ids = BTreeMap::new();
        for name in ServiceName::ALL {
            let leaf = ca.issue(name, &[], 365)?;
            ids.insert(
                name,
                ServiceIdentity::from_pem(
                    name,
                    leaf.cert_pem,
                    leaf.key_pem,
                    ca.cert_pem().to_string(),
                ),
            );
        }
        let targets = if a.target.is_empty() {
            ServiceName::ALL.to_vec()
        } else {
            parse_targets(&a.target).map_err(|e| anyhow!(e))?
        };
        Ok(Plan {
            targets,
            storage: StorageConfig::Memory,
            http_address: a.dev_listen_address.clone(),
            http_tls: None,
            addresses: BTreeMap::new(),
            certs: Certs::Memory(ids),
            dev_root_token: Some(a.dev_root_token_id.clone().unwrap_or_default()),
            log_level: a.log_level.clone().unwrap_or_else(|| "info".into()),
            log_format: LogFormat::Text,
            telemetry: TelemetryConfig::default(),
            config_path: None,
            seal: None,
            max_request_in_flight: bulwark_shared::config::DEFAULT_MAX_REQUEST_IN_FLIGHT,
            rpc_deadline: bulwark_shared::config::DEFAULT_MAX_REQUEST_DURATION,
            ui: true,
            mlock: false,
        })
    }

    fn from_config(a: &ServerArgs, path: &std::path::Path) -> anyhow::Result<Plan> {
        let cfg = ServerConfig::load(path)?;
        let targets = if a.target.is_empty() {
            cfg.targets
        } else {
            parse_targets(&a.target).map_err(|e| anyhow!("--target: {e}"))?
        };
        for name in ServiceName::ALL {
            if name != ServiceName::Gateway
                && !targets.contains(&name)
                && !cfg.addresses.contains_key(&name)
            {
                return Err(anyhow!(
                    "{}: cluster: service {name} is not run by this process, so its address is required",
                    path.display()
                ));
            }
        }
        // Only the seal service needs the seal key (or transit token): read
        // (and checked) here, before anything starts, by that process only.
        let seal = match &cfg.seal {
            Some(s) if targets.contains(&ServiceName::Seal) => Some(s.load()?),
            _ => None,
        };
        Ok(Plan {
            seal,
            max_request_in_flight: cfg.max_request_in_flight,
            rpc_deadline: cfg.default_max_request_duration,
            ui: cfg.ui,
            mlock: !cfg.disable_mlock,
            targets,
            storage: cfg.storage,
            http_address: cfg.http_address,
            http_tls: cfg.http_tls,
            addresses: cfg.addresses,
            certs: Certs::Dir(cfg.cert_dir),
            dev_root_token: None,
            log_level: a.log_level.clone().unwrap_or(cfg.log_level),
            log_format: cfg.log_format,
            telemetry: cfg.telemetry,
            config_path: Some(path.to_path_buf()),
        })
    }

    /// What this process is called in metrics (`process` label) and traces
    /// (`service.name`): `all`/`bulwark` for every service, else the
    /// services it runs (`kv`/`bulwark-kv`).
    fn process_name(&self) -> String {
        if self.targets.len() == ServiceName::ALL.len() {
            "all".into()
        } else {
            let names: Vec<&str> = self.targets.iter().map(|n| n.as_str()).collect();
            names.join("+")
        }
    }

    fn telemetry_settings(&self) -> TelemetrySettings {
        let process = self.process_name();
        TelemetrySettings {
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            service_name: if process == "all" {
                "bulwark".into()
            } else {
                format!("bulwark-{process}")
            },
            export: self.telemetry.export.clone().or_else(TraceExport::from_env),
        }
    }

    fn identity(&self, name: ServiceName) -> anyhow::Result<ServiceIdentity> {
        match &self.certs {
            Certs::Memory(ids) => ids.get(&name).cloned().context("no identity"),
            Certs::Dir(dir) => Ok(ServiceIdentity::load(dir, name)?),
        }
    }
}

pub fn run(a: ServerArgs) -> ExitCode {
    let plan = match (a.dev, &a.config) {
        (true, _) => Plan::dev(&a),
        (false, Some(path)) => Plan::from_config(&a, path),
        (false, None) => Err(anyhow!(
            "a configuration file must be given with -config, or use -dev"
        )),
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::from(64);
        }
    };
    if plan.mlock {
        if let Err(e) = crate::mlock::lock_all() {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    bulwark_shared::metrics::set_process_name(&plan.process_name());
    let guard = match telemetry::init(&plan.telemetry_settings(), rt.handle()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("Error: telemetry: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(serve(plan, guard.log_level_handle()));
    // Flush the spans still queued while the runtime (and the exporter's
    // connection on it) still runs.
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(plan: Plan, log_level: Option<LogLevelHandle>) -> anyhow::Result<()> {
    if let Certs::Dir(dir) = &plan.certs {
        ensure_certs(dir, &plan.targets, &[])
            .with_context(|| format!("certificates in {}", dir.display()))?;
    }
    // Read the HTTPS certificate before anything starts, so a bad file fails
    // the start-up at once.
    let (http_tls, cert_reloader) = match &plan.http_tls {
        Some(t) if plan.targets.contains(&ServiceName::Gateway) => {
            use bulwark_gateway::listener::ClientAuth;
            let client_auth = match &t.client_ca_file {
                Some(ca) => ClientAuth::Verify {
                    ca_file: ca.clone(),
                    required: t.require_client_cert,
                },
                None => ClientAuth::Request,
            };
            let (config, reloader) = bulwark_gateway::listener::reloadable_tls_config(
                &t.cert_file,
                &t.key_file,
                &client_auth,
            )
            .context("listener \"tcp\"")?;
            (Some(config), Some(reloader))
        }
        _ => (None, None),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };

    // Bind every gRPC listener of this process first, so that all addresses
    // are known before anything connects.
    let mut listeners = BTreeMap::new();
    let mut addresses = plan.addresses.clone();
    for &name in plan.targets.iter().filter(|n| **n != ServiceName::Gateway) {
        // A replicated service's process listens on the first address of
        // its list (each replica's config names itself first).
        let bind = plan
            .addresses
            .get(&name)
            .and_then(|a| a.first())
            .map_or("127.0.0.1:0", String::as_str);
        let l = TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen for {name} on {bind}"))?;
        let actual = l.local_addr()?.to_string();
        addresses.entry(name).or_insert_with(|| vec![actual]);
        listeners.insert(name, l);
    }
    // Every service keeps data but the ones not built yet (they only hold a key).
    let needs_storage = plan.targets.iter().any(|n| {
        matches!(
            n,
            ServiceName::Seal
                | ServiceName::Auth
                | ServiceName::Policy
                | ServiceName::Kv
                | ServiceName::Audit
                | ServiceName::DynamicDb
                | ServiceName::Pki
                | ServiceName::Transit
                | ServiceName::Gateway
        )
    });
    let db = if needs_storage {
        Some(Database::connect(&plan.storage).await.context("storage")?)
    } else {
        None
    };
    let channel = |from: &ServiceIdentity, to: ServiceName| -> anyhow::Result<Channel> {
        let addrs = addresses
            .get(&to)
            .with_context(|| format!("no address for service {to}"))?;
        Ok(grpc::connect_replicas_with_deadline(
            from,
            to,
            addrs,
            plan.rpc_deadline,
        )?)
    };

    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut http_addr = None;
    let mut gateway = None;
    for &name in &plan.targets {
        let id = plan.identity(name)?;
        match name {
            ServiceName::Seal => {
                let listener = listeners.remove(&name).context("seal listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = plan.seal.clone();
                // A seal block that does not match the storage stops the start here.
                bulwark_seal::check_seal_config(&db, seal.as_ref()).await?;
                let stop = stopped();
                tasks.spawn(
                    async move { Ok(bulwark_seal::serve(id, db, seal, listener, stop).await?) },
                );
            }
            ServiceName::Auth => {
                let listener = listeners.remove(&name).context("auth listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = channel(&id, ServiceName::Seal)?;
                // The lease registry calls the engines that issued secrets.
                let dynamic_db = channel(&id, ServiceName::DynamicDb)?;
                let stop = stopped();
                tasks.spawn(async move {
                    Ok(bulwark_auth::serve(id, db, seal, dynamic_db, listener, stop).await?)
                });
            }
            ServiceName::Policy => {
                let listener = listeners.remove(&name).context("policy listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = channel(&id, ServiceName::Seal)?;
                let stop = stopped();
                tasks.spawn(async move {
                    Ok(bulwark_policy::serve(id, db, seal, listener, stop).await?)
                });
            }
            ServiceName::Kv => {
                let listener = listeners.remove(&name).context("kv listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = channel(&id, ServiceName::Seal)?;
                let auth = channel(&id, ServiceName::Auth)?;
                let stop = stopped();
                tasks.spawn(async move {
                    Ok(bulwark_kv::serve(id, db, seal, auth, listener, stop).await?)
                });
            }
            ServiceName::Audit => {
                let listener = listeners.remove(&name).context("audit listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = channel(&id, ServiceName::Seal)?;
                let stop = stopped();
                tasks.spawn(async move {
                    Ok(bulwark_audit::serve(id, db, seal, listener, stop).await?)
                });
            }
            ServiceName::Gateway => {
                let gw = bulwark_gateway::Gateway::new(
                    bulwark_gateway::Upstreams {
                        seal: channel(&id, ServiceName::Seal)?,
                        auth: channel(&id, ServiceName::Auth)?,
                        policy: channel(&id, ServiceName::Policy)?,
                        kv: channel(&id, ServiceName::Kv)?,
                        audit: channel(&id, ServiceName::Audit)?,
                        dynamic_db: channel(&id, ServiceName::DynamicDb)?,
                        pki: channel(&id, ServiceName::Pki)?,
                        transit: channel(&id, ServiceName::Transit)?,
                    },
                    db.as_ref().context("no storage configured")?,
                )
                .await?;
                gw.allow_unauthenticated_metrics(plan.telemetry.unauthenticated_metrics_access);
                gw.set_max_request_in_flight(plan.max_request_in_flight);
                gw.enable_ui(plan.ui);
                gateway = Some(gw.clone());
                let http = TcpListener::bind(&plan.http_address)
                    .await
                    .with_context(|| format!("cannot listen for HTTP on {}", plan.http_address))?;
                http_addr = Some(http.local_addr()?);
                let ready = gw.clone();
                let stop = stopped();
                match http_tls.clone() {
                    Some(tls) => tasks.spawn(async move {
                        Ok(bulwark_gateway::listener::serve_tls(http, gw, tls, stop).await?)
                    }),
                    None => tasks
                        .spawn(async move { Ok(bulwark_gateway::serve(http, gw, stop).await?) }),
                };
                // Serve only once the gateway knows the seal state.
                tokio::time::timeout(std::time::Duration::from_secs(30), ready.wait_connected())
                    .await
                    .context("the seal service did not answer within 30s")?;
            }
            ServiceName::DynamicDb => {
                let listener = listeners.remove(&name).context("dynamic-db listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = channel(&id, ServiceName::Seal)?;
                let stop = stopped();
                tasks.spawn(async move {
                    Ok(bulwark_dynamic_db::serve(id, db, seal, listener, stop).await?)
                });
            }
            ServiceName::Pki => {
                let listener = listeners.remove(&name).context("pki listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = channel(&id, ServiceName::Seal)?;
                let stop = stopped();
                tasks.spawn(
                    async move { Ok(bulwark_pki::serve(id, db, seal, listener, stop).await?) },
                );
            }
            ServiceName::Transit => {
                let listener = listeners.remove(&name).context("transit listener")?;
                let db = db.clone().context("no storage configured")?;
                let seal = channel(&id, ServiceName::Seal)?;
                let stop = stopped();
                tasks.spawn(async move {
                    Ok(bulwark_transit::serve(id, db, seal, listener, stop).await?)
                });
            }
        }
    }

    // SIGHUP: the log level from the config file again, and the HTTPS
    // listener's certificate and key (open connections keep going).
    #[cfg(unix)]
    {
        let config_path = plan.config_path.clone();
        let stop = stopped();
        tasks.spawn(async move {
            on_hangup(config_path, log_level, cert_reloader, stop).await;
            Ok(())
        });
    }

    let mut metrics_addr = None;
    if let Some(addr) = &plan.telemetry.metrics_address {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        metrics_addr = Some(l.local_addr()?);
        let stop = stopped();
        tasks.spawn(async move { Ok(bulwark_gateway::observe::serve_metrics(l, stop).await?) });
    }

    if let Some(root_token_id) = &plan.dev_root_token {
        let id = plan.identity(ServiceName::Gateway)?;
        let (key, token) = dev_bootstrap(channel(&id, ServiceName::Seal)?, root_token_id).await?;
        if let Some(gw) = &gateway {
            gw.mount_kv("secret", 2)
                .await
                .map_err(|e| anyhow!("dev mode: mounting secret/: {:?}", e.errors))?;
        }
        print_dev_banner(http_addr, &key, &token);
    }
    println!("==> Bulwark server configuration:\n");
    for (name, addrs) in &addresses {
        if plan.targets.contains(name) {
            println!("{:>16}: {}", format!("gRPC {name}"), addrs[0]);
        }
    }
    println!("{:>16}: {}", "Storage", storage_kind(&plan.storage));
    if let Some(a) = http_addr {
        let (scheme, tls) = if http_tls.is_some() {
            ("https", "enabled")
        } else {
            ("http", "disabled")
        };
        println!("{:>16}: tcp (addr: \"{a}\", tls: \"{tls}\")", "Listener 1");
        println!("     Api Address: {scheme}://{a}");
    }
    if let Some(a) = metrics_addr {
        println!("{:>16}: http://{a}/metrics", "Metrics");
    }
    if let Some(e) = &plan.telemetry_settings().export {
        println!(
            "{:>16}: {} ({:?}, sampling {})",
            "Traces (OTLP)", e.endpoint, e.protocol, e.sampling_ratio
        );
    }
    println!("\n==> Bulwark server started! Log data will stream in below:\n");

    let result = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(())) => Err(anyhow!("a service stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow!("a service crashed: {e}")),
        },
    };
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if let Some(db) = db {
        db.close().await;
    }
    result
}

/// Reloads what SIGHUP reloads, until `stop`.
#[cfg(unix)]
async fn on_hangup(
    config_path: Option<PathBuf>,
    log_level: Option<LogLevelHandle>,
    certs: Option<bulwark_gateway::listener::CertReloader>,
    stop: impl std::future::Future<Output = ()>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        stop.await;
        return;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            got = hangups.recv() => if got.is_none() { (&mut stop).await; return },
        }
        if let (Some(path), Some(handle)) = (&config_path, &log_level) {
            match ServerConfig::load(path) {
                Ok(cfg) => match handle.set(&cfg.log_level) {
                    Ok(()) => tracing::info!(level = %cfg.log_level, "SIGHUP: log level applied"),
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: log level not changed"),
                },
                Err(e) => tracing::warn!(error = %e, "SIGHUP: configuration not reloaded"),
            }
        }
        if let Some(r) = &certs {
            match r.reload() {
                Ok(()) => tracing::info!("SIGHUP: listener certificate reloaded"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: listener certificate kept"),
            }
        }
    }
}

fn storage_kind(s: &StorageConfig) -> &'static str {
    match s {
        StorageConfig::Sqlite { .. } => "sqlite",
        StorageConfig::SqliteMemory => "inmem (sqlite)",
        StorageConfig::Memory => "inmem",
        StorageConfig::Postgres { .. } => "postgresql",
    }
}

/// Dev mode: initialize with a single share and unseal at once.
async fn dev_bootstrap(
    seal: Channel,
    root_token_id: &str,
) -> anyhow::Result<(Zeroizing<Vec<u8>>, String)> {
    let mut seal = SealClient::new(seal);
    let out = seal
        .init(InitRequest {
            secret_shares: 1,
            secret_threshold: 1,
            root_token_id: root_token_id.to_string(),
            ..InitRequest::default()
        })
        .await
        .map_err(|s| anyhow!("dev init: {}", s.message()))?
        .into_inner();
    let key = Zeroizing::new(out.keys.into_iter().next().context("no key share")?);
    seal.unseal(UnsealRequest {
        key: key.to_vec(),
        reset: false,
    })
    .await
    .map_err(|s| anyhow!("dev unseal: {}", s.message()))?;
    Ok((key, out.root_token))
}

fn print_dev_banner(addr: Option<std::net::SocketAddr>, key: &[u8], token: &str) {
    let addr = addr.map(|a| a.to_string()).unwrap_or_default();
    println!(
        "WARNING! dev mode is enabled! In this mode, Bulwark runs entirely in-memory\n\
         and starts unsealed with a single unseal key. The root token is already\n\
         authenticated to the CLI, so you can immediately begin using Bulwark.\n\n\
         You may need to set the following environment variables:\n\n    \
         $ export VAULT_ADDR='http://{addr}'\n\n\
         The unseal key and root token are displayed below in case you want to\n\
         seal/unseal the Vault or re-authenticate.\n\n\
         Unseal Key: {}\n\
         Root Token: {token}\n\n\
         Development mode should NOT be used in production installations!\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
}
