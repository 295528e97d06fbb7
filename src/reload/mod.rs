//! Live reload (§7): on `SIGHUP`, or when the content of the configuration file or of any
//! file it references changes, the configuration is loaded and built afresh and swapped in.
//!
//! Invariants:
//! - one reload at a time (a single task does them all, in order);
//! - nothing is swapped unless the new configuration loaded, validated and built completely;
//!   a refused reload is logged and counted, and the running generation keeps serving;
//! - requests already in flight finish on the generation they started on ([`live`]);
//! - credentials whose cache key is unchanged keep their token, so a reload costs no token
//!   request; new credentials get their first token before the swap (bounded wait).

mod fingerprint;
mod live;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

pub(crate) use fingerprint::Fingerprint;
pub(crate) use live::{Generation, Live, LiveService};

use crate::certs::expiry::ExpiryWarnings;
use crate::config::{self, Config, ConfigErrors};
use crate::inbound::listener::stop_requested;
use crate::metrics::metrics;
use crate::stack::{self, BuildError, ProcessWide};

/// How often watched files are hashed: a change is picked up within about a second.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a reload waits for new credentials' first tokens before swapping anyway.
const FIRST_TOKEN_WAIT: Duration = Duration::from_secs(10);

/// What asked for a reload (logged with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Signal,
    FileChange,
    Request,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
            Trigger::Request => "request",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error("{}: {source}", .file.display())]
    Build { file: PathBuf, source: BuildError },
    #[error("the reloader has stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<u64, ReloadError>>;

/// Asks the reloader for a reload and waits for its outcome (what `SIGHUP` does, awaited).
#[derive(Debug, Clone)]
pub(crate) struct ReloadHandle {
    requests: mpsc::Sender<Reply>,
}

impl ReloadHandle {
    /// Reloads now; returns the new generation number.
    pub(crate) async fn reload(&self) -> Result<u64, ReloadError> {
        let (reply, outcome) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        outcome.await.unwrap_or(Err(ReloadError::Stopped))
    }
}

/// Starts the reloader for `live`, whose first generation was loaded from `startup`.
pub(crate) fn spawn(
    live: Arc<Live>,
    startup: Arc<Config>,
    process: ProcessWide,
    stop: watch::Receiver<bool>,
) -> (ReloadHandle, JoinHandle<()>) {
    let (requests, received) = mpsc::channel(4);
    let reloader = Reloader {
        process,
        path: startup.source.clone(),
        files: Vec::new(),
        seen: None,
        live,
        startup,
        expiry: ExpiryWarnings::default(),
    };
    let task = tokio::spawn(reloader.run(received, stop));
    (ReloadHandle { requests }, task)
}

struct Reloader {
    live: Arc<Live>,
    /// What every generation shares (the worker count, the concurrency limit).
    process: ProcessWide,
    /// Settings only a restart applies are compared with these.
    startup: Arc<Config>,
    path: PathBuf,
    files: Vec<PathBuf>,
    /// The fingerprint of the files as last loaded (or last refused).
    seen: Option<Fingerprint>,
    expiry: ExpiryWarnings,
}

