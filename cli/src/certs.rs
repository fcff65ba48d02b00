//! `bulwark certs`: the internal CA and one certificate per service, for
//! deployments where each process gets only its own key.

use std::path::PathBuf;
use std::process::ExitCode;

use bulwark_shared::config::parse_targets;
use bulwark_shared::tls::ensure_certs;

#[derive(clap::Args)]
pub struct CertsArgs {
    /// Directory to write `ca.pem`, `ca-key.pem`, `<service>.pem`, `<service>-key.pem` into.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
    /// Services to issue certificates for (comma-separated, or `all`).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub services: Vec<String>,
    /// Extra DNS names or IP addresses for every certificate (repeatable).
    #[arg(long = "hostname")]
    pub hostnames: Vec<String>,
}

pub fn run(a: CertsArgs) -> ExitCode {
    let services = match parse_targets(&a.services) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    };
    match ensure_certs(&a.dir, &services, &a.hostnames) {
        Ok(()) => {
            println!(
                "Certificates for {} service(s) are in {}",
                services.len(),
                a.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(2)
        }
    }
}
