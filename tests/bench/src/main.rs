//! `bulwark-bench`: see the crate documentation and README.md.

use std::process::ExitCode;

use bulwark_bench::cli::Args;

fn main() -> ExitCode {
    let args = Args::from_env();
    let (format, out) = (args.format.clone(), args.out.clone());
    let cfg = match args.into_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("bulwark-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bulwark-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(bulwark_bench::run(&cfg)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("bulwark-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &out {
        if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
            eprintln!("bulwark-bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if format == "json" {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
        if cfg.setup_only {
            println!("\nset up under prefix {} (left in place):", report.prefix);
            for c in &report.created {
                println!("  {c}");
            }
        }
    }
    ExitCode::SUCCESS
}
