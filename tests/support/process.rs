//! A `tango-gateway run` child process (the real binary): started from a config file, its
//! output collected, its listen addresses read from the "serving" event, killed on drop.
//!
//! Invariant: the config must log JSON at `info` or below (the serving event is parsed).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tango-gateway");

pub(crate) struct Process {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

impl Process {
    pub(crate) async fn start(config: &Path) -> Process {
        Self::start_with_env::<&str>(config, &[]).await
    }

    /// Starts with extra environment variables (e.g. `RUST_LOG`, `SSL_CERT_FILE`).
    pub(crate) async fn start_with_env<V: AsRef<OsStr>>(
        config: &Path,
        env: &[(&str, V)],
    ) -> Process {
        let mut command = Command::new(BIN);
        command.args(["run", "--config"]).arg(config);
        Self::spawn(command, env).await
    }

    /// Starts with `RLIMIT_NOFILE` (soft and hard) set to `limit` for the gateway alone.
    pub(crate) async fn start_with_open_file_limit(config: &Path, limit: u32) -> Process {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "ulimit -n {limit} && exec \"$0\" run --config \"$1\""
            ))
            .arg(BIN)
            .arg(config);
        Self::spawn::<&str>(command, &[]).await
    }

    async fn spawn<V: AsRef<OsStr>>(mut command: Command, env: &[(&str, V)]) -> Process {
        // Waited for by `Drop` (kill + wait), which clippy cannot see.
        #[allow(clippy::zombie_processes)]
        let mut child = command
            .env_remove("RUST_LOG")
            // Hermetic: a developer's collector must not turn tracing on in tests.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        let start = Instant::now();
        loop {
            let serving = output
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|event| event["message"] == "tango-gateway serving");
            if let Some(event) = serving {
                return Process {
                    child,
                    output,
                    listen: event["listen"].as_str().unwrap().parse().unwrap(),
                    admin: event["admin"].as_str().unwrap().parse().unwrap(),
                };
            }
            if start.elapsed() >= Duration::from_secs(20) {
                // Not left running after the failed test.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gateway did not start: {:#?}", output.lock().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL: the process dies at once, whatever it holds (a Redis lock, say).
    pub(crate) fn kill(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The access-log event of the request tagged `x-request-id: request_id`, once it has
    /// been written (the line is written when the answer's body ends, on the log thread).
    pub(crate) async fn access_event(&self, request_id: &str) -> serde_json::Value {
        for _ in 0..400 {
            let found = self
                .output()
                .iter()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|event| {
                    event["target"] == "tango_gateway::access" && event["request_id"] == request_id
                });
            if let Some(event) = found {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no access event for {request_id}:\n{:#?}", self.output());
    }

    /// Sends `SIG<name>` (`TERM`, `HUP`, ...).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// How many lines of output so far (a starting point for `wait_for_line`).
    pub(crate) fn lines(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Waits until a line from index `from` on contains `text` (panics after 10 s).
    pub(crate) async fn wait_for_line(&self, from: usize, text: &str) {
        let start = Instant::now();
        while !self.output.lock().unwrap()[from..]
            .iter()
            .any(|l| l.contains(text))
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no log line with {text:?}: {:#?}",
                self.output.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the process to exit (panics after `limit`).
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "the gateway did not exit");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
