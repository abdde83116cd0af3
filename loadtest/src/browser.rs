//! `loadtest browser`: N voice-terminal pages in real headless Chromium against
//! a server, measured in the page, graded on the scorecard's browser targets.
//!
//! **Why Node drives the browsers.** The pages are driven by
//! `web/e2e/pages.mjs` under Node (embedded in this binary and written to a
//! temporary directory, so an installed `loadtest` needs no checkout), which
//! prints one `voxterm-browser-result: {json}` line that this module parses
//! and grades. The alternative, WebDriver from Rust, would need an HTTP/1.1
//! client with POST and JSON bodies that the tree does not have (its
//! `voxterm::client::http_get` is GET only) and would still ship the in-page
//! measuring as JavaScript strings; Node is already what the web tests need
//! (`tests/web.rs`), and the script shares its WebDriver helpers
//! (`web/e2e/driver.mjs`) with the page's own browser test, so there is one
//! way to start and drive Chromium in the project.
//!
//! What is measured (`web/measure.js`): Enter → the frame after the output
//! and the block's end line are in the terminal, for cached and uncached
//! commands (with and without the `Classify` round trip), and where that time
//! went (stages); page load → first contentful paint and → interactive (the
//! script ready and the WebSocket open); the page's JS heap after its commands.

use crate::args::BrowserArgs;
use crate::hist::{new_hist, record, summary, Summary};
use crate::serve::ServerChild;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use voxterm::scorecard::{
    ids, render_text, Category, Grade, Measurements, MetricScore, Scorecard, Targets,
};

/// The page driver and its helpers, as in `web/e2e/`.
const PAGES_MJS: &str = include_str!("../../web/e2e/pages.mjs");
const DRIVER_MJS: &str = include_str!("../../web/e2e/driver.mjs");
/// The line of `pages.mjs`'s output that carries the figures.
const RESULT: &str = "voxterm-browser-result: ";
/// Version of [`BrowserReport`]'s JSON.
pub const SCHEMA: &str = "voxterm-loadtest-browser/1";

/// What `pages.mjs` prints (its `voxterm-browser/1` schema).
#[derive(Debug, Deserialize)]
pub struct PagesResult {
    #[serde(default)]
    chromium: Option<String>,
    #[serde(rename = "wallMs")]
    wall_ms: f64,
    pages: Vec<PageResult>,
}

#[derive(Debug, Deserialize)]
struct PageResult {
    load: PageLoad,
    #[serde(rename = "heapAfterLoadBytes")]
    heap_after_load: Option<f64>,
    #[serde(rename = "heapAfterRunBytes")]
    heap_after_run: Option<f64>,
    commands: Vec<Command>,
}

/// A page's load figures, ms from navigation start (`pageFigures()`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageLoad {
    #[serde(rename = "firstPaint", default)]
    pub first_paint: Option<f64>,
    #[serde(rename = "firstContentfulPaint", default)]
    pub first_contentful_paint: Option<f64>,
    #[serde(rename = "domInteractive", default)]
    pub dom_interactive: Option<f64>,
    #[serde(rename = "scriptReady", default)]
    pub script_ready: Option<f64>,
    #[serde(default)]
    pub connected: Option<f64>,
    #[serde(default)]
    pub interactive: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Command {
    #[serde(rename = "servedFrom")]
    served_from: Option<String>,
    #[serde(rename = "backendUs")]
    backend_us: Option<f64>,
    total: f64,
    run: f64,
    #[serde(default)]
    asked: bool,
    /// ms from Enter: decided, first output, exit, parsed, frame, painted.
    #[serde(default)]
    stages: Vec<Option<f64>>,
}

/// The stages of [`Command::stages`] after Enter, in order (web/measure.js).
const STAGES: [&str; 6] = ["decided", "output", "exit", "parsed", "frame", "painted"];

/// cached (any cache tier or a prefetch), uncached (a process ran), or what
/// else ended the command.
fn kind(served_from: Option<&str>) -> &'static str {
    match served_from {
        Some("Exec") => "uncached",
        Some("Builtin") => "builtin",
        Some(_) => "cached",
        None => "failed",
    }
}