impl Reloader {
    async fn run(mut self, mut requests: mpsc::Receiver<Reply>, mut stop: watch::Receiver<bool>) {
        let mut hangup = hangup_signal();
        let (files, seen) = watch_state(self.path.clone()).await;
        self.files = files;
        self.seen = Some(seen);
        self.expiry
            .check(&self.live.current().config, SystemTime::now());
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop_requested(&mut stop) => break,
                Some(reply) = requests.recv() => {
                    let outcome = self.reload(Trigger::Request).await;
                    let _ = reply.send(outcome);
                }
                () = next_hangup(&mut hangup) => {
                    let _ = self.reload(Trigger::Signal).await;
                }
                _ = tick.tick() => {
                    if self.files_changed().await {
                        let _ = self.reload(Trigger::FileChange).await;
                    }
                    self.expiry.check(&self.live.current().config, SystemTime::now());
                }
            }
        }
    }

    async fn files_changed(&mut self) -> bool {
        let files = self.files.clone();
        let now = tokio::task::spawn_blocking(move || Fingerprint::of(&files))
            .await
            .ok();
        now.is_some() && now != self.seen
    }

    async fn reload(&mut self, trigger: Trigger) -> Result<u64, ReloadError> {
        // systemd shows the unit reloading until this drops, applied or refused.
        let _reloading = crate::systemd::reloading();
        let current = self.live.current();
        let outcome = self.load_and_build(&current).await;
        match outcome {
            Ok(next) => {
                let number = next.number;
                let routes = next.config.routes.len();
                metrics().set_client_certs(&next.config);
                self.live.replace(next);
                metrics().count_reload("success");
                metrics().config_generation.set(number as i64);
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation = number,
                    routes,
                    "configuration reloaded"
                );
                self.expiry
                    .check(&self.live.current().config, SystemTime::now());
                Ok(number)
            }
            Err(err) => {
                metrics().count_reload("refused");
                tracing::error!(
                    trigger = trigger.as_str(),
                    generation = current.number,
                    problems = %err,
                    "configuration reload refused; the running configuration keeps serving"
                );
                Err(err)
            }
        }
    }

    /// Loads, validates and builds the next generation; nothing is in service yet.
    async fn load_and_build(&mut self, current: &Generation) -> Result<Generation, ReloadError> {
        let path = self.path.clone();
        let (files, seen, loaded) = tokio::task::spawn_blocking(move || {
            // Hash first: a change made while loading is seen again at the next tick.
            let env: HashMap<String, String> = std::env::vars().collect();
            let files = config::watched_files(&path, &env);
            let seen = Fingerprint::of(&files);
            (files, seen, config::load_with_env(&path, &env))
        })
        .await
        .map_err(|_| ReloadError::Stopped)?;
        self.files = files;
        self.seen = Some(seen);
        let config = loaded.map_err(ReloadError::Config)?;
        warn_restart_only_changes(&self.startup, &config);
        let routing = stack::build_routing(&config, Some(&current.tokens), &self.process).map_err(
            |source| ReloadError::Build {
                file: self.path.clone(),
                source,
            },
        )?;
        let next = Generation::start(current.number + 1, Arc::new(config), routing);
        if !next.tokens.settled(FIRST_TOKEN_WAIT).await {
            tracing::warn!(
                "a credential new in this configuration has no token yet; swapping anyway \
                 (its callers wait for it or get 503 gateway.credentials_unavailable)"
            );
        }
        Ok(next)
    }
}

/// The watched files of `path` and their fingerprint now.
async fn watch_state(path: PathBuf) -> (Vec<PathBuf>, Fingerprint) {
    tokio::task::spawn_blocking(move || {
        let env: HashMap<String, String> = std::env::vars().collect();
        let files = config::watched_files(&path, &env);
        let seen = Fingerprint::of(&files);
        (files, seen)
    })
    .await
    .unwrap_or_else(|_| (Vec::new(), Fingerprint::of(&[])))
}

/// Listeners, logging, tracing, the concurrency limit and the shutdown grace belong to the process:
/// a reload cannot move them. Say so instead of silently ignoring the new values.
fn warn_restart_only_changes(startup: &Config, next: &Config) {
    let mut keys = Vec::new();
    if startup.listen != next.listen {
        keys.push("listen");
    }
    if startup.admin.listen != next.admin.listen {
        keys.push("admin.listen");
    }
    if startup.log.format != next.log.format || startup.log.level != next.log.level {
        keys.push("log");
    }
    if startup.telemetry != next.telemetry {
        keys.push("telemetry");
    }
    if startup.inbound.max_concurrent_requests != next.inbound.max_concurrent_requests {
        keys.push("inbound.max_concurrent_requests");
    }
    let (a, b) = (&startup.inbound, &next.inbound);
    for (changed, key) in [
        (
            a.header_read_timeout != b.header_read_timeout,
            "inbound.header_read_timeout",
        ),
        (a.idle_timeout != b.idle_timeout, "inbound.idle_timeout"),
        (
            a.max_connections != b.max_connections,
            "inbound.max_connections",
        ),
        (
            a.http2_max_concurrent_streams != b.http2_max_concurrent_streams,
            "inbound.http2_max_concurrent_streams",
        ),
    ] {
        if changed {
            keys.push(key);
        }
    }
    if startup.shutdown_grace != next.shutdown_grace {
        keys.push("shutdown_grace");
    }
    if !keys.is_empty() {
        tracing::warn!(
            keys = %keys.join(", "),
            "these settings changed but take effect only after a restart; the rest is reloaded"
        );
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reload on file change only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

/// The next SIGHUP; never resolves without a signal handler.
#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_hangup: &mut Hangup) {
    std::future::pending::<()>().await
}
