//! The command line (PRODUCT.md §2): `run` (default), `check`, `demo`.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};

use tango_gateway::{app, config, demo, stack, telemetry, upstream};

#[derive(Debug, Parser)]
#[command(
    name = "tango-gateway",
    version,
    about = "Secure outbound gateway for the Tango rewards API"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default command).
    Run(ConfigArg),
    /// Load and validate everything without serving; print a summary with no secret in it.
    Check(ConfigArg),
    /// Run the whole pipeline against an embedded stand-in for Tango, with no setup.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The YAML configuration file.
    #[arg(
        long,
        env = "TANGO_GATEWAY_CONFIG",
        default_value = "config/gateway.yaml"
    )]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the demo running for your own curl calls until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    upstream::tls::provider();
    match cli.command {
        None => runtime.block_on(run(cli.config.config)),
        Some(Command::Run(arg)) => runtime.block_on(run(arg.config)),
        Some(Command::Check(arg)) => check(arg.config),
        Some(Command::Demo(args)) => runtime.block_on(demo_command(args.serve)),
    }
}

fn load(path: &Path) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn run(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    telemetry::init(config.log.format, &config.log.level);
    match app::start(config).await {
        Ok(running) => {
            running.run_until_signal().await;
            ExitCode::SUCCESS
        }
        Err(err @ app::StartError::Build(_)) => {
            eprintln!("{}: {err}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn check(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Building the stack also builds every TLS client, which checks what loading cannot.
    if let Err(err) = stack::build(&config) {
        eprintln!("{}: {err}", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    print!("{}", config::summary(&config, SystemTime::now()));
    println!("{}: OK", path.display());
    ExitCode::SUCCESS
}

async fn demo_command(serve: bool) -> ExitCode {
    match demo::run(serve).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo failed: {err:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
