import type { ClusterSnapshot, DashboardTaskState } from './source.js';

/** Event loop delay of the process serving the dashboard (the scheduler), in milliseconds. */
export interface EventLoopLag {
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export const TASK_STATES: readonly DashboardTaskState[] = [
  'released',
  'waiting',
  'no-worker',
  'queued',
  'processing',
  'memory',
  'erred',
  'forgotten',
];

/** Escapes a label value as the text exposition format wants (backslash, quote, newline). */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

class Writer {
  readonly lines: string[] = [];
  family(name: string, type: 'gauge' | 'counter', help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }
  sample(name: string, labels: Record<string, string> | null, value: number): void {
    let l = '';
    if (labels) {
      const parts: string[] = [];
      for (const k in labels) parts.push(`${k}="${escapeLabel(labels[k]!)}"`);
      l = `{${parts.join(',')}}`;
    }
    this.lines.push(`${name}${l} ${num(value)}`);
  }
}

/**
 * The Prometheus text exposition format (version 0.0.4) of a snapshot: workers, tasks by state and
 * by group, counters, per-worker memory and CPU, the scheduler's event loop lag.
 */
export function formatPrometheus(s: ClusterSnapshot, lag?: EventLoopLag): string {
  const w = new Writer();
  w.family('skein_workers', 'gauge', 'Workers connected to the scheduler, by status.');
  const byStatus = { running: 0, paused: 0, retiring: 0 };
  let threads = 0;
  for (const wk of s.workers) {
    byStatus[wk.status]++;
    threads += wk.nthreads;
  }
  for (const [status, n] of Object.entries(byStatus)) w.sample('skein_workers', { status }, n);
  w.family('skein_threads', 'gauge', 'Worker threads in the cluster.');
  w.sample('skein_threads', null, threads);
  w.family('skein_clients', 'gauge', 'Clients connected to the scheduler.');
  w.sample('skein_clients', null, s.clients);

  w.family('skein_tasks', 'gauge', 'Tasks known to the scheduler, by state.');
  for (const state of TASK_STATES) if (state !== 'forgotten') w.sample('skein_tasks', { state }, s.tasksByState[state] ?? 0);

  w.family('skein_task_group_tasks', 'gauge', 'Tasks of each task group (key prefix) by state; forgotten counts tasks that left.');
  for (const g of s.groups) {
    for (const state of TASK_STATES) w.sample('skein_task_group_tasks', { group: g.name, state }, g.states[state] ?? 0);
  }

  w.family('skein_tasks_completed_total', 'counter', 'Task runs that finished successfully.');
  w.sample('skein_tasks_completed_total', null, s.counters.tasksCompleted);
  w.family('skein_tasks_erred_total', 'counter', 'Tasks that went to the erred state.');
  w.sample('skein_tasks_erred_total', null, s.counters.tasksErred);
  if (s.counters.transfers !== undefined) {
    w.family('skein_transfers_total', 'counter', 'Data transfers between workers.');
    w.sample('skein_transfers_total', null, s.counters.transfers);
  }
  if (s.counters.transferBytes !== undefined) {
    w.family('skein_transfer_bytes_total', 'counter', 'Bytes moved between workers.');
    w.sample('skein_transfer_bytes_total', null, s.counters.transferBytes);
  }

  const perWorker: Array<[string, string, (x: ClusterSnapshot['workers'][number]) => number]> = [
    ['skein_worker_memory_managed_bytes', 'Bytes of results a worker holds in memory.', (x) => x.managedBytes],
    ['skein_worker_memory_rss_bytes', 'Resident set size of a worker process.', (x) => x.memoryRss],
    ['skein_worker_memory_spilled_bytes', 'Bytes a worker has spilled to disk.', (x) => x.spilledBytes],
    ['skein_worker_memory_limit_bytes', 'Memory limit of a worker (0: none).', (x) => x.memoryLimit],
    ['skein_worker_cpu_ratio', 'CPU use of a worker process (1 = one core busy).', (x) => x.cpuPercent / 100],
    ['skein_worker_threads', 'Threads of a worker.', (x) => x.nthreads],
    ['skein_worker_processing_tasks', 'Tasks assigned to a worker and not finished.', (x) => x.processing],
    ['skein_worker_executing_tasks', 'Tasks executing on a worker at its last heartbeat.', (x) => x.executing],
  ];
  for (const [name, help, get] of perWorker) {
    w.family(name, 'gauge', help);
    for (const wk of s.workers) w.sample(name, { worker: wk.address, name: wk.name }, get(wk));
  }

  if (lag) {
    w.family('skein_scheduler_event_loop_lag_seconds', 'gauge', 'Event loop delay of the scheduler process over the last second.');
    w.sample('skein_scheduler_event_loop_lag_seconds', { quantile: '0.5' }, lag.p50Ms / 1000);
    w.sample('skein_scheduler_event_loop_lag_seconds', { quantile: '0.99' }, lag.p99Ms / 1000);
    w.sample('skein_scheduler_event_loop_lag_seconds', { quantile: '1' }, lag.maxMs / 1000);
    w.family('skein_scheduler_event_loop_lag_mean_seconds', 'gauge', 'Mean event loop delay of the scheduler process over the last second.');
    w.sample('skein_scheduler_event_loop_lag_mean_seconds', null, lag.meanMs / 1000);
  }
  return w.lines.join('\n') + '\n';
}
