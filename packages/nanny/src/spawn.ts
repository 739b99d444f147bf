/**
 * Starting the worker process. Light on imports on purpose: the nanny's CLI starts the worker with
 * this before it loads gRPC, so the two processes load their code at the same time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { READY_JSON_ENV, withoutSecurityEnv } from '@skein/common/lite';
import { workerCommand } from '@skein/core-worker/command';

/** The script that starts a worker process: skein-worker's single-file bundle when it is built. */
export function workerBin(): string {
  return workerCommand();
}

export interface WorkerSpawnSpec {
  scheduler: string;
  workerArgs: string[];
  memoryLimit: number;
  nannyAddress: string;
  env: Record<string, string>;
  /**
   * The credential flags of the worker (files: `--tls-ca-file ... --auth-token-file ...`). The
   * worker gets its credentials from these alone: the SKEIN_TLS_* / SKEIN_AUTH_* variables of
   * this process are not passed on (a worker must use its nanny's credentials, not the shell's),
   * unless `env` sets them.
   */
  credentialArgs?: readonly string[];
}

/** Starts a worker process that prints its JSON ready line (SKEIN_READY_JSON=1) once registered: see `parseReadyLine`. */
export function spawnWorker(spec: WorkerSpawnSpec): ChildProcess {
  const args = [
    workerBin(),
    spec.scheduler,
    ...spec.workerArgs,
    '--memory-limit',
    String(spec.memoryLimit),
    '--nanny-address',
    spec.nannyAddress,
    ...(spec.credentialArgs ?? []),
  ];
  return spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...withoutSecurityEnv(process.env), ...spec.env, [READY_JSON_ENV]: '1' } });
}

/** A free port on `host` (the nanny binds its service there once gRPC has loaded). */
export function reservePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}
