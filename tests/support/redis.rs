//! A real `redis-server` for the Redis token store tests: started on a free loopback port
//! with no persistence, killed on drop, and stoppable and restartable (same port) mid-test.
//!
//! Invariant: a machine without `redis-server` fails the test with a clear message (it is
//! never skipped: `.ci/run` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_with(None).await
    }

    /// With `requirepass`: clients must AUTH with `password` (given in the URL's userinfo).
    pub async fn start_with(password: Option<&str>) -> RedisServer {
        // Redis has no port 0: take a free port from the kernel, release it, hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = RedisServer {
            port,
            password: password.map(str::to_owned),
            child: None,
        };
        server.restart().await;
        server
    }

    /// `redis://[:password@]127.0.0.1:port/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Starts (again) on the same port and waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot start redis-server ({err}): the Redis token store tests need it on \
                 PATH (Debian: apt-get install redis-server; .ci/run installs it)"
            )
        });
        self.child = Some(child);
        let start = Instant::now();
        while self.ping().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not answer PING on port {} within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL: as abrupt as a crash or a network cut).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to the test redis-server")
    }

    async fn ping(&self) -> redis::RedisResult<String> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async(&mut connection).await
    }

    /// The keys matching `pattern` (KEYS: fine on a test server).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut connection = self.connection().await;
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// Milliseconds `key` has left to live (-2: no such key, -1: no expiry).
    pub async fn pttl(&self, key: &str) -> i64 {
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
