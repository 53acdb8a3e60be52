//! The `psp-gateway` command: `serve` and `check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use psp_gateway::config::Config;

#[derive(Parser)]
#[command(
    version,
    about = "Payment gateway host over sandboxed WebAssembly PSP plugins"
)]
struct Cli {
    /// Log format on stdout.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate a config and the plugins its gateways use; non-zero exit on any problem.
    Check {
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("PSP_GATEWAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Command::Serve { config } => match runtime.block_on(psp_gateway::serve::run(&config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => runtime.block_on(check(config)),
    }
}

async fn check(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plugins = match psp_gateway::plugins::Plugins::start(&config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let problems = psp_gateway::check::gateways(&config, &plugins);
    if problems.is_empty() {
        println!(
            "{}: ok ({} gateway(s), {} plugin(s) loaded)",
            path.display(),
            config.gateways.len(),
            plugins.registry().loaded().len()
        );
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {}: {p}", path.display());
        }
        ExitCode::FAILURE
    }
}
