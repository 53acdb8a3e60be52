//! The `psp-gateway` command: `serve`, `check`, `sign` and `plugin new`.

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
    /// Print the Commerce Layer signature (`X-CommerceLayer-Signature`) of stdin, exactly as
    /// read, with the shared secret from an environment variable (never an argument, which
    /// other users of the machine can see).
    Sign {
        /// The environment variable that holds the shared secret.
        #[arg(long)]
        secret_env: String,
    },
    /// Plugin authoring.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Write a new plugin crate, `<dir>/<NAME>/`, that builds and passes its tests as is.
    New {
        /// Lowercase letters, digits and `-`: the folder, `psp-plugin-<NAME>` and `<NAME>.wasm`.
        name: String,
        /// Where plugin crates live (the workspace finds every crate in `plugins/`).
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("PSP_GATEWAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn,tower_http=warn"));
    // Colour codes only for a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
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
        Command::Sign { secret_env } => sign(&secret_env),
        Command::Plugin {
            command: PluginCommand::New { name, dir },
        } => match psp_gateway::scaffold::new_plugin(&dir, &name) {
            Ok(root) => {
                println!("created {}", root.display());
                println!("next: scripts/build-plugins   (-> plugins/dist/{name}.wasm)");
                println!("      cargo test -p psp-plugin-{name}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn sign(secret_env: &str) -> ExitCode {
    use std::io::Read;
    let secret = match std::env::var(secret_env) {
        Ok(s) if !s.is_empty() => s,
        _ => {
            eprintln!("error: environment variable {secret_env} is not set (or empty)");
            return ExitCode::FAILURE;
        }
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("error: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        psp_gateway::protocol::commerce_layer::sign(&secret, &body)
    );
    ExitCode::SUCCESS
}

async fn check(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            for problem in e.problems() {
                eprintln!("error: {problem}");
            }
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
