import type { ClusterSnapshot, DashboardSource, DashboardTaskState, TaskGroupView, TaskStreamSlice, WorkerView } from '@skein/dashboard';
import type { SchedulerState } from '../state/scheduler-state.js';

/** What the adapter needs from the Scheduler shell. */
export interface DashboardTarget {
  readonly state: SchedulerState;
  readonly address: string;
  /** Connected clients. */
  readonly clientCount: number;
}

/**
 * The scheduler as the dashboard sees it: plain snapshots of SchedulerState and its telemetry.
 * Called a few times a second at most, only while someone watches (and once a second for the
 * history charts); nothing here runs per task.
 */
export class SchedulerDashboardSource implements DashboardSource {
  constructor(private readonly target: DashboardTarget) {}

  snapshot(): ClusterSnapshot {
    const { state } = this.target;
    const workers: WorkerView[] = [];
    for (const ws of state.workers.values()) {
      const m = ws.metrics;
      workers.push({
        address: ws.address,
        name: ws.name,
        nthreads: ws.nthreads,
        status: ws.status,
        processing: ws.processing.size,
        executing: m.executing,
        managedBytes: m.managedBytes,
        memoryRss: m.memoryRss,
        spilledBytes: m.spilledBytes,
        memoryLimit: ws.memoryLimit,
        cpuPercent: m.cpuPercent,
        lastSeenMs: ws.lastSeenMs,
      });
    }
    workers.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    const t = state.telemetry;
    const groups: TaskGroupView[] = [];
    for (const g of t.groups.values()) groups.push({ name: g.name, states: g.states(), completed: g.completed });
    const tasksByState = { ...state.counts } as Record<DashboardTaskState, number>;
    return {
      timeMs: Date.now(),
      schedulerAddress: this.target.address,
      clients: this.target.clientCount,
      workers,
      tasksByState,
      groups,
      counters: { tasksCompleted: t.tasksCompleted, tasksErred: t.tasksErred, transfers: t.transfers, transferBytes: t.transferBytes },
      errors: t.recentErrors(),
    };
  }

  taskStream(cursor: number, max: number): TaskStreamSlice {
    const { cursor: next, runs, dropped } = this.target.state.telemetry.streamSince(cursor, max);
    return { cursor: next, dropped, entries: runs };
  }
}
