import { readFile } from 'node:fs/promises';

const TICKS_PER_SECOND = 100; // Linux USER_HZ

export interface ProcSample {
  rss: number;
  cpuSeconds: number;
}

/** RSS (bytes) and CPU time (s) of a process, from /proc. Null when it is gone. */
export async function sampleProcess(pid: number): Promise<ProcSample | null> {
  try {
    const [status, stat] = await Promise.all([readFile(`/proc/${pid}/status`, 'utf8'), readFile(`/proc/${pid}/stat`, 'utf8')]);
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
