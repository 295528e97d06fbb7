//! `soak`: the fault-injection soak of tango-gateway (run it through `bench/soak`).
//!
//! Stands up on 127.0.0.1 two fake Tangos (a Basic route, an OAuth + DPoP route), a real
//! `redis-server` and two replicas of the real gateway binary sharing tokens through it;
//! drives a steady mixed load at both replicas while a fault schedule (`schedule`) breaks
//! the upstream, the token endpoint, Redis and the gateway itself; then reports per fault
//! window and in total, and ends with exactly one summary line:
//! `soak: CALLS calls, UNEXPECTED unexpected failures, DUPLICATES duplicate orders, SECRETS
//! secrets in output` — exit 0 only when the last three are 0.
//!
//! Modules: `world` (what runs), `procs` (child processes), `schedule` (when each fault
//! runs), `faults` (what each does), `load` (the callers), `observe` (what Tango saw),
//! `tally` (which failures the contract allows), `secrets` (the output scan).

mod faults;
mod load;
mod observe;
mod procs;
mod schedule;
mod secrets;
mod tally;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use observe::Observed;
use world::World;

pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How many unexpected calls, overlapping orders and findings are printed in full.
const SHOW: usize = 25;

struct Args {
    duration: Duration,
    gateway_bin: PathBuf,
    callers: usize,
    pause: Duration,
    log_level: String,
    keep_logs: bool,
}

const USAGE: &str = "usage: soak [--duration SECS] [--gateway-bin PATH] [--callers N] \
                     [--pause-ms MS] [--log-level LEVEL] [--keep-logs]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        duration: Duration::from_secs(60),
        gateway_bin: PathBuf::from("target/release/tango-gateway"),
        callers: 12,
        pause: Duration::from_millis(40),
        log_level: "info".to_owned(),
        keep_logs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value; {USAGE}"))
        };
        match arg.as_str() {
            "--duration" => {
                let v = value()?;
                let secs: u64 = v.trim_end_matches('s').parse().map_err(|_| {
                    format!("--duration: {v:?} is not a number of seconds; {USAGE}")
                })?;
                args.duration = Duration::from_secs(secs.max(60));
            }
            "--gateway-bin" => args.gateway_bin = PathBuf::from(value()?),
            "--callers" => args.callers = value()?.parse()?,
            "--pause-ms" => args.pause = Duration::from_millis(value()?.parse()?),
            "--log-level" => args.log_level = value()?,
            "--keep-logs" => args.keep_logs = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}").into()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        // Interrupted: the soak's future is dropped, and with it the world and its children.
        tokio::select! {
            outcome = soak(&args) => outcome,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = terminate.recv() => Err("terminated".into()),
        }
    });
    // Every child process is owned by the world, dropped (killed) by now; tasks still
    // holding a reference to it are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the soak; `Ok(true)` when nothing unexpected, duplicated or leaked.
