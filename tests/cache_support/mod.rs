//! Helpers of tests/cache.rs: an in-process server and a real `redis-server`.

#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use voxterm::client::{Client, ClientOptions, Completed};
use voxterm::config::{Config, Preset};
use voxterm::engine::Engine;
use voxterm_protocol::{CacheMode, Exec, Message, Priority, ServedFrom, StreamKind};

const INSTALL_HINT: &str = "these tests need Redis: install redis-server \
(Debian/Ubuntu: `apt-get install -y redis-server`; macOS: `brew install redis`) \
or point REDIS_URL at a disposable Redis (e.g. redis://127.0.0.1:6379)";

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "voxterm-cache-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        if let Some(name) = self.0.file_name() {
            let data = format!("{}-data", name.to_string_lossy());
            let _ = std::fs::remove_dir_all(self.0.with_file_name(data));
        }
    }
}

/// A test configuration: loopback port 0, sessions rooted in `root`.
pub fn config(root: &Path) -> Config {
    let mut c = Preset::Development.config();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.drain_timeout = Duration::from_millis(500);
    c.session.root = root.to_owned();
    c.cache.breaker_cooldown = Duration::from_millis(200);
    // Loopback Redis under a parallel test run can take more than 5 ms.
    c.cache.l3_deadline = Duration::from_millis(250);
    // The prediction model goes next to the root, never into ~/.local/share.
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned());
    c.predict.data_dir = Some(root.with_file_name(format!("{}-data", name.unwrap_or_default())));
    c
}

/// A server configuration over `dir` (holding a file `f` = "one") with L3 on and
/// the built-in policy, plus the opt-in blind fs-read TTL `ttl`.
pub fn short_fs_read_ttl(dir: &TempDir, redis: &Redis, ttl: &str) -> Config {
    let policy = dir.path().join("policy.toml");
    let default = voxterm::cache::policy::DEFAULT_POLICY;
    let text = default.replace(
        "session = \"10m\"\n",
        &format!("session = \"10m\"\nfs-read-blind = \"{ttl}\"\n"),
    );
    assert_ne!(text, default);
    std::fs::write(&policy, text).unwrap();
    std::fs::write(dir.path().join("f"), "one").unwrap();
    let mut cfg = config(dir.path());
    cfg.cache.policy_file = Some(policy);
    cfg.cache.redis_url = Some(redis.url.clone());
    cfg
}

/// A running in-process server.
pub struct TestServer {
    pub url: String,
    pub engine: Arc<Engine>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds and serves `config`; with L3 configured, waits until Redis is connected.
    pub async fn start(config: Config) -> TestServer {
        let with_l3 = config.cache.enabled && config.cache.redis_url.is_some();
        let server = voxterm::server::Server::bind(config)
            .await
            .expect("bind test server");
        let addr = server.local_addr().expect("local addr");
        let engine = server.engine().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        if with_l3 {
            let l3 = engine.cache.as_ref().and_then(|c| c.l3().cloned());
            let l3 = l3.expect("L3 configured");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !l3.connected() {
                assert!(Instant::now() < deadline, "L3 never connected");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        TestServer {
            url: format!("ws://{addr}/ws"),
            engine,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A connected client acting as `tenant`.
    pub async fn client(&self, tenant: &str) -> Client {
        Client::connect(
            &self.url,
            ClientOptions {
                tenant: Some(tenant.to_owned()),
                ..ClientOptions::default()
            },
        )
        .await
        .expect("connect")
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs `cmd` in the default session and returns the collected result.
pub async fn run(client: &mut Client, cmd: &str) -> Completed {
    run_mode(client, cmd, CacheMode::Default).await
}

/// Runs `cmd` with a cache mode.
pub async fn run_mode(client: &mut Client, cmd: &str, mode: CacheMode) -> Completed {
    let request = client.next_request_id();
    client
        .send(&Message::Exec(Exec {
            request,
            session: 0,
            command: cmd.to_owned(),
            priority: Priority::Normal,
            timeout_ms: 20_000,
            cache: mode,
        }))
        .await
        .expect("send");
    let mut done = Completed::default();
    let fut = async {
        loop {
            match client.recv().await.expect("recv") {
                Message::Output(o) if o.request == request => {
                    done.chunks += 1;
                    match o.stream {
                        StreamKind::Stdout => done.stdout.extend_from_slice(&o.data),
                        StreamKind::Stderr => done.stderr.extend_from_slice(&o.data),
                    }
                }
                Message::Exit(e) if e.request == request => {
                    done.exit = Some(e);
                    return;
                }
                Message::Error(e) if e.request == Some(request) || e.request.is_none() => {
                    done.error = Some(e);
                    return;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("no terminal frame for {cmd:?}"));
    done
}

/// Where a completed request was served from; panics on an `Error` frame.
pub fn served(c: &Completed) -> ServedFrom {
    assert!(c.error.is_none(), "unexpected error: {:?}", c.error);
    c.exit.as_ref().expect("exit").served_from
}

/// stdout as text.
pub fn out(c: &Completed) -> String {
    String::from_utf8_lossy(&c.stdout).into_owned()
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A Redis for one test: our own `redis-server` on a free port, or `REDIS_URL`.
pub struct Redis {
    pub url: String,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Our own server when `redis-server` is installed, else `REDIS_URL`; fails
    /// the test with install instructions when neither works.
    pub fn start() -> Redis {
        match Redis::spawn_own() {
            Some(r) => r,
            None => match std::env::var("REDIS_URL") {
                Ok(url) if !url.is_empty() => Redis {
                    url,
                    port: 0,
                    child: None,
                },
                _ => panic!("cannot start redis-server and REDIS_URL is not set: {INSTALL_HINT}"),
            },
        }
    }

    /// Our own server (tests that kill and restart it need one).
    pub fn own() -> Redis {
        Redis::spawn_own().unwrap_or_else(|| {
            panic!("this test kills and restarts Redis, so it needs redis-server itself: {INSTALL_HINT}")
        })
    }

    fn spawn_own() -> Option<Redis> {
        let port = free_port();
        let mut r = Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            child: None,
        };
        r.launch().then_some(r)
    }

    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return false;
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills our server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts our server again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        assert!(
            self.launch(),
            "redis-server did not come back on port {}",
            self.port
        );
    }

    /// Keys matching `pattern`.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let client = redis::Client::open(self.url.as_str()).expect("redis url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut c)
            .await
            .expect("KEYS")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token unique to this run, to keep tests sharing a Redis apart.
pub fn nonce() -> String {
    format!("{:x}", fastrand::u64(..))
}
