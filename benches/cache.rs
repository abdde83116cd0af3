//! Cache tiers: L1/L2 hit latency, L2 candidates' gets/s with 2 threads, L3 hit vs
//! a raw Redis GET, LRU vs quick_cache hit rate on a Zipf stream at equal memory,
//! the input stamp a validated fs-read hit takes (vs spawning the command: readers,
//! trees, git), and
//! `echo hi` end to end from cache vs exec.
//!
//! `cargo bench --bench cache`. L3 needs `redis-server` on PATH (or REDIS_URL);
//! without it the L3 part is skipped with a note. Figures that are not times
//! (hit rates, medians of the end-to-end runs) are printed as `# ...` lines.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lru::LruCache;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voxterm::cache::{Entry, KeyHash, L3Config, L1, L2, L3};
use voxterm::metrics::Metrics;
use voxterm_protocol::StreamKind;

fn entry(bytes: usize) -> Entry {
    let data = vec![b'x'; bytes];
    Entry::from_chunks([(StreamKind::Stdout, &data[..])], Duration::from_secs(3600))
}

fn hits(c: &mut Criterion) {
    let m = Arc::new(Metrics::new());
    let l1 = L1::new(4 << 20, m.clone());
    let l2 = L2::new(64 << 20, m.clone());
    for k in 0..1000u128 {
        l1.insert(k, Arc::new(entry(100)));
        l2.insert(k, Arc::new(entry(100)));
    }
    let mut g = c.benchmark_group("hit");
    g.bench_function("L1", |b| {
        let mut k = 0u128;
        b.iter(|| {
            k = (k + 1) % 1000;
            black_box(l1.get(k, Instant::now()))
        })
    });
    g.bench_function("L2", |b| {
        let mut k = 0u128;
        b.iter(|| {
            k = (k + 1) % 1000;
            black_box(l2.get(k, Instant::now()))
        })
    });
    g.finish();
}

/// The L2 candidates, behind one interface for the 2-thread bench.
trait Candidate: Send + Sync {
    fn get(&self, k: u128) -> Option<Arc<Entry>>;
    fn insert(&self, k: u128, v: Arc<Entry>);
}

struct Quick(quick_cache::sync::Cache<u128, Arc<Entry>, voxterm_weighter::W, KeyHash>);
mod voxterm_weighter {
    use super::*;
    #[derive(Clone, Copy)]
    pub struct W;
    impl quick_cache::Weighter<u128, Arc<Entry>> for W {
        fn weight(&self, _k: &u128, v: &Arc<Entry>) -> u64 {
            v.weight() as u64
        }
    }
}
impl Candidate for Quick {
    fn get(&self, k: u128) -> Option<Arc<Entry>> {
        self.0.get(&k)
    }
    fn insert(&self, k: u128, v: Arc<Entry>) {
        self.0.insert(k, v)
    }
}

struct Moka(moka::sync::Cache<u128, Arc<Entry>>);
impl Candidate for Moka {
    fn get(&self, k: u128) -> Option<Arc<Entry>> {
        self.0.get(&k)
    }
    fn insert(&self, k: u128, v: Arc<Entry>) {
        self.0.insert(k, v)
    }
}

/// One shard: an LRU and the bytes it holds.
type Shard = Mutex<(LruCache<u128, Arc<Entry>, KeyHash>, usize)>;

struct Sharded(Vec<Shard>, usize);
impl Sharded {
    fn new(shards: usize, bytes: usize) -> Sharded {
        Sharded(
            (0..shards)
                .map(|_| Mutex::new((LruCache::unbounded_with_hasher(KeyHash), 0)))
                .collect(),
            bytes / shards,
        )
    }
    fn shard(&self, k: u128) -> &Shard {
        &self.0[(k as usize >> 7) % self.0.len()]
    }
}
impl Candidate for Sharded {
    fn get(&self, k: u128) -> Option<Arc<Entry>> {
        self.shard(k).lock().ok()?.0.get(&k).cloned()
    }
    fn insert(&self, k: u128, v: Arc<Entry>) {
        let Ok(mut s) = self.shard(k).lock() else {
            return;
        };
        let w = v.weight();
        if let Some(old) = s.0.put(k, v) {
            s.1 -= old.weight();
        }
        s.1 += w;
        while s.1 > self.1 {
            match s.0.pop_lru() {
                Some((_, old)) => s.1 -= old.weight(),
                None => break,
            }
        }
    }
}

