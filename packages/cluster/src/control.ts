import { Client } from '@skein/client';
import type { SchedulerControl } from './types.js';

/** The default SchedulerControl: a Client connection to the scheduler, opened when first needed. */
export async function clientControl(schedulerAddress: string): Promise<SchedulerControl> {
  const client = await Client.connect(schedulerAddress, { clientId: `cluster-${process.pid}-${Date.now().toString(36)}` });
  return {
    retireWorkers: (workers) => client.retireWorkers({ workers }),
    adaptiveTarget: (targetDurationMs) => client.adaptiveTarget({ targetDurationMs }),
    workers: async () =>
      (await client.schedulerInfo()).workers.map((w) => ({ name: w.name, address: w.address, processing: w.processing, managedBytes: w.managedBytes })),
    close: () => client.close(),
  };
}
