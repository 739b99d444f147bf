import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { formatPrometheus, type EventLoopLag } from './prometheus.js';
import { STATUS_PAGE } from './page.js';
import type { ClusterSnapshot, DashboardSource, TaskStreamEntry } from './source.js';

export interface DashboardOptions {
  /** What to show (the scheduler's adapter). */
  source: DashboardSource;
  /** Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface). */
  host?: string;
  /** Port (default 8787; 0 picks a free one). */
  port?: number;
  /** When `port` is taken, listen on a free port instead and warn (default true, as Dask does). */
  fallbackToRandomPort?: boolean;
  /** How often watchers get an update (ms, default 500). */
  intervalMs?: number;
  /** Host name put in `url` (default: `host`, or this machine's first external IPv4 for 0.0.0.0). */
  contactHost?: string;
  /** Where warnings go (default: stderr). */
  warn?: (message: string) => void;
  /**
   * Serve HTTPS with this certificate and key (PEM), e.g. the
   * scheduler's TLS credentials. No client certificate is asked for: browsers have none.
   * Default: plain HTTP.
   */
  tls?: { cert: string; key: string };
}

export interface Dashboard {
  /** `http://HOST:PORT/status` (`https://` with `tls`) */
  readonly url: string;
  readonly port: number;
  /** Number of pages watching (open `/api/events` streams). */
  readonly watchers: number;
  /** Stops the server and ends every stream; idempotent. */
  close(): Promise<void>;
}

/** One sample of cluster-wide memory and CPU, for the charts. */
export interface HistorySample {
  timeMs: number;
  managedBytes: number;
  rssBytes: number;
  spilledBytes: number;
  limitBytes: number;
  /** Sum of the workers' CPU percent (100 = one core busy). */
  cpuPercent: number;
  threads: number;
  processing: number;
  lagMs: number;
}

const HISTORY_SIZE = 600; // 10 minutes at 1 Hz
const STREAM_WINDOW_MS = 30_000;
const STREAM_INIT_MAX = 5_000;
const STREAM_TICK_MAX = 20_000;
/** A task-stream row on the wire: worker, group, key, startMs, stopMs, kind (0 compute, 1 erred, 2 transfer). */
type StreamRow = [string, string, string, number, number, number];
const KIND_CODE = { compute: 0, erred: 1, transfer: 2 } as const;

function row(e: TaskStreamEntry): StreamRow {
  return [e.worker, e.group, e.key, e.startMs, e.stopMs, KIND_CODE[e.kind]];
}

