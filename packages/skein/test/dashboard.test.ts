import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Client } from '@skein/client';
import { LocalCluster } from '../src/index.js';
import { parsePrometheus, promValue } from '../../dashboard/test/prometheus-parse.js';
import { REPO, SKEIN_BIN, readyOf, startProcess, until, type Proc } from './helpers.js';

// Level 3: the dashboard of a real LocalCluster in a real headless Chromium (Debian's chromium,
// installed by tools/setup-test-deps.sh), driven by playwright-core.
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const ARTIFACTS = join(REPO, '.artifacts');

function launch(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: the dashboard tests need Debian's chromium (tools/setup-test-deps.sh installs it; or set CHROMIUM_PATH).`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// The few DOM types the page.evaluate callbacks use (they run in the browser; the tests are
// compiled without the DOM library, whose stream types clash with Node's).
interface PageElement {
  dataset: Record<string, string | undefined>;
  style: { width: string };
  querySelector(selector: string): PageElement | null;
}
declare const document: { querySelectorAll(selector: string): ArrayLike<PageElement> };
type HTMLElement = PageElement;

/** The progress bar of a task group as the page draws it: fractions of each segment. */
async function progressOf(page: Page, group: string): Promise<{ done: number; memory: number; processing: number; waiting: number; erred: number } | null> {
  return page.evaluate((g) => {
    const bars = Array.from(document.querySelectorAll('#progress .bar')) as HTMLElement[];
    const bar = bars.find((b) => b.dataset['group'] === g);
    if (!bar) return null;
    const part = (name: string) => parseFloat((bar.querySelector(`.seg-${name}`) as HTMLElement | null)?.style.width ?? '0') / 100;
    return { done: part('done'), memory: part('memory'), processing: part('processing'), waiting: part('waiting'), erred: part('erred') };
  }, group);
}

describe('dashboard of a LocalCluster in Chromium', () => {
  let cluster: LocalCluster;
  let client: Client;
  let browser: Browser;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 2, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    await client?.close();
    await cluster?.close();
  });

  it('has a link, also through the client, and serves /health', async () => {
    expect(cluster.dashboardLink).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/status$/);
    expect(client.dashboardLink).toBe(cluster.dashboardLink);
    const health = await fetch(cluster.dashboardLink.replace('/status', '/health'));
    expect(await health.text()).toBe('ok');
  });

  it('lists the workers, moves the progress bars while a computation runs, shows an erred task', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    await page.goto(cluster.dashboardLink);
    const rows = page.locator('#workers tbody tr');
    await until(async () => (await rows.count()) === 2, 15_000, 'two worker rows');
    const names = await rows.locator('td:first-child').allTextContents();
    expect(names.sort()).toEqual([...cluster.workers.keys()].sort());
    expect(await page.locator('#workers tbody').textContent()).toContain('running');

    // An erred task, then a computation long enough to watch: 4 threads, 800 tasks of ~15 ms.
    const failing = (x: number) => {
      throw new RangeError(`dashboard test failure ${x}`);
    };
    await expect(client.submit(failing, 7).result()).rejects.toThrow(/dashboard test failure 7/);
    const slowInc = (x: number) => {
      const end = Date.now() + 15;
      while (Date.now() < end);
      return x + 1;
    };
    const futures = client.map(slowInc, Array.from({ length: 800 }, (_, i) => i));
    const seen: number[] = [];
    let shot = false;
    const done = client.gather(futures);
    let finished = false;
    void done.then(() => (finished = true), () => (finished = true));
    while (!finished) {
      const p = await progressOf(page, 'slowInc');
      if (p) seen.push(p.done + p.memory);
      if (!shot && p && p.done + p.memory > 0.3) {
        // Mid-computation, with the error listed: every panel has something to show.
        await page.locator('#errors tbody', { hasText: 'dashboard test failure 7' }).waitFor({ timeout: 10_000 });
        mkdirSync(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
        shot = true;
      }
      await new Promise((r) => setTimeout(r, 150));
    }
    expect((await done).length).toBe(800);
    // The bar moved: several distinct partial values, increasing.
    const partial = [...new Set(seen.filter((v) => v > 0 && v < 1))];
    expect(partial.length, `progress samples ${JSON.stringify(seen)}`).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    await until(async () => ((await progressOf(page, 'slowInc'))?.memory ?? 0) > 0.999, 5_000, 'slowInc all in memory');
    expect(shot).toBe(true);

    const errorsText = await page.locator('#errors tbody').textContent();
    expect(errorsText).toContain('RangeError');
    expect(errorsText).toMatch(/failing-/);
    expect(await page.locator('#h-erred').textContent()).not.toBe('');
    // The task stream drew something, and the charts have history.
    expect(await page.locator('#stream-info').textContent()).toMatch(/[1-9]\d* task runs/);
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('/metrics parses as Prometheus text and its counters move with the work', async () => {
    const url = cluster.dashboardLink.replace('/status', '/metrics');
    const scrape = async () => parsePrometheus(await (await fetch(url)).text());
    const before = await scrape();
    const double = (x: number) => x * 2;
    expect(await client.gather(client.map(double, Array.from({ length: 300 }, (_, i) => i)))).toHaveLength(300);
    const boom = (x: number) => {
      throw new Error(`boom ${x}`);
    };
    await expect(client.submit(boom, 1).result()).rejects.toThrow(/boom 1/);
    const after = await scrape();
    expect(promValue(after, 'skein_tasks_completed_total') - promValue(before, 'skein_tasks_completed_total')).toBeGreaterThanOrEqual(300);
    expect(promValue(after, 'skein_tasks_erred_total') - promValue(before, 'skein_tasks_erred_total')).toBeGreaterThanOrEqual(1);
    expect(promValue(after, 'skein_workers', { status: 'running' })).toBe(2);
    expect(promValue(after, 'skein_threads')).toBe(4);
    expect(promValue(after, 'skein_task_group_tasks', { group: 'double', state: 'memory' })).toBe(300);
    for (const w of cluster.workers.values()) {
      expect(promValue(after, 'skein_worker_memory_limit_bytes', { worker: w.address })).toBe(1e9);
      expect(promValue(after, 'skein_worker_memory_rss_bytes', { worker: w.address })).toBeGreaterThanOrEqual(0);
      expect(promValue(after, 'skein_worker_memory_managed_bytes', { worker: w.address })).toBeGreaterThanOrEqual(0);
    }
    expect(promValue(after, 'skein_scheduler_event_loop_lag_seconds', { quantile: '0.99' })).toBeGreaterThanOrEqual(0);
    expect(after.get('skein_tasks_completed_total')!.type).toBe('counter');
  });
});

describe('skein scheduler dashboard flags', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
  });

  it('prints the dashboard link after the scheduler address; a busy port falls back with a warning', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as { port: number }).port;
    try {
      const s = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--dashboard-address', `:${busy}`, '--ready-json']);
      procs.push(s);
      const ready = await readyOf(s);
      const link = ready.role === 'scheduler' ? ready.dashboard : '';
      expect(link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/status$/);
      // The banners, for people: the address, then the dashboard.
      expect(s.stdout.slice(0, 2)).toEqual([`Scheduler at:   ${ready.address}`, `dashboard at:   ${link}`]);
      expect(link).not.toContain(`:${busy}/`);
      await s.waitFor(new RegExp(`Port ${busy} is already in use`));
      expect(await (await fetch(link.replace('/status', '/health'))).text()).toBe('ok');
    } finally {
      blocker.close();
    }
  });

  it('--no-dashboard runs none', async () => {
    const s = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--ready-json']);
    procs.push(s);
    // The ready line comes after every banner.
    expect(await readyOf(s)).toMatchObject({ role: 'scheduler', dashboard: '' });
    expect(s.stdout).toHaveLength(2);
    expect(s.stdout[0]).toMatch(/^Scheduler at:/);
  });
});