fn candidates(bytes: usize) -> Vec<(&'static str, Arc<dyn Candidate>)> {
    vec![
        (
            "quick_cache",
            Arc::new(Quick(quick_cache::sync::Cache::with(
                bytes / 2000,
                bytes as u64,
                voxterm_weighter::W,
                KeyHash,
                Default::default(),
            ))) as Arc<dyn Candidate>,
        ),
        (
            "moka",
            Arc::new(Moka(
                moka::sync::Cache::builder()
                    .max_capacity(bytes as u64)
                    .weigher(|_k, v: &Arc<Entry>| v.weight() as u32)
                    .build(),
            )),
        ),
        ("sharded_mutex_lru", Arc::new(Sharded::new(16, bytes))),
    ]
}

/// Zipf(s) over `n` ranks: a precomputed CDF sampled by binary search.
struct Zipf(Vec<f64>);
impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 1..=n {
            sum += 1.0 / (r as f64).powf(s);
            cdf.push(sum);
        }
        for v in &mut cdf {
            *v /= sum;
        }
        Zipf(cdf)
    }
    fn sample(&self, rng: &mut fastrand::Rng) -> u128 {
        let u = rng.f64();
        self.0.partition_point(|&c| c < u) as u128
    }
}

fn l2_two_threads(c: &mut Criterion) {
    let zipf = Zipf::new(10_000, 1.0);
    let mut rng = fastrand::Rng::with_seed(7);
    let stream: Arc<Vec<u128>> = Arc::new((0..100_000).map(|_| zipf.sample(&mut rng)).collect());
    let mut g = c.benchmark_group("L2_gets_2_threads");
    g.throughput(Throughput::Elements(2 * stream.len() as u64));
    g.sample_size(20);
    for (name, cache) in candidates(64 << 20) {
        for k in 0..10_000u128 {
            cache.insert(k, Arc::new(entry(100)));
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let hs: Vec<_> = (0..2)
                        .map(|t| {
                            let (cache, stream) = (cache.clone(), stream.clone());
                            std::thread::spawn(move || {
                                let mut n = 0usize;
                                let off = t * 50_000;
                                for i in 0..stream.len() {
                                    let k = stream[(i + off) % stream.len()];
                                    n += cache.get(k).is_some() as usize;
                                }
                                n
                            })
                        })
                        .collect();
                    for h in hs {
                        black_box(h.join().unwrap_or(0));
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

/// Hit rates at equal memory on a Zipf stream, both raw and as an L2 sees it
/// (behind a small LRU L1), printed once.
fn hit_rates(_c: &mut Criterion) {
    let keys = 100_000usize;
    let zipf = Zipf::new(keys, 0.9);
    let mut rng = fastrand::Rng::with_seed(42);
    // Output sizes vary by command: 100..4100 bytes, fixed per key.
    let size = |k: u128| 100 + ((k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % 4000) as usize;
    let stream: Vec<u128> = (0..1_000_000).map(|_| zipf.sample(&mut rng)).collect();
    let total_bytes: usize = (0..keys as u128).map(size).sum();
    for pct in [1usize, 5] {
        let bytes = total_bytes * pct / 100;
        for behind_l1 in [false, true] {
            let mut l1: LruCache<u128, usize, KeyHash> = LruCache::unbounded_with_hasher(KeyHash);
            let mut l1_bytes = 0usize;
            let l1_cap = bytes / 20;
            let mut rates = Vec::new();
            let cands: Vec<(&str, Arc<dyn Candidate>)> = candidates(bytes)
                .into_iter()
                .filter(|(n, _)| *n != "moka")
                .collect();
            let mut hits = vec![0usize; cands.len()];
            let mut seen = 0usize;
            for &rank in &stream {
                // Real keys are uniform hashes: spread ranks the same way, or a
                // sharded cache would get its hottest keys in one shard.
                let k = mix(rank);
                let size = |_k: u128| size(rank);
                if behind_l1 {
                    if l1.get(&k).is_some() {
                        continue;
                    }
                    l1_bytes += size(k);
                    l1.put(k, size(k));
                    while l1_bytes > l1_cap {
                        match l1.pop_lru() {
                            Some((_, s)) => l1_bytes -= s,
                            None => break,
                        }
                    }
                }
                seen += 1;
                for (i, (_, c)) in cands.iter().enumerate() {
                    if c.get(k).is_some() {
                        hits[i] += 1;
                    } else {
                        c.insert(k, Arc::new(entry(size(k))));
                    }
                }
            }
            for (i, (name, _)) in cands.iter().enumerate() {
                rates.push(format!(
                    "{name} {:.1}%",
                    100.0 * hits[i] as f64 / seen as f64
                ));
            }
            println!(
                "# hit rate, Zipf(0.9) over {keys} commands, memory {pct}% of the working set{}: {}",
                if behind_l1 { ", behind an L1 LRU of 1/20 that size" } else { "" },
                rates.join(", ")
            );
        }
    }
}

/// SplitMix64 finalizer: rank → uniform key.
fn mix(rank: u128) -> u128 {
    let mut z = (rank as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    u128::from(z ^ (z >> 31))
}

fn redis_url() -> Option<(String, Option<std::process::Child>)> {
    if let Ok(u) = std::env::var("REDIS_URL") {
        return Some((u, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((format!("redis://127.0.0.1:{port}/"), Some(child)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn l3(c: &mut Criterion) {
    let Some((url, child)) = redis_url() else {
        println!("# L3: no redis-server and no REDIS_URL: skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let m = Arc::new(Metrics::new());
    let l3 = rt.block_on(async {
        let l3 = L3::start(
            L3Config {
                url: url.clone(),
                cluster: false,
                deadline: Duration::from_millis(50),
                write_timeout: Duration::from_millis(200),
                compress_at: 1024,
                max_entry: 1 << 20,
                breaker_failures: 3,
                breaker_cooldown: Duration::from_secs(1),
                publish_generations: false,
            },
            m,
        )
        .expect("l3");
        while !l3.connected() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        l3.put(1, &entry(100));
        tokio::time::sleep(Duration::from_millis(100)).await;
        l3
    });
    let raw = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = redis::aio::ConnectionManager::new(client)
            .await
            .expect("conn");
        redis::cmd("SET")
            .arg("voxterm:bench:raw")
            .arg(vec![b'x'; 110])
            .arg("PX")
            .arg(600_000)
            .query_async::<()>(&mut conn)
            .await
            .expect("SET");
        conn
    });
    // Medians over the same interleaved run, so both see the same machine state.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let mut conn = raw.clone();
        for _ in 0..5000 {
            let t = Instant::now();
            black_box(l3.get(1).await.expect("L3 hit"));
            a.push(t.elapsed());
            let t = Instant::now();
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg("voxterm:bench:raw")
                .query_async(&mut conn)
                .await
                .expect("GET");
            black_box(v);
            b.push(t.elapsed());
        }
    });
    let (ma, mb) = (median(a), median(b));
    println!(
        "# L3 hit median {:?} vs raw GET median {:?}: {:.2}x",
        ma,
        mb,
        ma.as_secs_f64() / mb.as_secs_f64()
    );
    let mut g = c.benchmark_group("L3");
    g.bench_function("hit", |bch| {
        bch.to_async(&rt)
            .iter(|| async { black_box(l3.get(1).await) })
    });
    g.bench_function("raw_redis_get", |bch| {
        bch.to_async(&rt).iter(|| {
            let mut conn = raw.clone();
            async move {
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg("voxterm:bench:raw")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(None);
                black_box(v)
            }
        })
    });
    g.finish();
    drop(rt);
    if let Some(mut ch) = child {
        let _ = ch.kill();
        let _ = ch.wait();
    }
}

fn e2e(c: &mut Criterion) {
    use voxterm::client::{Client, ClientOptions};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let start = |cache: bool| {
        rt.block_on(async move {
            let mut cfg = voxterm::config::Preset::Development.config();
            cfg.server.listen = "127.0.0.1:0".parse().expect("addr");
            cfg.cache.enabled = cache;
            let server = voxterm::server::Server::bind(cfg).await.expect("bind");
            let url = format!("ws://{}/ws", server.local_addr().expect("addr"));
            tokio::spawn(server.run(std::future::pending()));
            Client::connect(&url, ClientOptions::default())
                .await
                .expect("connect")
        })
    };
    let mut cached = start(true);
    let mut uncached = start(false);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..500 {
            let t = Instant::now();
            black_box(cached.run(0, "echo hi", 0).await.expect("run"));
            a.push(t.elapsed());
            let t = Instant::now();
            black_box(uncached.run(0, "echo hi", 0).await.expect("run"));
            b.push(t.elapsed());
        }
    });
    println!(
        "# e2e `echo hi` over the WebSocket: cache median {:?}, exec (--no-cache) median {:?}",
        median(a),
        median(b)
    );
    let mut g = c.benchmark_group("e2e_echo_hi");
    g.bench_function("cache", |bch| {
        bch.iter(|| rt.block_on(async { black_box(cached.run(0, "echo hi", 0).await) }))
    });
    g.sample_size(30);
    g.bench_function("exec", |bch| {
        bch.iter(|| rt.block_on(async { black_box(uncached.run(0, "echo hi", 0).await) }))
    });
    g.finish();
}

/// What a validated fs-read hit adds (one input stamp) next to what it saves
/// (running the command), in the same run: readers and listings, trees, and
/// git in a project like the load tester's (an ignored `users/` of 200 dirs).
fn validate(c: &mut Criterion) {
    use voxterm::cache::Inputs;
    let dir = std::env::temp_dir().join(format!("voxterm-bench-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for i in 0..20 {
        std::fs::write(dir.join(format!("file{i:02}.txt")), "line\n".repeat(i + 1)).expect("write");
    }
    let fixture = "mkdir -p src docs users && printf 'users/\\n' > .gitignore \
        && printf 'fn main() {}\\n' > src/main.rs && printf 'pub fn a() {}\\n' > src/lib.rs \
        && seq 1 400 | sed 's/^/guide line /' > docs/guide.md \
        && git init -q . && git add -A \
        && git -c user.name=b -c user.email=b@x commit -qm one \
        && for i in 1 2 3 4 5 6; do echo $i >> src/lib.rs; \
           git -c user.name=b -c user.email=b@x commit -qam c$i; done \
        && echo x >> src/lib.rs && seq 0 199 | sed 's|^|users/u|' | xargs mkdir -p";
    let git_ok = std::process::Command::new("sh")
        .args(["-c", fixture])
        .current_dir(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    // Stamps refuse times under a second old. `git status` refreshes the index
    // once the files are no longer racy for git either; the spawns below then
    // leave it alone, so the stamps measured stay valid.
    std::thread::sleep(voxterm::cache::inputs::RACY + Duration::from_millis(100));
    if git_ok {
        let _ = std::process::Command::new("git")
            .arg("status")
            .current_dir(&dir)
            .output();
        std::thread::sleep(voxterm::cache::inputs::RACY + Duration::from_millis(100));
    }
    let env: Vec<(String, String)> = std::env::var("HOME")
        .map(|h| vec![("HOME".to_owned(), h)])
        .unwrap_or_default();
    let life = Duration::from_secs(600);
    let mut g = c.benchmark_group("validate");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let mut lines = vec![
        "cat file07.txt",
        "ls -l",
        "ls -R src",
        "grep -rn 'line 1' docs",
        "find . -path ./users -prune -o -name '*.rs' -print",
        "find . \\( -path ./users -o -path ./.git \\) -prune -o -type f -print",
        "du -s src",
        "tree src",
    ];
    if git_ok {
        lines.extend([
            "git status",
            "git status --short",
            "git diff",
            "git log --oneline -20",
            "git log --stat -5",
            "git branch",
            "git rev-parse HEAD",
        ]);
    } else {
        println!("# validate: git lines skipped (no git)");
    }
    for line in lines {
        let argv = shell_words::split(line).expect("words");
        let inputs = Inputs::of(&argv).expect("validated line");
        if inputs.stamp(&dir, &env, life).is_none() {
            println!("# validate: `{line}` is not stampable here, skipped");
            continue;
        }
        let spawn = || {
            std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir(&dir)
                .output()
        };
        if spawn().is_err() {
            println!(
                "# validate: `{}` is not installed, `{line}` skipped",
                argv[0]
            );
            continue;
        }
        g.bench_function(format!("stamp `{line}`"), |b| {
            b.iter(|| black_box(inputs.stamp(&dir, &env, life)))
        });
        g.bench_function(format!("spawn `{line}`"), |b| b.iter(|| black_box(spawn())));
        if inputs.stamp(&dir, &env, life).is_none() {
            println!("# validate: running `{line}` changed its inputs: later stamps are void");
        }
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The command policy's check of a line: parsed and checked (a line not seen
/// before) vs checked only (a line parsed once, `shell::Line`: the walk is
/// replayed). The engine remembers verdicts with its parsed lines, so a
/// repeated line costs neither.
fn policy_check(c: &mut Criterion) {
    let policy = voxterm::security::CommandPolicy::new(&voxterm::config::PolicyConfig {
        deny: vec!["rm".into(), "git push".into(), "curl".into()],
        ..Default::default()
    })
    .expect("valid")
    .expect("a policy");
    let line = "git status --short && grep -rn TODO src | head -20";
    let mut g = c.benchmark_group("policy_check");
    let mut n = 0u64;
    g.bench_function("parsed", |b| {
        b.iter(|| {
            n += 1;
            // A new line each time (the comment is parsed, then ignored).
            policy.check(black_box(&format!("{line} # {n}")))
        })
    });
    let parsed = voxterm::shell::Line::parse(line);
    g.bench_function("checked", |b| b.iter(|| policy.check(black_box(&parsed))));
    g.finish();
}

criterion_group!(
    benches,
    hits,
    l2_two_threads,
    hit_rates,
    validate,
    policy_check,
    l3,
    e2e
);
criterion_main!(benches);
