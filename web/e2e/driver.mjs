// driver.mjs: a real Chromium through chromedriver's W3C WebDriver HTTP API,
// with Node's own fetch, shared by web/e2e/browser.mjs (the page's checks) and
// web/e2e/pages.mjs (`loadtest browser`: N pages measured at once).
//
// No npm dependency: playwright-core would bring its own protocol client and
// version pinning for what a dozen HTTP calls do here. chromedriver's CDP
// passthrough (`goog/cdp/execute`) adds what WebDriver lacks: a script that
// runs before the page's own (the SpeechRecognition stand-in).
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const ENTER = '\uE007';

export function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() || null;
}

/** Chromium and chromedriver from $CHROMIUM/$CHROMEDRIVER or PATH; `missing` names what is not there. */
export function findBrowser() {
  const chromium = process.env.CHROMIUM || which('chromium') || which('chromium-browser') || which('google-chrome');
  const driver = process.env.CHROMEDRIVER || which('chromedriver');
  return { chromium, driver, missing: !chromium ? 'chromium' : !driver ? 'chromedriver' : null };
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * The browsers chromedriver started are not our children: each is ended by its
 * process id, found by the profile directory that only it uses.
 */
export function killBrowsers(profiles) {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes('--type=')) continue;
    if (profiles.some((p) => cmd.includes(`--user-data-dir=${p}\0`) || cmd.endsWith(`--user-data-dir=${p}`))) {
      try {
        process.kill(Number(pid), 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}

/** Chromium's flags for a measured headless page. */
export function chromiumArgs(profile, extra = []) {
  return [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Pages measured side by side must not be throttled as background tabs.
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
    '--enable-precise-memory-info', '--ignore-certificate-errors', '--js-flags=--expose-gc', '--window-size=1200,800',
    `--user-data-dir=${profile}`, ...extra,
  ];
}

/** One chromedriver process; `session()` starts one browser (a Page) each. */
export class ChromeDriver {
  constructor(url, child, chromium) {
    this.url = url;
    this.child = child;
    this.chromium = chromium;
    this.profiles = [];
  }

  static async start() {
    const { chromium, driver, missing } = findBrowser();
    if (missing) throw new Error(`missing ${missing}: apt-get install chromium chromium-driver`);
    const port = await freePort();
    const child = spawn(driver, [`--port=${port}`], { stdio: 'ignore' });
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      try {
        const st = await (await fetch(`${url}/status`)).json();
        if (st.value?.ready) break;
      } catch {
        // not up yet
      }
      if (i > 100) {
        child.kill('SIGTERM');
        throw new Error('chromedriver did not start');
      }
      await sleep(100);
    }
    return new ChromeDriver(url, child, chromium);
  }

  async wd(method, path, body) {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value).slice(0, 500)}`);
    return json.value;
  }

  /** A new browser with its own profile directory. */
  async session(profile, extraArgs = []) {
    this.profiles.push(profile);
    const session = await this.wd('POST', '/session', {
      capabilities: {
        alwaysMatch: {
          browserName: 'chrome',
          'goog:chromeOptions': { binary: this.chromium, args: chromiumArgs(profile, extraArgs) },
        },
      },
    });
    const page = new Page(this, session.sessionId);
    await page.wd('POST', '/timeouts', { script: 600000 });
    return page;
  }

  /** Ends every browser started here, then chromedriver. */
  stop() {
    killBrowsers(this.profiles);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}

/** One WebDriver session: one browser window. */
export class Page {
  constructor(driver, sid) {
    this.driver = driver;
    this.sid = sid;
  }

  wd(method, path, body) {
    return this.driver.wd(method, `/session/${this.sid}${path}`, body);
  }

  run(script, ...args) {
    return this.wd('POST', '/execute/sync', { script, args });
  }

  runAsync(script, ...args) {
    return this.wd('POST', '/execute/async', { script, args });
  }

  /** A Chrome DevTools Protocol command through chromedriver (no events). */
  cdp(cmd, params = {}) {
    return this.wd('POST', '/goog/cdp/execute', { cmd, params });
  }

  goto(url) {
    return this.wd('POST', '/url', { url });
  }

  find(css) {
    return this.wd('POST', '/element', { using: 'css selector', value: css });
  }

  async click(css) {
    return this.wd('POST', `/element/${elemId(await this.find(css))}/click`, {});
  }

  async type(css, text) {
    return this.wd('POST', `/element/${elemId(await this.find(css))}/value`, { text });
  }

  screenshot() {
    return this.wd('GET', '/screenshot');
  }

  /** Polls `script` in the page until it returns a truthy value. */
  async until(what, script, timeoutMs = 10000, ...args) {
    const t0 = Date.now();
    let last;
    while (Date.now() - t0 < timeoutMs) {
      last = await this.run(script, ...args);
      if (last) return last;
      await sleep(50);
    }
    throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
  }

  close() {
    return this.driver.wd('DELETE', `/session/${this.sid}`);
  }
}

/** The W3C element reference's one value. */
export const elemId = (e) => Object.values(e)[0];
