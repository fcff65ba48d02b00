//! `bulwark`: the server (`bulwark server`, any set of services) and the
//! tools around it. Parses arguments, then hands over to the library modules.

#![forbid(unsafe_code)]

mod args;
mod certs;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bulwark",
    version,
    about = "A secrets manager that speaks the Vault HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Bulwark services (all of them by default, or those named by --target).
    Server(server::ServerArgs),
    /// Create the internal CA and one certificate per service in a directory.
    Certs(certs::CertsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from(args::normalize(std::env::args()));
    match cli.command {
        Command::Server(a) => server::run(a),
        Command::Certs(a) => certs::run(a),
    }
}
