//! The `psp-gateway` command: `serve`, `check`, `sign`, `plugin new`, and the operator's
//! client commands `trigger` (one test call, its callback) and `load` (a load run), which
//! use the client crate's Commerce Layer documents, as the end-to-end tests do.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use psp_gateway::config::Config;

/// Requests allocate and free many short-lived buffers on several threads (bodies, parsed
/// documents, plugin calls); mimalloc's thread-local free lists cost far less there than
/// glibc's arenas. Measured by `cl_load` (README, performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Send one test call to a running gateway and print each request's path and the answer;
    /// wait for (and print) the callback of an asynchronous (202) answer.
    Trigger(TriggerArgs),
    /// Send unique signed authorizes to a running gateway at a fixed rate or concurrency and
    /// print throughput, status counts and latency percentiles.
    Load(LoadArgs),
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

/// Where the gateway is and how to sign: what `trigger` and `load` share.
#[derive(clap::Args)]
struct Target {
    /// The gateway's base URL.
    #[arg(long, value_name = "http://HOST:PORT")]
    url: String,
    /// The gateway's id (the `{gateway}` path segment).
    #[arg(long, value_name = "NAME")]
    gateway: String,
    /// The environment variable that holds the shared secret (PGM: the bearer token), never
    /// an argument, which other users of the machine can see.
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
}

#[derive(clap::Args)]
struct TriggerArgs {
    #[command(flatten)]
    target: Target,
    /// Which front to call.
    #[arg(long, value_enum, default_value_t = FrontArg::CommerceLayer)]
    front: FrontArg,
    /// Commerce Layer: authorize, capture, void, refund (each after an authorize), token.
    /// PGM: pay, refund, status (after a pay).
    #[arg(value_enum)]
    action: ActionArg,
    /// Amount in cents (default: the sample order's total, 12200).
    #[arg(long, value_name = "CENTS")]
    amount: Option<i64>,
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// The payment source token; on the sandbox plugin `tok_pending` answers 202.
    #[arg(long, value_name = "TOKEN", default_value = "tok_visa")]
    card_token: String,
    /// Local port to receive callbacks on (default: a free one); the gateway's
    /// `webhook_endpoint_url` (PGM: `pgm_callback_url`) must point to it.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    callback_port: u16,
    /// How long to wait for a callback.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    wait: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum FrontArg {
    CommerceLayer,
    Pgm,
}

#[derive(Clone, Copy, ValueEnum)]
enum ActionArg {
    Authorize,
    Capture,
    Void,
    Refund,
    Token,
    Pay,
    Status,
}

#[derive(clap::Args)]
struct LoadArgs {
    #[command(flatten)]
    target: Target,
    /// Open loop: this many authorizes per second, whatever the answers take.
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "concurrency",
        conflicts_with = "concurrency"
    )]
    rate: Option<u32>,
    /// Closed loop: this many authorizes in flight.
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// minimal: the order alone (about 4 kB); small: the sample order with its includes
    /// (2 lines, about 28 kB); large: a 60-line cart.
    #[arg(long, value_enum, default_value_t = BodySizeArg::Small)]
    body_size: BodySizeArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum BodySizeArg {
    Minimal,
    Small,
    Large,
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
        Command::Trigger(args) => runtime.block_on(trigger(args)),
        Command::Load(args) => runtime.block_on(load(args)),
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

/// The secret named by `--secret-env`: `Ok(None)` when no variable was named, an error
/// message when it is named but unset or empty.
fn secret_from(secret_env: Option<&str>) -> Result<Option<String>, String> {
    let Some(var) = secret_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(s) if !s.is_empty() => Ok(Some(s)),
        _ => Err(format!("environment variable {var} is not set (or empty)")),
    }
}

async fn trigger(args: TriggerArgs) -> ExitCode {
    use psp_gateway_client::trigger::{self, Front, TriggerAction};
    let secret = match secret_from(args.target.secret_env.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = trigger::TriggerOptions {
        url: args.target.url,
        gateway: args.target.gateway,
        secret,
        front: match args.front {
            FrontArg::CommerceLayer => Front::CommerceLayer,
            FrontArg::Pgm => Front::Pgm,
        },
        action: match args.action {
            ActionArg::Authorize => TriggerAction::Authorize,
            ActionArg::Capture => TriggerAction::Capture,
            ActionArg::Void => TriggerAction::Void,
            ActionArg::Refund => TriggerAction::Refund,
            ActionArg::Token => TriggerAction::Token,
            ActionArg::Pay => TriggerAction::Pay,
            ActionArg::Status => TriggerAction::Status,
        },
        amount_cents: args.amount,
        currency: args.currency,
        card_token: args.card_token,
        callback_port: args.callback_port,
        wait: args.wait,
    };
    let mut out = std::io::stdout();
    match trigger::run(&options, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn load(args: LoadArgs) -> ExitCode {
    use psp_gateway_client::load::BodySize;
    use psp_gateway_client::load::command::{self, LoadOptions, Pace};
    let secret = match secret_from(args.target.secret_env.as_deref()) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("error: load signs its calls: give the shared secret with --secret-env");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pace = match (args.rate, args.concurrency) {
        (Some(rate), _) => Pace::Rate(rate),
        (None, Some(concurrency)) => Pace::Concurrency(concurrency),
        // clap requires one of them (`required_unless_present`).
        (None, None) => unreachable!("--rate or --concurrency is required"),
    };
    let options = LoadOptions {
        url: args.target.url,
        gateway: args.target.gateway,
        shared_secret: secret,
        pace,
        duration: args.duration,
        body_size: match args.body_size {
            BodySizeArg::Minimal => BodySize::Minimal,
            BodySizeArg::Small => BodySize::Small,
            BodySizeArg::Large => BodySize::Large,
        },
    };
    match command::run(&options).await {
        Ok(outcome) => {
            print!("{}", outcome.run.report());
            if let Some(n) = outcome.ended_early {
                println!("note: the run sent all {n} pre-built bodies and ended early");
            }
            if outcome.run.errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
