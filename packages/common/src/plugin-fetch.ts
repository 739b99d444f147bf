/**
 * What a worker or a nanny asks the scheduler before it registers or starts its worker: the
 * plugins of its kind registered so far (SchedulerService.GetPlugins, answered only to that role).
 */
import { Metadata } from '@grpc/grpc-js';
import { SchedulerServiceClient, type PluginSpec } from '@skein/protocol';
import type { Security } from './security/security.js';

/** The `kind` plugins the scheduler at `scheduler` holds, asked with `kind`'s credentials; rejects with the call's error. */
export function fetchRegisteredPlugins(security: Security, scheduler: string, kind: 'worker' | 'nanny', timeoutMs: number): Promise<PluginSpec[]> {
  const dial = security.dial(scheduler, kind, 'scheduler');
  const client = new SchedulerServiceClient(dial.target, dial.credentials, dial.options);
  return new Promise<PluginSpec[]>((resolve, reject) => {
    client.getPlugins({ kind }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res!.plugins);
    });
  });
}