function defaultContactHost(host: string): string {
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return host;
  for (const entries of Object.values(networkInterfaces())) {
    for (const e of entries ?? []) if (e.family === 'IPv4' && !e.internal) return e.address;
  }
  return '127.0.0.1';
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

/**
 * Starts the dashboard's HTTP server: `/status` (the live page), `/api/events` (its
 * Server-Sent Events), `/api/status` (JSON), `/metrics` (Prometheus), `/health`.
 *
 * Cost model: nothing is computed per task; the source is read once per `intervalMs` while at
 * least one page watches (the same serialized update goes to every page) and once per second for
 * the history charts.
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const hub = new DashboardHub(options);
  await hub.start();
  return hub;
}

interface Watcher {
  res: ServerResponse;
}

class DashboardHub implements Dashboard {
  private readonly source: DashboardSource;
  private readonly server: Server;
  private readonly watchersSet = new Set<Watcher>();
  private readonly history: HistorySample[] = [];
  private readonly recent: StreamRow[] = [];
  /** Made once the server listens: one made for a start that failed would stay open. */
  private histogram: IntervalHistogram | undefined;
  private lag: EventLoopLag = { meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
  private cursor = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastSampleMs = 0;
  private boundPort = 0;
  private closePromise: Promise<void> | undefined;
  private readonly warn: (m: string) => void;
  private readonly intervalMs: number;
  url = '';

  constructor(private readonly options: DashboardOptions) {
    this.source = options.source;
    this.warn = options.warn ?? ((m) => process.stderr.write(`dashboard: ${m}\n`));
    this.intervalMs = Math.max(50, options.intervalMs ?? 500);
    const handler = (req: IncomingMessage, res: ServerResponse) => this.route(req, res);
    const tls = options.tls;
    this.server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler) : createServer(handler);
  }

  get port(): number {
    return this.boundPort;
  }

  get watchers(): number {
    return this.watchersSet.size;
  }

  async start(): Promise<void> {
    const host = this.options.host ?? '127.0.0.1';
    const wanted = this.options.port ?? 8787;
    try {
      this.boundPort = await listen(this.server, host, wanted);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' || wanted === 0 || this.options.fallbackToRandomPort === false) throw err;
      this.boundPort = await listen(this.server, host, 0);
      this.warn(`Port ${wanted} is already in use. Perhaps you already have a cluster running? Hosting the dashboard on port ${this.boundPort} instead.`);
    }
    const contact = this.options.contactHost ?? defaultContactHost(host);
    this.url = `${this.options.tls ? 'https' : 'http'}://${contact.includes(':') ? `[${contact}]` : contact}:${this.boundPort}/status`;
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    this.sample(Date.now());
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  close(): Promise<void> {
    this.closePromise ??= new Promise<void>((resolve) => {
      clearInterval(this.timer);
      this.histogram?.disable();
      for (const w of this.watchersSet) w.res.end();
      this.watchersSet.clear();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closePromise;
  }

  // ------------------------------------------------------------------ sampling

  private tick(): void {
    const now = Date.now();
    let snap: ClusterSnapshot | undefined;
    if (now - this.lastSampleMs >= 990) snap = this.sample(now);
    if (this.watchersSet.size === 0) return;
    snap ??= this.source.snapshot();
    const rows = this.pullStream(STREAM_TICK_MAX);
    const last = this.history[this.history.length - 1];
    this.broadcast('update', { snapshot: snap, stream: rows, lag: this.lag, history: last ? [last] : [] });
  }

  /** One history point (and the event loop lag of the last interval). */
  private sample(now: number): ClusterSnapshot {
    this.lastSampleMs = now;
    const h = this.histogram;
    if (h && h.count > 0) {
      this.lag = { meanMs: h.mean / 1e6, p50Ms: h.percentile(50) / 1e6, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6 };
    }
    h?.reset();
    const snap = this.source.snapshot();
    const s: HistorySample = { timeMs: now, managedBytes: 0, rssBytes: 0, spilledBytes: 0, limitBytes: 0, cpuPercent: 0, threads: 0, processing: 0, lagMs: this.lag.p99Ms };
    for (const w of snap.workers) {
      s.managedBytes += w.managedBytes;
      s.rssBytes += w.memoryRss;
      s.spilledBytes += w.spilledBytes;
      s.limitBytes += w.memoryLimit;
      s.cpuPercent += w.cpuPercent;
      s.threads += w.nthreads;
      s.processing += w.processing;
    }
    this.history.push(s);
    if (this.history.length > HISTORY_SIZE) this.history.splice(0, this.history.length - HISTORY_SIZE);
    return snap;
  }

  /** New task-stream rows since the last pull; also kept in `recent` for pages that join. */
  private pullStream(max: number): StreamRow[] {
    const slice = this.source.taskStream(this.cursor, max);
    this.cursor = slice.cursor;
    const rows = slice.entries.map(row);
    for (const r of rows) this.recent.push(r);
    const cutoff = Date.now() - STREAM_WINDOW_MS;
    let drop = 0;
    while (drop < this.recent.length && this.recent[drop]![4] < cutoff) drop++;
    if (this.recent.length - drop > STREAM_INIT_MAX) drop = this.recent.length - STREAM_INIT_MAX;
    if (drop > 0) this.recent.splice(0, drop);
    return rows;
  }

  private broadcast(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const w of this.watchersSet) {
      // A page that cannot keep up skips updates (each carries a whole snapshot) instead of
      // making the scheduler buffer them.
      if (w.res.writableNeedDrain) continue;
      w.res.write(frame);
    }
  }

  // ------------------------------------------------------------------ HTTP

  private route(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    try {
      switch (path) {
        case '/':
          res.writeHead(302, { location: '/status' }).end();
          return;
        case '/status':
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' }).end(STATUS_PAGE);
          return;
        case '/favicon.ico':
          res.writeHead(204).end();
          return;
        case '/health':
          res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
          return;
        case '/metrics':
          res
            .writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
            .end(formatPrometheus(this.source.snapshot(), this.lag));
          return;
        case '/api/status': {
          const body = {
            snapshot: this.source.snapshot(),
            lag: this.lag,
            history: this.history,
            taskStream: this.source.taskStream(0, 1000).entries,
          };
          res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' }).end(JSON.stringify(body));
          return;
        }
        case '/api/events':
          this.watch(req, res);
          return;
        default:
          res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\nTry /status, /metrics, /api/status or /health.\n`);
      }
    } catch (err) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`dashboard error: ${(err as Error).message}\n`);
    }
  }

  private watch(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    if (this.watchersSet.size === 0) {
      // Nobody watched: start the shared cursor at the newest runs.
      this.recent.length = 0;
      this.cursor = 0;
      this.pullStream(STREAM_INIT_MAX);
    }
    const w: Watcher = { res };
    this.watchersSet.add(w);
    res.write(
      `retry: 2000\nevent: init\ndata: ${JSON.stringify({
        snapshot: this.source.snapshot(),
        stream: this.recent,
        history: this.history,
        lag: this.lag,
        intervalMs: this.intervalMs,
      })}\n\n`,
    );
    const gone = () => this.watchersSet.delete(w);
    req.on('close', gone);
    res.on('close', gone);
    res.on('error', gone);
  }
}
