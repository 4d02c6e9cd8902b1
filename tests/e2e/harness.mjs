// What the end-to-end tests share: a static server for web/, Debian's Chromium with
// WebGPU (SwiftShader when there is no GPU) through playwright-core, opening the page and
// waiting for training. Not a test file itself (node --test runs *.test.mjs).

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB = fileURLToPath(new URL('../../web/', import.meta.url));
const { chromium } = createRequire(join(WEB, 'package.json'))('playwright-core');

export const QUERY = process.env.MFR_E2E_QUERY || '';
export const ARTIFACTS = resolve(process.env.ARTIFACTS_DIR || 'target/artifacts');

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/** A static file server for web/ on 127.0.0.1 and a free port. */
async function serve(root) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(root.endsWith(sep) ? root : root + sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': MIME[extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

/** The server and a browser context (viewport as given); `close()` ends both. */
export async function launch(viewport = { width: 1600, height: 1250 }) {
  const site = await serve(WEB);
  const profile = await mkdtemp(join(tmpdir(), 'mfr-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: false, // the flag below selects headless mode itself
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    viewport,
    acceptDownloads: true,
  });
  const close = async () => {
    await context.close();
    await new Promise((ok) => site.server.close(ok));
    await rm(profile, { recursive: true, force: true });
  };
  return { site, context, close };
}

/** Waits until the page has a trainer and nothing is queued. */
export async function waitForTrainer(page) {
  await page.waitForFunction(() => document.querySelector('[data-testid="adapter"]').dataset.state !== 'pending', null,
    { timeout: 60_000 });
  const adapter = page.getByTestId('adapter');
  const state = await adapter.getAttribute('data-state');
  const why = await page.evaluate(() => ['no-webgpu', 'load-error'].map((id) => document.getElementById(id))
    .filter((el) => !el.hidden).map((el) => el.textContent.trim()).join(' '));
  assert.notEqual(state, 'error', `no adapter: ${await adapter.textContent()} ${why}`);
  assert.match(await adapter.textContent(), /^Adapter: .+ · .+/);
  await page.waitForFunction(() => window.__mfr.trainersCreated >= 1 && window.__mfr.idle, null, { timeout: 180_000 });
}

/**
 * Opens index.html (+ `hash`) in `context`, collecting console errors and uncaught
 * exceptions into `problems`, and waits for its first trainer.
 */
export async function openPage({ site, context }, hash = '') {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    // The page asks for each sample file (HEAD) at start-up; a build without the LM sample answers 404.
    if (/status of 404/.test(msg.text()) && msg.location().url.includes('/samples/lm/')) return;
    problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await page.goto(site.url + 'index.html' + QUERY + hash);
  await waitForTrainer(page);
  return { page, problems };
}

/** Clicks Pause and waits until no trainer call is queued or in flight. */
export async function pauseAndSettle(page) {
  assert.equal(await page.getByTestId('start').textContent(), 'Pause',
    `training stopped by itself: ${await page.getByTestId('status').textContent()}`);
  await page.getByTestId('start').click();
  await page.waitForFunction(() => !window.__mfr.running && window.__mfr.idle, null, { timeout: 120_000 });
}

/** Starts training, waits for a metrics read at step >= n, pauses and settles (the views are re-read). */
export async function trainTo(page, n, timeout) {
  await page.getByTestId('start').click();
  await page.waitForFunction((n) => (window.__mfr.lastMetrics?.step ?? 0) >= n || !window.__mfr.running, n,
    { timeout, polling: 250 });
  await pauseAndSettle(page);
  const step = await page.evaluate(() => window.__mfr.lastMetrics?.step ?? 0);
  assert.ok(step >= n, `trained to step ${step} of ${n}: ${await page.getByTestId('status').textContent()}`);
}
