import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { formatPrometheus, startDashboard, type ClusterSnapshot, type Dashboard, type DashboardSource, type TaskStreamEntry } from '../src/index.js';
import { parsePrometheus, promValue } from './prometheus-parse.js';

const states = (o: Partial<ClusterSnapshot['tasksByState']> = {}): ClusterSnapshot['tasksByState'] => ({
  released: 0, waiting: 0, 'no-worker': 0, queued: 0, processing: 0, memory: 0, erred: 0, forgotten: 0, ...o,
});

/** A source whose data the test changes by hand. */
class FakeSource implements DashboardSource {
  completed = 0;
  runs: TaskStreamEntry[] = [];
  snapshots = 0;
  snapshot(): ClusterSnapshot {
    this.snapshots++;
    return {
      timeMs: Date.now(),
      schedulerAddress: 'tcp://127.0.0.1:8786',
      clients: 1,
      workers: [
        {
          address: 'tcp://127.0.0.1:4001', name: 'w-0', nthreads: 2, status: 'running', processing: 3, executing: 2,
          managedBytes: 1000, memoryRss: 5000, spilledBytes: 10, memoryLimit: 10_000, cpuPercent: 150, lastSeenMs: Date.now(),
        },
        {
          address: 'tcp://127.0.0.1:4002', name: 'w-1', nthreads: 1, status: 'paused', processing: 0, executing: 0,
          managedBytes: 0, memoryRss: 3000, spilledBytes: 0, memoryLimit: 0, cpuPercent: 0, lastSeenMs: Date.now(),
        },
      ],
      tasksByState: states({ processing: 3, memory: this.completed }),
      groups: [{ name: 'odd "group" \\ name', states: states({ memory: this.completed, processing: 3 }), completed: this.completed }],
      counters: { tasksCompleted: this.completed, tasksErred: 1 },
      errors: [{ timeMs: 1, key: 'bad-1', group: 'bad', worker: 'tcp://127.0.0.1:4001', type: 'RangeError', message: 'no good' }],
    };
  }
  taskStream(cursor: number, max: number) {
    const from = Math.max(cursor, this.runs.length - max);
    return { cursor: this.runs.length, entries: this.runs.slice(from), dropped: from - cursor };
  }
  run(key: string) {
    const now = Date.now();
    this.runs.push({ worker: 'tcp://127.0.0.1:4001', key, group: key.split('-')[0]!, startMs: now - 5, stopMs: now, kind: 'compute' });
    this.completed++;
  }
}

const open: Dashboard[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((d) => d.close()));
});
async function start(source: DashboardSource, extra: Partial<Parameters<typeof startDashboard>[0]> = {}) {
  const d = await startDashboard({ host: '127.0.0.1', port: 0, source, intervalMs: 50, ...extra });
  open.push(d);
  return d;
}
const base = (d: Dashboard) => d.url.replace(/\/status$/, '');

/** Reads Server-Sent Events from a fetch body. */
async function* sse(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; data: any }> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      let data = '';
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

describe('formatPrometheus', () => {
  it('writes valid exposition text with escaped labels, per-worker memory and the loop lag', () => {
    const src = new FakeSource();
    src.completed = 7;
    const text = formatPrometheus(src.snapshot(), { meanMs: 1, p50Ms: 1, p99Ms: 4, maxMs: 9 });
    const m = parsePrometheus(text);
    expect(m.get('skein_tasks_completed_total')!.type).toBe('counter');
    expect(promValue(m, 'skein_tasks_completed_total')).toBe(7);
    expect(promValue(m, 'skein_tasks_erred_total')).toBe(1);
    expect(promValue(m, 'skein_workers', { status: 'running' })).toBe(1);
    expect(promValue(m, 'skein_workers', { status: 'paused' })).toBe(1);
    expect(promValue(m, 'skein_threads')).toBe(3);
    expect(promValue(m, 'skein_tasks', { state: 'processing' })).toBe(3);
    expect(promValue(m, 'skein_task_group_tasks', { group: 'odd "group" \\ name', state: 'memory' })).toBe(7);
    expect(promValue(m, 'skein_worker_memory_managed_bytes', { name: 'w-0' })).toBe(1000);
    expect(promValue(m, 'skein_worker_memory_rss_bytes', { name: 'w-1' })).toBe(3000);
    expect(promValue(m, 'skein_worker_memory_spilled_bytes', { name: 'w-0' })).toBe(10);
    expect(promValue(m, 'skein_worker_cpu_ratio', { name: 'w-0' })).toBe(1.5);
    expect(promValue(m, 'skein_scheduler_event_loop_lag_seconds', { quantile: '0.99' })).toBe(0.004);
    expect(m.has('skein_transfers_total')).toBe(false);
    expect(text).toContain('skein_task_group_tasks{group="odd \\"group\\" \\\\ name",state="memory"} 7\n');
  });
});

