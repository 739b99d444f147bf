#!/usr/bin/env node
import { runWorkerCli } from './cli-main.js';

runWorkerCli(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`skein-worker: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(1);
  },
);
