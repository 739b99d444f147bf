import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // Linux USER_HZ

export interface ProcSample {
  rss: number;
  cpuSeconds: number;
}

/**
 * RSS (bytes) and CPU time (s) of a process, from /proc. Null when it is gone.
 *
 * Read synchronously: procfs files are made in memory by the kernel (a read never waits for a
 * disk), and a sync read is one syscall of a few µs, where fs/promises' readFile is four thread
 * pool round trips (open, fstat, read, close), each waking the event loop. A LocalCluster's
 * nannies sample every 100 ms in the process that also runs the scheduler and the client;
 * profiled, the async reads took ~4% of that thread during a latency run (issue 18).
 */
export async function sampleProcess(pid: number): Promise<ProcSample | null> {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11] ?? 0);
    const stime = Number(fields[12] ?? 0);
    return { rss: rssKb * 1024, cpuSeconds: (utime + stime) / TICKS_PER_SECOND };
  } catch {
    return null;
  }
}
