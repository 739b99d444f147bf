/**
 * @module @skein/dashboard
 * The Skein dashboard: a live status page (`/status`, pushed over Server-Sent Events), Prometheus
 * metrics (`/metrics`), JSON status (`/api/status`) and `/health`, served with node:http. It shows
 * whatever implements `DashboardSource` (the scheduler does), and imports no scheduler code.
 *
 * @example
 * import { startDashboard, type DashboardSource } from '@skein/dashboard';
 * const source: DashboardSource = scheduler.dashboardSource(); // or your own implementation
 * const dashboard = await startDashboard({ host: '127.0.0.1', port: 8787, source });
 * console.log(dashboard.url); // http://127.0.0.1:8787/status
 * await dashboard.close();
 */
export { startDashboard, type Dashboard, type DashboardOptions, type HistorySample } from './server.js';
export { formatPrometheus, escapeLabel, TASK_STATES, type EventLoopLag } from './prometheus.js';
export { STATUS_PAGE } from './page.js';
export type {
  DashboardSource,
  ClusterSnapshot,
  WorkerView,
  TaskGroupView,
  TaskErrorView,
  TaskStreamEntry,
  TaskStreamSlice,
  DashboardCounters,
  DashboardTaskState,
} from './source.js';
