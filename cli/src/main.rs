//! `bulwark`: the server (`bulwark server`, any set of services), the tools
//! around it, and the Vault-compatible client commands (`status`, `kv`,
//! `token`, …; see [`client`]). Parses arguments, then hands over to the
//! library modules.

#![forbid(unsafe_code)]

mod args;
mod certs;
mod client;
mod mlock;
mod server;

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: glibc's cost per allocation grew with
/// the heap (a million stored kv entries took a third off read throughput,
/// `_int_malloc` led the profile), and it kept freed blocks in per-thread
/// arenas. Safe to declare: the allocator's own code holds the `unsafe`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bulwark",
    version,
    about = "A secrets manager that speaks the Vault HTTP API"
)]
struct Cli {
    #[command(flatten)]
    globals: client::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Bulwark services (all of them by default, or those named by --target).
    Server(server::ServerArgs),
    /// Create the internal CA and one certificate per service in a directory.
    Certs(certs::CertsArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

fn main() -> ExitCode {
    let argv = args::normalize(std::env::args());
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &argv),
    };
    match cli.command {
        Command::Server(a) => server::run(a),
        Command::Certs(a) => certs::run(a),
        Command::Client(c) => client::run(c, cli.globals),
    }
}

/// Vault exits 1 on usage errors (0 for `-h`/`-version`) and suggests the
/// closest command when the name is unknown.
fn usage_error(e: clap::Error, argv: &[String]) -> ExitCode {
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
        ErrorKind::InvalidSubcommand => {
            let word = match e.get(ContextKind::InvalidSubcommand) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let top_level = argv.iter().skip(1).find(|a| !a.starts_with('-')) == Some(&word);
            let clap_hints: Vec<String> = match e.get(ContextKind::SuggestedSubcommand) {
                Some(ContextValue::String(s)) => vec![s.clone()],
                Some(ContextValue::Strings(v)) => v.clone(),
                _ => Vec::new(),
            };
            let refs: Vec<&str> = clap_hints.iter().map(String::as_str).collect();
            let hint = if top_level {
                client::suggest(&word)
            } else {
                client::closest(&word, &refs).or(refs.first().copied())
            };
            if let Some(s) = hint {
                eprintln!("\nDid you mean \"{s}\"?");
            }
            ExitCode::from(1)
        }
        _ => ExitCode::from(1),
    }
}