/// The report of one `loadtest browser` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrowserReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// The page's URL.
    pub url: String,
    /// The browser driver's version.
    pub chromium: Option<String>,
    /// Pages run at once.
    pub pages: usize,
    /// Wall time of the pages' run, s.
    pub wall_s: f64,
    /// Commands measured, by kind (`cached`, `uncached`, `builtin`, `failed`).
    pub commands: BTreeMap<String, u64>,
    /// Commands that were read back (asked about) before they ran.
    pub read_back: u64,
    /// Enter → painted (`<kind>`), and from the decision to run → painted
    /// (`<kind>:run`, without the Classify round trip), ms.
    pub latency: BTreeMap<String, Summary>,
    /// Median ms from Enter to each stage, by kind (`<kind>:<stage>`).
    pub stages_p50_ms: BTreeMap<String, f64>,
    /// p95 of the page's share (Enter → painted less the backend time), ms.
    pub browser_p95_ms: Option<f64>,
    /// Each page's load figures.
    pub load: Vec<PageLoad>,
    /// Each page's JS heap after load and after its commands, MB.
    pub heap_after_load_mb: Vec<Option<f64>>,
    /// See `heap_after_load_mb`.
    pub heap_after_run_mb: Vec<Option<f64>>,
    /// The grade on the measured (browser) targets.
    pub grade: Grade,
    /// Overall 0–100 of the measured targets.
    pub score: f64,
    /// Category scores (null: not measured).
    pub categories: BTreeMap<Category, Option<f64>>,
    /// Every target: the browser's measured, the others not.
    pub metrics: Vec<MetricScore>,
    /// Advice for each miss.
    pub recommendations: Vec<String>,
}

const MB: f64 = 1024.0 * 1024.0;

fn max_of(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    xs.flatten().filter(|v| v.is_finite()).reduce(f64::max)
}

/// Summaries, the scorecard's browser measurements and the grade, from what
/// the pages measured.
pub fn report(url: &str, r: &PagesResult, targets: &Targets) -> BrowserReport {
    let us = |ms: f64| (ms.max(0.0) * 1000.0).round() as u64;
    let mut hists: BTreeMap<String, crate::hist::Hist> = BTreeMap::new();
    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut commands: BTreeMap<String, u64> = BTreeMap::new();
    let mut all_total = new_hist();
    let mut share = new_hist();
    let mut read_back = 0;
    for c in r.pages.iter().flat_map(|p| &p.commands) {
        let k = kind(c.served_from.as_deref());
        *commands.entry(k.to_owned()).or_default() += 1;
        read_back += u64::from(c.asked);
        if k == "failed" {
            continue;
        }
        record(
            hists.entry(k.to_owned()).or_insert_with(new_hist),
            us(c.total),
        );
        record(
            hists.entry(format!("{k}:run")).or_insert_with(new_hist),
            us(c.run),
        );
        record(&mut all_total, us(c.total));
        let backend_ms = c.backend_us.unwrap_or(0.0) / 1000.0;
        record(&mut share, us(c.total - backend_ms));
        for (name, v) in STAGES.iter().zip(&c.stages) {
            if let Some(v) = v {
                stages.entry(format!("{k}:{name}")).or_default().push(*v);
            }
        }
    }
    let latency: BTreeMap<String, Summary> =
        hists.iter().map(|(k, h)| (k.clone(), summary(h))).collect();
    let stages_p50_ms = stages
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, v[v.len() / 2])
        })
        .collect();
    let p95 = |h: &crate::hist::Hist| (!h.is_empty()).then(|| summary(h).p95_ms);
    let browser_p95_ms = p95(&share);
    let mut m = Measurements::new();
    let mut put = |id: &str, v: Option<f64>| {
        if let Some(v) = v {
            m.insert(id.to_owned(), v);
        }
    };
    put(ids::BROWSER_P95_MS, browser_p95_ms);
    put(ids::BROWSER_E2E_P95_MS, p95(&all_total));
    // The slowest page: each page is a person waiting.
    put(
        ids::FIRST_PAINT_MS,
        max_of(r.pages.iter().map(|p| p.load.first_contentful_paint)),
    );
    put(
        ids::INTERACTIVE_MS,
        max_of(r.pages.iter().map(|p| p.load.interactive)),
    );
    put(
        ids::BROWSER_MEMORY_MB,
        max_of(r.pages.iter().map(|p| p.heap_after_run)).map(|b| b / MB),
    );
    let card = Scorecard::grade(targets, &m, Vec::new());
    BrowserReport {
        schema: SCHEMA.to_owned(),
        url: url.to_owned(),
        chromium: r.chromium.clone(),
        pages: r.pages.len(),
        wall_s: r.wall_ms / 1000.0,
        commands,
        read_back,
        latency,
        stages_p50_ms,
        browser_p95_ms,
        load: r.pages.iter().map(|p| p.load.clone()).collect(),
        heap_after_load_mb: r
            .pages
            .iter()
            .map(|p| p.heap_after_load.map(|b| b / MB))
            .collect(),
        heap_after_run_mb: r
            .pages
            .iter()
            .map(|p| p.heap_after_run.map(|b| b / MB))
            .collect(),
        grade: card.grade,
        score: card.score,
        categories: card.categories,
        metrics: card.metrics,
        recommendations: card.recommendations,
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

impl BrowserReport {
    /// The text report: the figures by kind, where the time went, the pages'
    /// load and heap, then the scorecard.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let counts: Vec<String> = self
            .commands
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let _ = writeln!(
            out,
            "voxterm loadtest browser: {} pages · {:.1} s · {} · commands: {} · read back {}",
            self.pages,
            self.wall_s,
            self.url,
            counts.join(", "),
            self.read_back
        );
        if let Some(c) = &self.chromium {
            let _ = writeln!(out, "browser: {c} (headless)");
        }
        for (k, s) in &self.latency {
            let what = match k.split_once(':') {
                Some((kind, _)) => format!("{kind}, decision → painted"),
                None => format!("{k}, Enter → painted"),
            };
            let _ = writeln!(
                out,
                "{what:<34} ms: p50 {:.1} · p95 {:.1} · p99 {:.1} · max {:.1} ({} commands)",
                s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms, s.count
            );
        }
        for kind in ["cached", "uncached"] {
            let parts: Vec<String> = STAGES
                .iter()
                .filter_map(|st| {
                    self.stages_p50_ms
                        .get(&format!("{kind}:{st}"))
                        .map(|v| format!("{st} {v:.1}"))
                })
                .collect();
            if !parts.is_empty() {
                let _ = writeln!(out, "{kind} p50 ms from Enter: {}", parts.join(" · "));
            }
        }
        for (i, l) in self.load.iter().enumerate() {
            let _ = writeln!(
                out,
                "page {i}: first paint {} · first contentful paint {} · DOM interactive {} · script ready {} · connected {} ms · heap {} MB after load, {} MB after its commands",
                opt(l.first_paint),
                opt(l.first_contentful_paint),
                opt(l.dom_interactive),
                opt(l.script_ready),
                opt(l.connected),
                opt(self.heap_after_load_mb.get(i).copied().flatten()),
                opt(self.heap_after_run_mb.get(i).copied().flatten()),
            );
        }
        let _ = writeln!(out);
        let card = Scorecard {
            metrics: self.metrics.clone(),
            categories: self.categories.clone(),
            score: self.score,
            grade: self.grade,
            critical_failures: Vec::new(),
            recommendations: self.recommendations.clone(),
        };
        out.push_str(&render_text(&card));
        out
    }
}

