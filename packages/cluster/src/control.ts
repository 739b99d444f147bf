import type { Security } from '@skein/common';
import { SchedulerAdmin } from './admin.js';
import type { SchedulerControl } from './types.js';

/**
 * The default SchedulerControl: a `SchedulerAdmin` (one gRPC channel, no client session) to the
 * scheduler, opened when first needed.
 */
export async function adminControl(schedulerAddress: string, security?: Security): Promise<SchedulerControl> {
  const admin = new SchedulerAdmin(schedulerAddress, security ? { security } : {});
  return {
    retireWorkers: (workers) => admin.retireWorkers(workers),
    adaptiveTarget: (targetDurationMs) => admin.adaptiveTarget(targetDurationMs),
    workers: () => admin.workers(),
    watchWorkers: (handlers) => admin.watchWorkers(handlers),
    close: async () => admin.close(),
  };
}
