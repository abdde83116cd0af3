//! L3, generations and kept sessions on a real Redis Cluster: three masters and
//! three replicas this test starts on loopback ports (`redis-server
//! --cluster-enabled yes`, `redis-cli --cluster create`), two engines in-process
//! against it, and a master killed (SIGKILL) while clients keep running
//! commands: its replica is promoted by the cluster itself, users see no error,
//! and L3 comes back on its own. With `--nocapture` it prints what it measured.

mod cache_support;

use cache_support::*;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voxterm::client::Client;
use voxterm_protocol::ServedFrom;

/// How long a master may be silent before the others mark it failed. Short so
/// that a failover fits the test; not so short that a loaded CI machine makes
/// the cluster fail over a master that was only slow.
const NODE_TIMEOUT_MS: u64 = 1500;

/// A program on PATH.
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when redis-server and redis-cli are there; otherwise says so, and
/// fails under CI (`.ci/run` installs them, so a CI run must not skip).
fn tools_present() -> bool {
    let missing: Vec<&str> = ["redis-server", "redis-cli"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{} not found on PATH: the Redis Cluster test did NOT run \
         (Debian/Ubuntu: apt-get install redis-server redis-tools; .ci/run does this)",
        missing.join(" and ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    // Straight to stderr: the harness swallows a passing test's output.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
    false
}

/// One redis-server of the cluster.
struct Node {
    port: u16,
    child: Option<Child>,
}

impl Node {
    /// Dies as a crashed machine would: SIGKILL, no goodbye to the cluster.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Six nodes on loopback: three masters with one replica each.
struct Cluster {
    nodes: Vec<Node>,
    _dir: TempDir,
}

/// Ports P with P and P + 10000 (the cluster bus) free, distinct from `taken`.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let p = 20_000 + fastrand::u16(..25_000);
        let clash = ports
            .iter()
            .any(|&q| [q, q + 10_000].contains(&p) || [q, q + 10_000].contains(&(p + 10_000)));
        let free = [p, p + 10_000]
            .iter()
            .all(|&q| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok());
        if !clash && free {
            ports.push(p);
        }
    }
    ports
}

/// One command to one node (not through the cluster client), as text.
async fn ask(port: u16, args: &[&str]) -> Option<String> {
    let fut = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let v: redis::Value = cmd.query_async(&mut c).await.ok()?;
        match v {
            redis::Value::BulkString(b) => String::from_utf8(b).ok(),
            redis::Value::SimpleString(s) => Some(s),
            redis::Value::VerbatimString { text, .. } => Some(text),
            redis::Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
}

/// A line of `CLUSTER NODES`: who, what role, serving which slots.
struct NodeLine {
    id: String,
    port: u16,
    master: bool,
    failed: bool,
    master_id: String,
    slots: Vec<(u16, u16)>,
}

fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].to_owned(),
                port,
                master: f[2].contains("master"),
                failed: f[2].contains("fail") && !f[2].contains("fail?"),
                master_id: f[3].to_owned(),
                slots,
            })
        })
        .collect()
}

