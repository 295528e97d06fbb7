//! A real `redis-server` for the Redis store tests (the token store's here; the order store's
//! in the library's unit tests, which include this file): started on a free loopback port with
//! no persistence, killed on drop, and stoppable and restartable (same port) mid-test; plain,
//! with a password, or TLS-only.
//!
//! Invariant: a machine without `redis-server` fails the test with a clear message (it is
//! never skipped: `.ci/run` installs it).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct RedisServer {
    port: u16,
    password: Option<String>,
    /// TLS-only (`rediss://`).
    tls: bool,
    /// The directory with the dev PKI's `server.pem` and `server.key`, once known.
    tls_dir: Option<PathBuf>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    // Redis has no port 0: take a free port from the kernel, release it, hand it over.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl RedisServer {
    pub(crate) async fn start() -> RedisServer {
        Self::start_with(None).await
    }

    /// With `requirepass`: clients must AUTH with `password` (given in the URL's userinfo).
    pub(crate) async fn start_with(password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            password: password.map(str::to_owned),
            tls: false,
            tls_dir: None,
            child: None,
        };
        server.restart().await;
        server
    }

    /// A TLS-only server, not started yet: its `rediss://` URL goes into a config before the
    /// certificates it serves exist ([`RedisServer::start_tls`]).
    pub(crate) fn tls_on_free_port() -> RedisServer {
        RedisServer {
            port: free_port(),
            password: None,
            tls: true,
            tls_dir: None,
            child: None,
        }
    }

    /// Serves TLS with `dir`'s `server.pem` / `server.key` (clients need no certificate).
    pub(crate) async fn start_tls(&mut self, dir: &Path) {
        self.tls_dir = Some(dir.to_path_buf());
        self.restart().await;
    }

    /// `redis[s]://[:password@]127.0.0.1:port/0`.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match &self.password {
            Some(password) => format!(":{password}@"),
            None => String::new(),
        };
        format!("{scheme}://{auth}127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub(crate) async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.tls_dir {
            None => {
                command.args(["--port", &port]);
            }
            Some(dir) => {
                command
                    .args([
                        "--port",
                        "0",
                        "--tls-port",
                        &port,
                        "--tls-auth-clients",
                        "no",
                    ])
                    .arg("--tls-cert-file")
                    .arg(dir.join("server.pem"))
                    .arg("--tls-key-file")
                    .arg(dir.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(dir.join("ca.pem"));
            }
        }
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot start redis-server ({err}): the Redis store tests need it on \
                 PATH (Debian: apt-get install redis-server; .ci/run installs it)"
            )
        });
        self.child = Some(child);
        let start = Instant::now();
        while !self.answers().await {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not answer on port {} within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// PING for a plain server; a TLS server (whose CA this process does not trust) only
    /// needs to accept connections.
    async fn answers(&self) -> bool {
        if self.tls {
            return TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        let ping = async {
            let client = redis::Client::open(self.url())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        ping.await.is_ok()
    }

    /// Kills the server (SIGKILL: as abrupt as a crash or a network cut).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to the test redis-server")
    }

    /// The keys matching `pattern` (KEYS: fine on a test server).
    pub(crate) async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut connection = self.connection().await;
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// Milliseconds `key` has left to live (-2: no such key, -1: no expiry).
    pub(crate) async fn pttl(&self, key: &str) -> i64 {
        let mut connection = self.connection().await;
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