describe('startDashboard', () => {
  it('serves /health, redirects / to /status, serves the page, /api/status and /metrics', async () => {
    const src = new FakeSource();
    const d = await start(src);
    expect(d.url).toBe(`http://127.0.0.1:${d.port}/status`);
    expect(await (await fetch(`${base(d)}/health`)).text()).toBe('ok');
    const root = await fetch(`${base(d)}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/status');
    const page = await fetch(d.url);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const html = await page.text();
    for (const s of ['Task stream', 'Progress', 'Workers', 'Errors', 'new EventSource("/api/events")']) expect(html).toContain(s);
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/); // self-contained
    const status = (await (await fetch(`${base(d)}/api/status`)).json()) as { snapshot: ClusterSnapshot; history: unknown[] };
    expect(status.snapshot.workers.map((w) => w.name)).toEqual(['w-0', 'w-1']);
    expect(status.history.length).toBeGreaterThan(0);
    const metrics = await fetch(`${base(d)}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(promValue(parsePrometheus(await metrics.text()), 'skein_threads')).toBe(3);
    expect((await fetch(`${base(d)}/nope`)).status).toBe(404);
  });

  it('pushes an init event, then throttled updates with only the new task runs', async () => {
    const src = new FakeSource();
    src.run('old-1');
    const d = await start(src);
    const before = src.snapshots;
    await new Promise((r) => setTimeout(r, 200));
    // Nobody watches: only the 1 Hz history sample reads the source.
    expect(src.snapshots - before).toBeLessThanOrEqual(1);

    const ac = new AbortController();
    const res = await fetch(`${base(d)}/api/events`, { signal: ac.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = sse(res.body!);
    const init = (await events.next()).value!;
    expect(init.event).toBe('init');
    expect(init.data.stream.map((r: unknown[]) => r[2])).toEqual(['old-1']);
    expect(d.watchers).toBe(1);

    src.run('new-1');
    src.run('new-2');
    const seen: string[] = [];
    for await (const ev of events) {
      expect(ev.event).toBe('update');
      for (const r of ev.data.stream as unknown[][]) seen.push(r[2] as string);
      if (seen.length >= 2) {
        expect(ev.data.snapshot.counters.tasksCompleted).toBe(3);
        break;
      }
    }
    expect(seen).toEqual(['new-1', 'new-2']);
    ac.abort();
    await new Promise((r) => setTimeout(r, 100));
    expect(d.watchers).toBe(0);
  });

  it('falls back to a free port with a warning when the port is taken', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const taken = (blocker.address() as { port: number }).port;
    try {
      const warnings: string[] = [];
      const d = await start(new FakeSource(), { port: taken, warn: (m) => warnings.push(m) });
      expect(d.port).not.toBe(taken);
      expect(warnings.join('\n')).toMatch(new RegExp(`Port ${taken} is already in use.*port ${d.port}`));
      await expect(start(new FakeSource(), { port: taken, fallbackToRandomPort: false })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });

  it('close() is idempotent and ends open event streams', async () => {
    const d = await startDashboard({ host: '127.0.0.1', port: 0, source: new FakeSource() });
    const res = await fetch(`${base(d)}/api/events`);
    const reader = res.body!.getReader();
    await reader.read();
    const p = d.close();
    expect(d.close()).toBe(p);
    await p;
    let done = false;
    for (let i = 0; i < 10 && !done; i++) done = (await reader.read().catch(() => ({ done: true }))).done;
    expect(done).toBe(true);
  });
});