async fn soak(args: &Args) -> Result<bool> {
    if !args.gateway_bin.is_file() {
        return Err(format!("no gateway binary at {}", args.gateway_bin.display()).into());
    }
    let world = Arc::new(World::start(&args.gateway_bin, &args.log_level).await?);
    println!(
        "soak: {} s, {} callers, 2 replicas, work directory {}",
        args.duration.as_secs(),
        args.callers,
        world.dir.display()
    );
    let outcome = run(args, &world).await;
    let keep = args.keep_logs || !matches!(outcome, Ok(true));
    let dir = world.dir.clone();
    // Kill every child before the files go.
    drop(world);
    if keep {
        println!("soak: logs kept in {}", dir.join("logs").display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    outcome
}

async fn run(args: &Args, world: &Arc<World>) -> Result<bool> {
    let start_stats = process_stats(world).await;
    let observed = Observed::default();
    let observer = observed.spawn(world.clone());
    let t0 = Instant::now();
    let load = load::Load::start(world.listens.clone(), args.callers, args.pause, t0);
    let refresh_period = world::TOKEN_LIFETIME.mul_f64(world::REFRESH_AT);
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let token_sampler = tokio::spawn(sample_token_requests(
        world.clone(),
        refresh_period,
        samples.clone(),
    ));

    let mut windows = tokio::task::JoinSet::new();
    for planned in schedule::plan(args.duration) {
        windows.spawn(faults::run(world.clone(), observed.clone(), planned, t0));
    }
    let mut actual = Vec::new();
    let mut window_errors = Vec::new();
    while let Some(done) = windows.join_next().await {
        match done {
            Ok(Ok(window)) => actual.push(window),
            Ok(Err(e)) => window_errors.push(e.to_string()),
            Err(e) => window_errors.push(format!("window task: {e}")),
        }
    }
    tokio::time::sleep_until(t0 + args.duration).await;
    let calls = load.stop().await;
    let elapsed = t0.elapsed();
    token_sampler.abort();
    let per_refresh = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    observer.abort();
    observed.drain(world);
    let end_stats = process_stats(world).await;

    let tally = tally::classify(&calls, &actual);
    println!();
    println!(
        "per fault window (calls: started in the window; failures: those the window's fault \
         explains, or unexpected ones overlapping it):"
    );
    for (window, counts) in &tally.windows {
        println!(
            "  {:6.1}-{:6.1}s {:36} {}{}",
            tally::secs(window.start),
            tally::secs(window.end),
            window.kind.name(),
            counts.line(),
            if window.note.is_empty() {
                String::new()
            } else {
                format!("  ({})", window.note)
            }
        );
    }
    println!(
        "  {:14} {:36} {}",
        "",
        "outside every window",
        tally.clean.line()
    );
    println!("total: {}", tally.total.line());
    println!(
        "elapsed {:.1} s, {:.0} calls/s",
        elapsed.as_secs_f64(),
        calls.len() as f64 / elapsed.as_secs_f64()
    );
    for error in &window_errors {
        println!("WINDOW FAILED: {error}");
    }

    println!();
    println!("processes (RSS kB / open fds, at start -> at end):");
    for ((name, start), (end_name, end)) in start_stats.iter().zip(&end_stats) {
        println!("  {name:20} {start:>20} -> {end_name:20} {end}");
    }
    println!(
        "token requests per {:.0} s refresh period (fleet-wide, {} replicas): {:?}; {} tokens issued",
        refresh_period.as_secs_f64(),
        world.listens.len(),
        per_refresh,
        world.dpop.tokens_issued()
    );

    // Duplicates: two requests for one externalRefID acted on at once (either fake), and
    // unreferenced orders that reached Tango more than once.
    let overlapping: Vec<String> = [
        world.basic.overlapping_orders(),
        world.dpop.overlapping_orders(),
    ]
    .concat();
    let (resent, markers, requests) = {
        let seen = observed.lock();
        let resent: Vec<(String, u32)> = seen
            .resent_markers()
            .into_iter()
            .map(|(m, n)| (m.to_owned(), n))
            .collect();
        (resent, seen.markers.len(), seen.requests)
    };
    println!();
    println!(
        "orders: {} externalRefIDs acted on concurrently (duplicate orders), {} of {} orders \
         without externalRefID sent more than once; {} requests reached the fakes",
        overlapping.len(),
        resent.len(),
        markers,
        requests
    );
    for reference in overlapping.iter().take(SHOW) {
        println!("  DUPLICATE externalRefID {reference}");
    }
    for (marker, n) in resent.iter().take(SHOW) {
        println!("  RESENT order without externalRefID {marker}: {n} times");
    }

    // Secrets: everything handed out, and every token and proof the fakes saw or issued.
    let mut credentials = observed.lock().credentials.clone();
    for token in world.dpop.issued_tokens() {
        credentials.insert(observe::fingerprint(&token));
    }
    let (findings, unknown_jwts, lines) =
        secrets::scan(&world.logs, &world.secrets(), &credentials)?;
    println!(
        "secrets: {} found in {} lines of output ({} secret values, {} tokens and proofs \
         looked for; {} other JWT-shaped strings)",
        findings.len(),
        lines,
        world.secrets().len(),
        credentials.len(),
        unknown_jwts
    );
    for finding in findings.iter().take(SHOW) {
        println!(
            "  SECRET {}:{}: {}",
            finding.file, finding.line, finding.what
        );
    }

    if !tally.unexpected.is_empty() {
        println!();
        println!("unexpected failures ({}):", tally.unexpected.len());
        for call in tally.unexpected.iter().take(SHOW) {
            println!("  {}", tally::describe(call));
        }
    }
    let unexpected = tally.total.unexpected + window_errors.len();
    let duplicates = overlapping.len() + resent.len();
    println!();
    println!(
        "soak: {} calls, {} unexpected failures, {} duplicate orders, {} secrets in output",
        tally.total.calls,
        unexpected,
        duplicates,
        findings.len()
    );
    Ok(unexpected == 0 && duplicates == 0 && findings.is_empty())
}

/// `(name, "RSS kB / fds")` for each replica and Redis.
async fn process_stats(world: &World) -> Vec<(String, String)> {
    let mut stats = Vec::new();
    let show = |pid: Option<u32>| {
        pid.and_then(procs::rss_and_fds)
            .map_or("not running".to_owned(), |(rss, fds)| {
                format!("{rss} kB / {fds} fds")
            })
    };
    for gateway in &world.gateways {
        let gateway = gateway.lock().await;
        stats.push((
            format!("gateway {} (run {})", gateway.index, gateway.runs),
            show(gateway.pid()),
        ));
    }
    stats.push((
        "redis-server".to_owned(),
        show(world.redis.lock().await.pid()),
    ));
    stats
}

/// Token requests the fake received in each refresh period, pushed to `samples` until
/// the task is aborted.
async fn sample_token_requests(
    world: Arc<World>,
    period: Duration,
    samples: Arc<std::sync::Mutex<Vec<usize>>>,
) {
    let mut last = world.dpop.token_requests();
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = world.dpop.token_requests();
        samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(now - last);
        last = now;
    }
}