impl Cluster {
    async fn start(dir: TempDir) -> Cluster {
        let ports = free_ports(6);
        let mut nodes = Vec::new();
        for &port in &ports {
            let p = port.to_string();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &p,
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                ])
                .args(["--cluster-config-file", &format!("nodes-{p}.conf")])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--logfile", &format!("redis-{p}.log")])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in &ports {
            while ask(port, &["PING"]).await.as_deref() != Some("PONG") {
                assert!(
                    Instant::now() < deadline,
                    "redis-server :{port} never answered"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .await
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = Cluster { nodes, _dir: dir };
        cluster.wait_ready(Duration::from_secs(20)).await;
        cluster
    }

    /// Every node agrees the cluster is whole, and every replica has synced
    /// (a replica that never synced is not promoted).
    async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut ready = true;
            for n in &self.nodes {
                let info = ask(n.port, &["CLUSTER", "INFO"]).await.unwrap_or_default();
                let repl = ask(n.port, &["INFO", "replication"])
                    .await
                    .unwrap_or_default();
                let synced = repl.contains("role:master") && repl.contains("connected_slaves:1")
                    || repl.contains("role:slave") && repl.contains("master_link_status:up");
                ready &= info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:6")
                    && synced;
            }
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The seed list for `[cache] redis_url`: every node, so that any survivor
    /// can tell the client where the slots went.
    fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `CLUSTER NODES` view of a live node other than `not`.
    async fn view(&self, not: u16) -> Vec<NodeLine> {
        for n in self
            .nodes
            .iter()
            .filter(|n| n.port != not && n.child.is_some())
        {
            if let Some(text) = ask(n.port, &["CLUSTER", "NODES"]).await {
                return parse_nodes(&text);
            }
        }
        Vec::new()
    }

    /// The master serving `key`'s slot, as the cluster sees it now.
    async fn master_of(&self, key: &str, not: u16) -> Option<u16> {
        let live = self
            .nodes
            .iter()
            .find(|n| n.port != not && n.child.is_some())?;
        let slot: u16 = ask(live.port, &["CLUSTER", "KEYSLOT", key])
            .await?
            .parse()
            .ok()?;
        self.view(not)
            .await
            .into_iter()
            .find(|l| {
                l.port != not
                    && l.master
                    && !l.failed
                    && l.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
            })
            .map(|l| l.port)
    }

    /// True once the value under `key` (read through the cluster) holds
    /// `needle`: a kept session is bincode, its directory's bytes verbatim.
    async fn holds(&self, key: &str, needle: &str) -> bool {
        let fut = async {
            let seeds: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| format!("redis://127.0.0.1:{}/", n.port))
                .collect();
            let client = redis::cluster::ClusterClient::new(seeds).ok()?;
            let mut c = client.get_async_connection().await.ok()?;
            let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut c).await.ok()?;
            Some(v?.windows(needle.len()).any(|w| w == needle.as_bytes()))
        };
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// Waits until the kept session `key` is in `cwd`: an engine saves it off
    /// the request's way, and whichever save lands last wins.
    async fn wait_kept(&self, key: &str, cwd: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.holds(key, cwd).await {
            assert!(
                Instant::now() < deadline,
                "the session in {cwd} never reached Redis"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.kill();
        }
    }
}

/// Runs `cmd`; it must end in `Exit` 0, never an `Error`.
async fn ok(c: &mut Client, cmd: &str) -> (String, ServedFrom) {
    let done = run(c, cmd).await;
    assert!(done.error.is_none(), "{cmd}: error {:?}", done.error);
    let exit = done.exit.as_ref().expect("exit");
    assert_eq!(exit.code, Some(0), "{cmd}: {done:?}");
    (out(&done), exit.served_from)
}

fn display(p: &Path) -> String {
    p.canonicalize().expect("canonical").display().to_string()
}

/// What one client saw while the master died.
#[derive(Default)]
struct Seen {
    commands: u32,
    wrong: Vec<String>,
    slowest: Duration,
    from_l3: u32,
}

/// Runs a mix of lines (new echoes, the other engine's echoes, a stamped and a
/// blind fs-read, writes that bump the generation, cd that saves the session) until
/// `stop`; every answer is checked, and anything but a right answer is kept.
/// Paths are absolute: the clients on both engines share the tenant's session.
async fn keep_running(
    mut c: Client,
    n: String,
    root: String,
    side: &'static str,
    echoed: [Arc<AtomicU32>; 2],
    stop: Arc<AtomicBool>,
) -> Seen {
    let [mine, theirs] = echoed;
    let mut seen = Seen::default();
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (cmd, want) = match i % 6 {
            0 => (
                format!("echo fo-{n}-{side}-{i}"),
                Some(format!("fo-{n}-{side}-{i}\n")),
            ),
            // The other engine's latest new line: an L3 hit when L3 is up.
            1 => {
                let other = if side == "a" { "b" } else { "a" };
                let j = theirs.load(Ordering::Relaxed);
                (
                    format!("echo fo-{n}-{other}-{j}"),
                    Some(format!("fo-{n}-{other}-{j}\n")),
                )
            }
            2 => (format!("cat {root}/f"), Some("one".to_owned())),
            3 => (format!("cat {root}/f | cat"), Some("one".to_owned())),
            4 => (format!("touch {root}/w-{side}"), Some(String::new())),
            // Saves the session; always the same directory, because every key
            // holds the cwd: the two engines' lines must meet in L3.
            _ => (format!("cd {root}"), None),
        };
        let start = Instant::now();
        let done = run(&mut c, &cmd).await;
        if i % 6 == 0 {
            mine.store(i, Ordering::Relaxed);
        }
        seen.slowest = seen.slowest.max(start.elapsed());
        seen.commands += 1;
        match (&done.error, &done.exit) {
            (None, Some(e)) if e.code == Some(0) => {
                if e.served_from == ServedFrom::L3 {
                    seen.from_l3 += 1;
                }
                if let Some(w) = want.filter(|w| *w != out(&done)) {
                    seen.wrong
                        .push(format!("{cmd}: printed {:?}, want {w:?}", out(&done)));
                }
            }
            _ => seen.wrong.push(format!("{cmd}: {done:?}")),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3_generations_and_sessions_survive_a_master_failover() {
    if !tools_present() {
        return;
    }
    let test_start = Instant::now();
    let mut cluster = Cluster::start(TempDir::new("cluster-nodes")).await;
    let formed = test_start.elapsed();

    let dir = TempDir::new("cluster");
    std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("f"), "one").expect("write f");
    std::fs::write(dir.path().join("h"), "one").expect("write h");
    std::fs::create_dir_all(dir.path().join("sub2")).expect("mkdir");
    let root = display(dir.path());
    let sub = display(&dir.path().join("sub"));
    let sub2 = display(&dir.path().join("sub2"));
    // The built-in policy plus a blind fs-read TTL, so that a pipeline's
    // answer depends on the tenant's generation (its inputs are not stamped).
    let policy = dir.path().join("policy.toml");
    let default = voxterm::cache::policy::DEFAULT_POLICY;
    let text = default.replace(
        "session = \"10m\"\n",
        "session = \"10m\"\nfs-read-blind = \"10m\"\n",
    );
    assert_ne!(text, default);
    std::fs::write(&policy, text).expect("write policy");
    let mut cfg = config(dir.path());
    cfg.cache.redis_url = Some(cluster.url());
    cfg.cache.redis_cluster = true;
    cfg.cache.policy_file = Some(policy);
    // No prefetch: every answer's origin below is the lookup's own.
    cfg.predict.enabled = false;
    // Files older than the racy window, so that their stamps are trusted.
    tokio::time::sleep(voxterm::cache::inputs::RACY + Duration::from_millis(100)).await;
    let a = TestServer::start(cfg.clone()).await;
    let b = TestServer::start(cfg).await;
    // A tenant whose generation lives on the first seed node, when that is a
    // master: the node the engines subscribe on is then the one killed below,
    // and their subscriptions have to move on to the next seed.
    let first_seed = cluster.nodes[0].port;
    let mut n = nonce();
    for _ in 0..64 {
        let key = format!("{}gen:c{n}", voxterm::cache::NAMESPACE);
        if cluster.master_of(&key, 0).await == Some(first_seed) {
            break;
        }
        n = nonce();
    }
    let tenant = format!("c{n}");
    let mut on_a = a.client(&tenant).await;
    let mut on_b = b.client(&tenant).await;

    // 1. An entry stored through A is an L3 hit on B. A's write to Redis is off
    //    the request's way, so B may ask a moment too early: a new line each try.
    let mut tries = 0;
    loop {
        tries += 1;
        let line = format!("echo shared-{n}-{tries}");
        assert_eq!(ok(&mut on_a, &line).await.1, ServedFrom::Exec);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (text, from) = ok(&mut on_b, &line).await;
        assert_eq!(text, format!("shared-{n}-{tries}\n"));
        if from == ServedFrom::L3 {
            break;
        }
        assert!(tries < 10, "B never got A's entry from L3 (last: {from:?})");
    }

    // 2. A write through A invalidates B's blind fs-read entries (the
    //    tenant's generation, pushed through pub/sub: the bump script's PUBLISH
    //    crosses the cluster bus to the node B subscribed on; and polled every
    //    generation_refresh).
    assert_eq!(
        ok(&mut on_b, "cat h | cat").await,
        ("one".into(), ServedFrom::Exec)
    );
    let (text, from) = ok(&mut on_b, "cat h | cat").await;
    assert_eq!(text, "one");
    assert_ne!(from, ServedFrom::Exec, "cached on B");
    std::fs::write(dir.path().join("h"), "two").expect("write h");
    ok(&mut on_a, "touch written-on-a").await;
    let bumped = Instant::now();
    let mut stale = 0;
    let invalidated = loop {
        if ok(&mut on_b, "cat h | cat").await.0 == "two" {
            break bumped.elapsed();
        }
        stale += 1;
        assert!(
            bumped.elapsed() < Duration::from_secs(3),
            "B kept serving the entry A's write invalidated"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let pushes = |s: &TestServer| s.engine.metrics.cache.generation_messages();
    assert!(pushes(&b) > 0, "no bump reached B through pub/sub");

    // 3. A session moves: cd on A, pwd on B (a client of its own there: B's
    //    live copy gives way to the newer one in Redis when it is opened). B
    //    saves its copy on its last detach: that lands first, then A's cd.
    let session_key = format!("{}session:{tenant}:default", voxterm::cache::NAMESPACE);
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(&mut on_a, "cd sub").await;
    let moved = Instant::now();
    cluster.wait_kept(&session_key, &sub).await;
    loop {
        let mut c = b.client(&tenant).await;
        if ok(&mut c, "pwd").await.0 == format!("{sub}\n") {
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(5),
            "the session never reached B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session_moved = moved.elapsed();
    ok(&mut on_a, "cd ..").await;
    drop(on_a);

    // 4. A master dies while clients on both engines keep running commands:
    //    the master of the tenant's generation key, read on every lookup of a
    //    blind entry and written by every write.
    let gen_key = format!("{}gen:{tenant}", voxterm::cache::NAMESPACE);
    let victim = cluster
        .master_of(&gen_key, 0)
        .await
        .expect("a master serves the generation key");
    let l3 = a
        .engine
        .cache
        .as_ref()
        .and_then(|c| c.l3().cloned())
        .expect("L3 on A");
    let victim_id = cluster
        .view(0)
        .await
        .into_iter()
        .find(|l| l.port == victim)
        .map(|l| l.id)
        .expect("the victim in CLUSTER NODES");
    let replica = cluster
        .view(0)
        .await
        .into_iter()
        .find(|l| !l.master && l.master_id == victim_id)
        .map(|l| l.port)
        .expect("the victim has a replica");
    let stop = Arc::new(AtomicBool::new(false));
    let (echoed_a, echoed_b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let load_a = tokio::spawn(keep_running(
        a.client(&tenant).await,
        n.clone(),
        root.clone(),
        "a",
        [echoed_a.clone(), echoed_b.clone()],
        stop.clone(),
    ));
    let load_b = tokio::spawn(keep_running(
        b.client(&tenant).await,
        n.clone(),
        root.clone(),
        "b",
        [echoed_b, echoed_a],
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = l3.generation(&tenant).await.expect("L3 up before the kill");
    // Long enough for the replica to have that number (bumps go on meanwhile;
    // any of those the failover loses, the engines' floors make up for).
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.kill(victim);
    let killed = Instant::now();
    // Engine A's own reads of the generation key, every 50 ms: None is a
    // failed or skipped L3 call (what the engine treats as a miss).
    let mut first_fail = None;
    let mut last_fail = None;
    let mut promoted = None;
    let mut streak = 0;
    let mut after = 0;
    while streak < 10 {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "L3 never came back after the failover (promoted: {promoted:?})"
        );
        match l3.generation(&tenant).await {
            Some(g) if first_fail.is_some() => {
                streak += 1;
                after = g;
            }
            Some(_) => {}
            None => {
                first_fail.get_or_insert(killed.elapsed());
                last_fail = Some(killed.elapsed());
                streak = 0;
            }
        }
        if promoted.is_none() && cluster.master_of(&gen_key, victim).await.is_some() {
            promoted = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted = promoted.expect("the replica was promoted");
    let new_master = cluster
        .master_of(&gen_key, victim)
        .await
        .expect("new master");
    assert_ne!(new_master, victim);
    assert_eq!(new_master, replica, "the victim's replica took its slots");
    assert!(
        after >= before,
        "the generation went back from {before} to {after} in the failover"
    );
    // Users kept running commands for a while on the healed cluster too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen_a = load_a.await.expect("client on A");
    let seen_b = load_b.await.expect("client on B");
    for (side, seen) in [("A", &seen_a), ("B", &seen_b)] {
        assert!(
            seen.wrong.is_empty(),
            "users on {side} saw errors or wrong answers: {:#?}",
            seen.wrong
        );
        assert!(seen.commands > 10, "the client on {side} kept running");
    }

    // 5. After the failover: L3 entries, invalidation and sessions work again,
    //    on the promoted replica for the generation's slot.
    let mut on_a = a.client(&tenant).await;
    let mut on_b = b.client(&tenant).await;
    let healed = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let line = format!("echo healed-{n}-{tries}");
        ok(&mut on_a, &line).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ok(&mut on_b, &line).await.1 == ServedFrom::L3 {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(10),
            "L3 hits never resumed"
        );
    }
    // Absolute paths: the clients of step 4 left the session's cwd anywhere.
    let blind = format!("cat {root}/h | cat");
    assert_eq!(ok(&mut on_b, &blind).await.0, "two");
    let (text, from) = ok(&mut on_b, &blind).await;
    assert_eq!(text, "two");
    assert_ne!(from, ServedFrom::Exec, "cached on B");
    // B's subscription is back too (its node may have been the one killed:
    // then it moved to the next seed).
    let b_cache = b.engine.cache.clone().expect("cache on B");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b_cache.pubsub_live() {
        assert!(Instant::now() < deadline, "B never subscribed again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pushed_before = pushes(&b);
    std::fs::write(dir.path().join("h"), "three").expect("write h");
    ok(&mut on_a, &format!("touch {root}/written-after-failover")).await;
    let bumped = Instant::now();
    while ok(&mut on_b, &blind).await.0 != "three" {
        assert!(
            bumped.elapsed() < Duration::from_secs(3),
            "after the failover B kept serving an entry A's write invalidated"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(pushes(&b) > pushed_before, "no push after the failover");
    if victim == first_seed {
        let subscriptions = b.engine.metrics.cache.generation_subscriptions();
        assert!(subscriptions >= 2, "B's subscription never moved on");
    }
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok(&mut on_a, &format!("cd {sub2}")).await;
    let moved = Instant::now();
    cluster.wait_kept(&session_key, &sub2).await;
    loop {
        let mut c = b.client(&tenant).await;
        if ok(&mut c, "pwd").await.0 == format!("{sub2}\n") {
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(5),
            "no session move after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ms = |d: Duration| d.as_millis();
    println!("figure: cluster of 6 formed in {} ms", ms(formed));
    println!("figure: A's entry an L3 hit on B (try {tries}); invalidation seen on B {} ms after A's write ({stale} stale answers before); session on B {} ms after the cd", ms(invalidated), ms(session_moved));
    println!(
        "figure: master :{victim} killed; replica :{new_master} serving its slots {} ms later",
        ms(promoted)
    );
    println!(
        "figure: L3 calls to that slot failed from {} ms to {} ms after the kill (first and last failed probe, every 50 ms)",
        first_fail.map_or(0, ms),
        last_fail.map_or(0, ms)
    );
    println!("figure: generation {before} before the kill, {after} on the promoted replica");
    println!(
        "figure: generation pub/sub on B: {} subscriptions ({} killed), {} bumps pushed",
        b.engine.metrics.cache.generation_subscriptions(),
        if victim == first_seed {
            "the first seed, where it subscribed, was"
        } else {
            "the first seed was not"
        },
        pushes(&b)
    );
    for (side, seen) in [("A", &seen_a), ("B", &seen_b)] {
        println!(
            "figure: users on {side}: {} commands, 0 errors, slowest {} ms, {} served from L3",
            seen.commands,
            ms(seen.slowest),
            seen.from_l3
        );
    }
    for (side, srv) in [("A", &a), ("B", &b)] {
        let text = srv.engine.metrics.render_prometheus(srv.engine.sampled());
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("voxterm_cache_l3_errors_total"))
            .collect();
        println!("figure: engine {side}: {}", failed.join(", "));
    }
    println!("figure: whole test {} ms", ms(test_start.elapsed()));
    a.shutdown().await;
    b.shutdown().await;
}
