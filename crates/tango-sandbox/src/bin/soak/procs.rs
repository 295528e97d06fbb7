//! The soak's child processes: gateway replicas and `redis-server`, each with its stdout and
//! stderr copied line by line to a log file (scanned for secrets at the end), signalled with
//! `kill`, and killed on drop.
//!
//! Invariant: no child outlives the soak — every [`Child`] is killed and reaped when its
//! owner is dropped, on success, on error and on panic unwinding alike.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Result;

/// A running child whose output goes to a log file; killed and reaped on drop.
pub(crate) struct Child {
    child: std::process::Child,
    /// Output lines seen so far (only their count and the few that matter are kept in memory).
    watch: Arc<Mutex<Watch>>,
}

/// What the output threads keep in memory: a line count and lines containing a marker.
#[derive(Default)]
struct Watch {
    lines: usize,
    /// Lines that contain one of the markers the soak waits for (serving, reloads).
    marked: Vec<String>,
}

/// Log lines the soak waits for: the gateway's start and its reloads.
const MARKERS: [&str; 3] = [
    "tango-gateway serving",
    "configuration reloaded",
    "configuration reload refused",
];

impl Child {
    /// Starts `command` with its output appended to `log`.
    pub(crate) fn spawn(mut command: Command, log: &Path) -> Result<Child> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let file = Arc::new(Mutex::new(File::create(log)?));
        let watch = Arc::new(Mutex::new(Watch::default()));
        if let Some(out) = child.stdout.take() {
            copy_lines(out, file.clone(), watch.clone());
        }
        if let Some(err) = child.stderr.take() {
            copy_lines(err, file, watch.clone());
        }
        Ok(Child { child, watch })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `SIG<name>` (`HUP`, `STOP`, `CONT`, ...).
    pub(crate) fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()?;
        if !status.success() {
            return Err(format!("kill -{name} {} failed", self.pid()).into());
        }
        Ok(())
    }

    /// Marked lines (see [`MARKERS`]) from index `from` on.
    pub(crate) fn marked_since(&self, from: usize) -> Vec<String> {
        let watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        watch.marked.get(from..).unwrap_or_default().to_vec()
    }

    /// How many marked lines so far (a starting point for [`Child::marked_since`]).
    pub(crate) fn marked_count(&self) -> usize {
        self.watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .marked
            .len()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SIGKILL: nothing the child does can keep it alive; a stopped child dies too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_lines(
    stream: impl Read + Send + 'static,
    file: Arc<Mutex<File>>,
    watch: Arc<Mutex<Watch>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut file) = file.lock() {
                let _ = writeln!(file, "{line}");
            }
            let mut watch = watch.lock().unwrap_or_else(|e| e.into_inner());
            watch.lines += 1;
            if MARKERS.iter().any(|m| line.contains(m)) {
                watch.marked.push(line);
            }
        }
    });
}

/// Resident set size (kB) and open file descriptors of `pid`, read from `/proc`.
pub(crate) fn rss_and_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

/// A free loopback port: bound by the kernel, released, handed over (Redis and the gateway's
/// fixed listen ports, which must survive a restart).
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `check` every 25 ms until it is true, for at most `limit`.
pub(crate) async fn wait_until(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() >= limit {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// A `redis-server` on a fixed loopback port with a password and no persistence; stoppable
/// (SIGKILL), freezable (SIGSTOP: connections hang instead of being refused) and restartable.
pub(crate) struct Redis {
    pub(crate) port: u16,
    password: String,
    logs: PathBuf,
    runs: usize,
    child: Option<Child>,
}

impl Redis {
    pub(crate) async fn start(port: u16, password: &str, logs: &Path) -> Result<Redis> {
        let mut redis = Redis {
            port,
            password: password.to_owned(),
            logs: logs.to_path_buf(),
            runs: 0,
            child: None,
        };
        redis.restart().await?;
        Ok(redis)
    }

    /// `redis://:password@127.0.0.1:port/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/0", self.password, self.port)
    }

    /// (Re)starts on the same port and waits until it answers PING.
    pub(crate) async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.runs += 1;
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--requirepass"])
            .arg(&self.password);
        let log = self.logs.join(format!("redis-{}.log", self.runs));
        self.child = Some(Child::spawn(command, &log).map_err(|e| {
            format!("{e} (the soak needs redis-server on PATH: apt-get install redis-server)")
        })?);
        let start = Instant::now();
        while !self.answers().await {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("redis-server did not answer on port {}", self.port).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// AUTH + PING over a raw connection (the soak has no Redis client).
    async fn answers(&self) -> bool {
        let ping = async {
            let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
            let command = format!(
                "*2\r\n$4\r\nAUTH\r\n${}\r\n{}\r\n*1\r\n$4\r\nPING\r\n",
                self.password.len(),
                self.password
            );
            tcp.write_all(command.as_bytes()).await?;
            let mut answer = Vec::new();
            let mut buf = [0u8; 64];
            while !String::from_utf8_lossy(&answer).contains("PONG") {
                let n = tcp.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
            Ok::<bool, std::io::Error>(String::from_utf8_lossy(&answer).contains("+PONG"))
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(500), ping).await,
            Ok(Ok(true))
        )
    }

    /// SIGKILL: as abrupt as a crash.
    pub(crate) fn kill(&mut self) {
        self.child = None;
    }

    /// SIGSTOP / SIGCONT: the port stays open but nothing answers.
    pub(crate) fn freeze(&self, frozen: bool) -> Result<()> {
        match &self.child {
            Some(child) => child.signal(if frozen { "STOP" } else { "CONT" }),
            None => Ok(()),
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::pid)
    }
}

/// One gateway replica: `tango-gateway run --config FILE` on fixed ports, restartable.
pub(crate) struct Gateway {
    pub(crate) index: usize,
    admin: SocketAddr,
    binary: PathBuf,
    config: PathBuf,
    logs: PathBuf,
    pub(crate) runs: usize,
    pub(crate) child: Option<Child>,
}

impl Gateway {
    pub(crate) fn new(
        index: usize,
        listen: SocketAddr,
        admin: SocketAddr,
        binary: &Path,
        config: &Path,
        logs: &Path,
    ) -> Gateway {
        // The listen address is in the configuration; it is fixed so that a restarted
        // replica keeps it.
        let _ = listen;
        Gateway {
            index,
            admin,
            binary: binary.to_path_buf(),
            config: config.to_path_buf(),
            logs: logs.to_path_buf(),
            runs: 0,
            child: None,
        }
    }

    /// Starts (again) and waits for the serving event and `/readyz` 200.
    pub(crate) async fn start(&mut self) -> Result<()> {
        self.child = None;
        self.runs += 1;
        let mut command = Command::new(&self.binary);
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG");
        let log = self
            .logs
            .join(format!("gateway-{}-{}.log", self.index, self.runs));
        let child = Child::spawn(command, &log)?;
        let start = Instant::now();
        loop {
            if !child.marked_since(0).is_empty() && self.ready().await {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "gateway {} not ready within 20 s; see {}",
                    self.index,
                    log.display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// `GET /readyz` is 200.
    pub(crate) async fn ready(&self) -> bool {
        let get = async {
            let mut tcp = TcpStream::connect(self.admin).await?;
            let request = format!(
                "GET /readyz HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
                self.admin
            );
            tcp.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer).await?;
            Ok::<bool, std::io::Error>(answer.starts_with(b"HTTP/1.1 200"))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), get).await,
            Ok(Ok(true))
        )
    }

    /// SIGKILL, at once.
    pub(crate) fn kill(&mut self) {
        self.child = None;
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::pid)
    }
}
