//! The command line (PRODUCT.md §2): `run` (default), `check`, `demo`, `doctor`, the key tools
//! `certs client`, `certs dev`, `dpop keygen`, and `audit verify` (§10) (whose logic lives in
//! `tango_gateway::tools`).
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tango_sandbox::pki::KeyKind;

use tango_gateway::tools::{self, ToolError};
use tango_gateway::{app, config, demo, doctor, stack, systemd, telemetry, upstream};

/// `--version`: the package version and the commit it was built from (see `build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TANGO_GATEWAY_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "tango-gateway",
    version = VERSION,
    about = "Secure outbound gateway for the Tango rewards API"
)]
pub(crate) struct Cli {
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
    /// Check a real deployment step by step: DNS, TCP, TLS, client certificate, token, one call.
    Doctor(DoctorArgs),
    /// Make mTLS keys and certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Make DPoP keys.
    #[command(subcommand)]
    Dpop(DpopCommand),
    /// Print the JSON Schema of the configuration file (for editors and CI).
    Schema,
    /// Check order audit files.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit file's hash chain: exit 0 when intact, 1 naming the first bad line.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
struct AuditVerifyArgs {
    /// The audit file (`audit.path`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Make a client key, a CSR and a self-signed certificate to hand to Tango for mTLS.
    Client(CertsClientArgs),
    /// Make a throwaway CA, server and client certificates for local testing.
    Dev(CertsDevArgs),
}

#[derive(Debug, Args)]
struct CertsClientArgs {
    /// The key algorithm.
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    key_type: KeyType,
    /// A common name, or a full DN when it contains `=` (e.g. CN=svc,O=Acme,C=US).
    #[arg(long)]
    subject: String,
    /// Validity in days (at most 365).
    #[arg(long, default_value_t = tools::MAX_CLIENT_DAYS)]
    days: u32,
    /// Directory for client.key, client.csr and client.pem (created when missing).
    #[arg(long)]
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct CertsDevArgs {
    /// Directory for ca.pem, ca.key, server.pem, server.key, client.pem, client.key.
    #[arg(long)]
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyType {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "rsa-2048")]
    Rsa2048,
}

impl From<KeyType> for KeyKind {
    fn from(key: KeyType) -> Self {
        match key {
            KeyType::EcdsaP256 => KeyKind::EcdsaP256,
            KeyType::Rsa2048 => KeyKind::Rsa2048,
        }
    }
}

#[derive(Debug, Subcommand)]
enum DpopCommand {
    /// Make a P-256 private key for DPoP (PKCS#8 PEM, mode 0600); print its public JWK and
    /// JWK thumbprint.
    Keygen(DpopKeygenArgs),
}

#[derive(Debug, Args)]
struct DpopKeygenArgs {
    /// The key file to write (its directory is created when missing).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
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
struct DoctorArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Check this route only (by name); every route otherwise.
    #[arg(long)]
    route: Option<String>,
    /// The harmless GET of the authenticated call, under the route's path_prefix (default:
    /// the prefix joined with `catalogs`).
    #[arg(long)]
    path: Option<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the demo running for your own curl calls until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

const EXIT_RUNTIME: u8 = 1;
/// A usage or configuration error.
const EXIT_CONFIG: u8 = 2;

pub(crate) fn main() -> ExitCode {
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
        Some(Command::Schema) => {
            println!("{}", config::schema_json());
            ExitCode::SUCCESS
        }
        Some(Command::Demo(args)) => runtime.block_on(demo_command(args.serve)),
        Some(Command::Doctor(args)) => runtime.block_on(doctor_command(args)),
        Some(Command::Certs(CertsCommand::Client(args))) => {
            report(tools::client(&tools::ClientRequest {
                key: args.key_type.into(),
                subject: args.subject,
                days: args.days,
                out: args.out,
                force: args.force,
            }))
        }
        Some(Command::Certs(CertsCommand::Dev(args))) => report(tools::dev(&args.out, args.force)),
        Some(Command::Dpop(DpopCommand::Keygen(args))) => {
            report(tools::keygen(&args.out, args.force))
        }
        Some(Command::Audit(AuditCommand::Verify(args))) => audit_verify(&args.file),
    }
}

/// `audit verify`: exit 0 when the chain is intact, 1 when it is not or the file cannot be
/// read (a runtime failure: the command line itself was fine).
fn audit_verify(file: &Path) -> ExitCode {
    match tools::audit::verify(file) {
        Ok(report) => {
            println!(
                "audit: {}: {} lines, chain intact",
                file.display(),
                report.lines
            );
            // The chain cannot show lost or edited last lines; this, recorded elsewhere, can.
            println!(
                "audit: {}: last line sha256 {}",
                file.display(),
                report.head
            );
            ExitCode::SUCCESS
        }
        // It names the path itself.
        Err(err @ tools::audit::VerifyError::Unreadable { .. }) => {
            eprintln!("audit: {err}");
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(err) => {
            eprintln!("audit: {}: {err}", file.display());
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Prints what a key tool did, or why it did not (usage errors exit 2, failures 1).
fn report<T: std::fmt::Display>(outcome: Result<T, ToolError>) -> ExitCode {
    match outcome {
        Ok(done) => {
            print!("{done}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(if err.is_usage() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            })
        }
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
    let _log = telemetry::init(config.log.format, &config.log.level);
    let traces = match config
        .telemetry
        .otlp
        .as_ref()
        .map(start_tracing)
        .transpose()
    {
        Ok(traces) => traces.flatten(),
        Err(err) => {
            eprintln!("{}: {err}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Only `run` talks to systemd (Type=notify in deploy/systemd/tango-gateway.service).
    systemd::enable();
    match app::start(config).await {
        Ok(running) => {
            running.run_until_signal().await;
            if let Some(traces) = traces {
                // The last spans, after the drain; blocking, so off the runtime's workers.
                let flushed =
                    tokio::task::spawn_blocking(move || traces.shutdown(TRACE_FLUSH_LIMIT));
                let _ = flushed.await;
            }
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

/// How long exit waits for the last spans to reach the collector (§13).
const TRACE_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Turns trace export on (`telemetry.otlp`): export requests run on this runtime; an
/// `https` collector is verified like an upstream (system roots, aws-lc-rs).
fn start_tracing(otlp: &config::OtlpConfig) -> Result<Option<telemetry::otel::OtelGuard>, String> {
    let tls = match upstream::tls::client_config(&config::TlsConfig::default()) {
        Ok(tls) => tls,
        Err(err) if otlp.endpoint.starts_with("https:") => {
            return Err(format!("telemetry.otlp.endpoint: {err}"))
        }
        // A plain-http collector needs no trust anchor; none is given, so https fails closed.
        Err(_) => rustls::ClientConfig::builder_with_provider(upstream::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    telemetry::otel::init(otlp, tokio::runtime::Handle::current(), tls)
        .map_err(|err| err.to_string())
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
    // Valid, but likely to fail against Tango or unsafe as it is: said, exit code unchanged.
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let secret_files = config::secret_files(&path, &env);
    for warning in config::warnings(&config, &secret_files, SystemTime::now()) {
        eprintln!("warning: {}: {warning}", path.display());
    }
    println!("{}: OK", path.display());
    ExitCode::SUCCESS
}

/// Prints each step as it ends, then the summary; exit 1 when a step failed.
async fn doctor_command(args: DoctorArgs) -> ExitCode {
    let config = match load(&args.config.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let options = doctor::Options {
        route: args.route,
        path: args.path,
    };
    let printed = doctor::run_with(&config, &options, |progress| match progress {
        doctor::Progress::Route(route) => println!("{}", route.header()),
        doctor::Progress::Step(step) => print!("{step}"),
    })
    .await;
    match printed {
        Ok(report) => {
            println!("{}", report.summary());
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
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
