// Preload for the hop-by-hop latency trace: NODE_OPTIONS="--import $PWD/bench/scratch/hop-trace/trace.mjs".
// Defines globalThis.__LT(label, key), which instrument.patch calls at each hop; every process and
// thread appends `hrtime label key` lines to /tmp/skein-hop-trace/<pid>-<thread>.log (hrtime is
// CLOCK_MONOTONIC, one clock for all processes of the machine).
import { mkdirSync } from 'node:fs';
mkdirSync('/tmp/skein-hop-trace', { recursive: true });
import { openSync, writeSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
const fd = openSync(`/tmp/skein-hop-trace/${process.pid}-${threadId}.log`, 'a');
let buf = [];
const put = (s) => { buf.push(s); if (buf.length >= 40) { writeSync(fd, buf.join('')); buf = []; } };
globalThis.__LT = (label, key) => put(`${process.hrtime.bigint()} ${label} ${key}\n`);
globalThis.__LTat = (label, key, t) => put(`${t} ${label} ${key}\n`);
process.on('exit', () => writeSync(fd, buf.join('')));