/// The page's URL for a server's WebSocket URL (`ws://h:p/ws` → `http://h:p/`).
pub fn page_url(ws: &str) -> anyhow::Result<String> {
    let (scheme, rest) = ws
        .split_once("://")
        .with_context(|| format!("not a URL: {ws}"))?;
    let scheme = match scheme {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => bail!("the URL's scheme is {other}: use ws://HOST:PORT/ws (or wss://)"),
    };
    let host = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!host.is_empty(), "no host in {ws}");
    Ok(format!("{scheme}://{host}/"))
}

/// The first of `names` on PATH.
pub fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A directory of our own for the scripts, removed when dropped.
struct Scripts(PathBuf);

impl Scripts {
    fn write() -> anyhow::Result<Scripts> {
        let dir = std::env::temp_dir().join(format!(
            "voxterm-loadtest-browser-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let me = Scripts(dir);
        std::fs::write(me.0.join("pages.mjs"), PAGES_MJS)?;
        std::fs::write(me.0.join("driver.mjs"), DRIVER_MJS)?;
        Ok(me)
    }

    fn pages(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scripts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `pages.mjs` and returns what it measured.
async fn drive(a: &BrowserArgs, page: &str) -> anyhow::Result<PagesResult> {
    let node = on_path(&["node", "nodejs"])
        .context("node not found on PATH: loadtest browser drives Chromium with web/e2e/pages.mjs under Node ≥ 20 (apt-get install nodejs)")?;
    for (what, names) in [
        (
            "chromium",
            &["chromium", "chromium-browser", "google-chrome"][..],
        ),
        ("chromedriver", &["chromedriver"][..]),
    ] {
        let env = if what == "chromium" {
            "CHROMIUM"
        } else {
            "CHROMEDRIVER"
        };
        if std::env::var_os(env).is_none() && on_path(names).is_none() {
            bail!(
                "{what} not found on PATH (nor ${env}): apt-get install chromium chromium-driver"
            );
        }
    }
    let scripts = Scripts::write()?;
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(scripts.pages().join("pages.mjs"))
        .args(["--url", page])
        .args(["--pages", &a.pages.to_string()])
        .args(["--duration-ms", &a.duration.as_millis().to_string()])
        .args(["--think-min-ms", &a.think_min_ms.to_string()])
        .args(["--think-max-ms", &a.think_max_ms.to_string()])
        .args(["--cached-share", &a.cached_share.to_string()]);
    if let Some(t) = &a.token {
        cmd.args(["--token", t]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start node")?;
    let stdout = child.stdout.take().context("no stdout from node")?;
    let read = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut found = None;
        while let Some(line) = lines.next_line().await? {
            match line.strip_prefix(RESULT) {
                Some(json) => found = Some(json.to_owned()),
                None => eprintln!("{line}"),
            }
        }
        let status = child.wait().await?;
        anyhow::Ok((status, found))
    };
    // Starting the browsers and loading the pages, then the run itself.
    let limit = a.duration + Duration::from_secs(120 + 10 * a.pages as u64);
    let (status, found) = tokio::time::timeout(limit, read)
        .await
        .with_context(|| format!("the pages did not finish within {limit:?}"))??;
    let json = match found {
        Some(j) if status.success() => j,
        _ => bail!("web/e2e/pages.mjs failed ({status}); see its output above"),
    };
    serde_json::from_str(&json).context("pages.mjs printed a result that is not its schema")
}

pub(crate) async fn browser(a: BrowserArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.pages > 0, "--pages must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.cached_share),
        "--cached-share is a fraction from 0 to 1"
    );
    let targets = match &a.targets {
        Some(p) => Targets::load(p)?,
        None => Targets::default(),
    };
    let (server, ws) = match &a.url {
        Some(u) => (None, u.clone()),
        None => {
            let s = ServerChild::start(&a.server_args).await?;
            let url = s.url.clone();
            (Some(s), url)
        }
    };
    let page = page_url(&ws)?;
    let measured = drive(&a, &page).await;
    if let Some(s) = server {
        if let Some(why) = s.stop().await {
            eprintln!("loadtest browser: {why}");
        }
    }
    let r = report(&page, &measured?, &targets);
    print!("{}", r.text());
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let measured_any = r.latency.values().any(|s| s.count > 0);
    Ok(if !measured_any {
        eprintln!("loadtest browser: no command was measured");
        ExitCode::from(1)
    } else if r.grade < a.min_grade {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"schema":"voxterm-browser/1","chromium":"chromedriver 1","wallMs":3000,"pages":[
      {"page":0,"load":{"firstPaint":100,"firstContentfulPaint":120,"domInteractive":50,"scriptReady":200,"connected":230,"interactive":230},
       "heapAfterLoadBytes":3145728,"heapAfterRunBytes":5242880,"domElements":10,
       "commands":[
         {"line":"echo a","servedFrom":"L1","backendUs":100,"total":12,"run":9,"asked":false,"stages":[3,5,6,7,10,12]},
         {"line":"date +%N","servedFrom":"Exec","backendUs":8000,"total":30,"run":26,"asked":false,"stages":[4,15,16,18,28,30]},
         {"line":"x","servedFrom":null,"backendUs":null,"total":5,"run":5,"asked":true,"stages":[]}]},
      {"page":1,"load":{"firstPaint":90,"firstContentfulPaint":150,"interactive":400},
       "heapAfterLoadBytes":null,"heapAfterRunBytes":10485760,"commands":[]}]}"#;

    #[test]
    fn the_browser_rows_are_measured_and_the_rest_are_not() {
        let r: PagesResult = serde_json::from_str(SAMPLE).unwrap();
        let rep = report("http://h/", &r, &Targets::default());
        let get = |id: &str| rep.metrics.iter().find(|m| m.id == id).unwrap();
        assert_eq!(get(ids::FIRST_PAINT_MS).measured, Some(150.0));
        assert_eq!(get(ids::INTERACTIVE_MS).measured, Some(400.0));
        assert_eq!(get(ids::BROWSER_MEMORY_MB).measured, Some(10.0));
        let e2e = get(ids::BROWSER_E2E_P95_MS).measured.unwrap();
        assert!((29.0..=31.0).contains(&e2e), "{e2e}");
        // The page's share: 30 − 8 and 12 − 0.1 → p95 about 22.
        let share = get(ids::BROWSER_P95_MS).measured.unwrap();
        assert!((21.0..=23.0).contains(&share), "{share}");
        assert_eq!(get(ids::E2E_P95_MS).measured, None);
        assert_eq!(rep.commands["failed"], 1);
        assert_eq!(rep.read_back, 1);
        assert_eq!(rep.latency["cached"].count, 1);
        assert_eq!(rep.stages_p50_ms["uncached:output"], 15.0);
        let text = rep.text();
        assert!(text.contains("not measured"), "{text}");
        assert!(text.contains("end to end in a browser p95"), "{text}");
    }

    #[test]
    fn page_urls_follow_the_websocket_url() {
        assert_eq!(
            page_url("ws://127.0.0.1:7878/ws").unwrap(),
            "http://127.0.0.1:7878/"
        );
        assert_eq!(page_url("wss://h:1/ws").unwrap(), "https://h:1/");
        assert!(page_url("ftp://h/").is_err());
        assert!(page_url("nothing").is_err());
    }
}
