// The leak check of every test file (setup.ts runs it): what a test file opened and did not close.
// Three views of this process, each compared with a snapshot taken before the file's tests:
//  - child processes (/proc/<pid>/task/*/children): a worker or CLI process left running;
//  - file descriptors (/proc/self/fd): sockets, servers, pipes and files, whether or not their
//    handle is unref'd (a gRPC channel's socket or an unref'd server would hide from the next view);
//  - process.getActiveResourcesInfo(): what keeps the event loop alive, e.g. a ref'd timer.
// Linux only (/proc); elsewhere the first two views are empty and only the third is compared.
import { createHook } from 'node:async_hooks';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ResourceSnapshot {
  /** Live (not zombie) child processes of this process: pid → command line. */
  children: Map<number, string>;
  /** Open file descriptors: fd → what it points at (`socket:[123]`, `pipe:[45]`, a path). */
  fds: Map<number, string>;
  /** process.getActiveResourcesInfo(), e.g. ['TCPServerWrap', 'Timeout', 'PipeWrap']. */
  resources: string[];
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

function listOr(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** The live child processes of process `pid` (all its threads' children), zombies left out. */
export function childProcesses(pid = process.pid): Map<number, string> {
  const out = new Map<number, string>();
  for (const task of listOr(`/proc/${pid}/task`)) {
    for (const word of readOr(`/proc/${pid}/task/${task}/children`, '').split(/\s+/)) {
      const child = Number(word);
      if (!word || !Number.isInteger(child)) continue;
      // /proc/<pid>/stat: "pid (comm) S ..."; comm may hold spaces and parentheses.
      const stat = readOr(`/proc/${child}/stat`, '');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === '' || state === 'Z' || state === 'X') continue;
      const cmd = readOr(`/proc/${child}/cmdline`, '').split('\0').filter(Boolean).join(' ');
      out.set(child, cmd || '?');
    }
  }
  return out;
}

/** This process's open file descriptors. */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of listOr('/proc/self/fd')) {
    try {
      out.set(Number(name), readlinkSync(`/proc/self/fd/${name}`));
    } catch {
      // Closed between the listing and the readlink (or the listing's own descriptor): not open.
    }
  }
  return out;
}

export function snapshot(): ResourceSnapshot {
  // process.stdout and process.stderr open their handle on first use: make that happen before the
  // baseline, not in the middle of a test file.
  void process.stdout.writableLength;
  void process.stderr.writableLength;
  return { children: childProcesses(), fds: openFds(), resources: process.getActiveResourcesInfo() };
}

const COUNTED_FROM_ZERO = new Set(['Timeout', 'Immediate']);

/** What `now` holds that `before` did not, one line per leaked thing; [] when nothing leaked. */
export function leaksSince(before: ResourceSnapshot, now: ResourceSnapshot): string[] {
  const out: string[] = [];
  for (const [pid, cmd] of now.children) {
    if (before.children.get(pid) !== cmd) out.push(`child process ${pid}: ${cmd}`);
  }
  const newFds = [...now.fds].filter(([fd, target]) => before.fds.get(fd) !== target);
  if (newFds.length > 0) {
    const sockets = socketTable();
    for (const [fd, target] of newFds) {
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      out.push(`fd ${fd}: ${inode ? sockets.get(inode) ?? target : target}`);
    }
  }
  // A multiset difference: one more PipeWrap than before is one leaked pipe. Timers are counted
  // from zero: the ref'd timer vitest may have running at the baseline (it flushes output and
  // reports on timers of a few ms) is gone again by the time the poll gives up, and nothing
  // else keeps a ref'd timer for good.
  const left = new Map<string, number>();
  for (const r of before.resources) if (!COUNTED_FROM_ZERO.has(r)) left.set(r, (left.get(r) ?? 0) + 1);
  const extra = new Map<string, number>();
  for (const r of now.resources) {
    const n = left.get(r) ?? 0;
    if (n > 0) left.set(r, n - 1);
    else extra.set(r, (extra.get(r) ?? 0) + 1);
  }
  for (const [r, n] of extra) out.push(`active resource ${r}${n > 1 ? ` ×${n}` : ''} (keeps the event loop alive)`);
  return out;
}

/**
 * Polls until nothing leaked since `before` or `graceMs` passed (sockets, processes and timers
 * take a moment to go once close() has returned); returns what is left.
 */
export async function waitForNoLeaks(before: ResourceSnapshot, graceMs = 2000, pollMs = 50): Promise<string[]> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const leaks = leaksSince(before, snapshot());
    if (leaks.length === 0 || Date.now() >= deadline) return leaks;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/** /proc/net/tcp's `0100007F:1F90` (little-endian IPv4) or its 32-hex-digit IPv6 form → `127.0.0.1:8080`. */
function hexAddress(text: string): string {
  const [hostHex = '', portHex = '0'] = text.split(':');
  const port = parseInt(portHex, 16);
  if (hostHex.length === 8) {
    const bytes = hostHex.match(/../g)!.map((b) => parseInt(b, 16)).reverse();
    return `${bytes.join('.')}:${port}`;
  }
  // IPv6: four little-endian 32-bit words.
  const words = hostHex.match(/.{8}/g) ?? [];
  const groups = words.flatMap((w) => {
    const b = w.match(/../g)!.reverse().join('');
    return [b.slice(0, 4), b.slice(4)];
  });
  return `[${groups.map((g) => g.replace(/^0{1,3}/, '')).join(':')}]:${port}`;
}

/** Socket inode → a description (`tcp 127.0.0.1:4567 LISTEN`, `unix /path`), from /proc/self/net. */
function socketTable(): Map<string, string> {
  const out = new Map<string, string>();
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    for (const line of readOr(`/proc/self/net/${proto}`, '').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const state = proto.startsWith('tcp') ? ` ${TCP_STATES[f[3]!] ?? f[3]}` : '';
      const peer = f[3] === '0A' || proto.startsWith('udp') ? '' : ` → ${hexAddress(f[2]!)}`;
      out.set(f[9]!, `${proto} ${hexAddress(f[1]!)}${peer}${state}`);
    }
  }
  for (const line of readOr('/proc/self/net/unix', '').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7) continue;
    out.set(f[6]!, `unix socket ${f[7] ?? '(unnamed)'}`);
  }
  return out;
}

/** Async resource types that outlive a call: what the leak check can report. */
const TRACED = new Set(['Timeout', 'TCPSERVERWRAP', 'TCPWRAP', 'PIPEWRAP', 'PIPESERVERWRAP', 'PROCESSWRAP', 'UDPWRAP', 'Http2Session', 'WORKER', 'MESSAGEPORT', 'FSEVENTWRAP', 'SIGNALWRAP', 'Immediate']);

/**
 * Where the resources alive now were created (SKEIN_LEAK_TRACE=1, for finding a leak: async hooks
 * slow every call down). `start()` begins recording; `live()` lists what was created since and is
 * not destroyed yet, with the creating stack.
 */
export function traceResources(): { live(): string[]; stop(): void } {
  const alive = new Map<number, { type: string; stack: string; resource: { hasRef?: () => boolean } }>();
  /** Where the other (short-lived, non-promise) resources came from: a socket made in a DNS
   * lookup's callback has only Node's frames, its lookup request has the caller's. */
  const origins = new Map<number, string>();
  const hook = createHook({
    init(id, type, trigger, resource: { hasRef?: () => boolean }) {
      if (type === 'PROMISE') return;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 30;
      const raw = new Error().stack ?? '';
      Error.stackTraceLimit = limit;
      // Without "Error", this hook's own frame, Node's and vitest's.
      const frames = raw
        .split('\n')
        .slice(2)
        .filter((l) => !/[( ]node:|\/node_modules\/\.pnpm\/(@vitest|vitest)/.test(l) && !l.includes('new Promise (<anonymous>)'));
      // Not "at …": vitest would take these lines for the stack of the leak check's error.
      const stack = frames.length > 0 ? frames.slice(0, 10).map((l) => l.replace(/^\s*at /, '    from ')).join('\n') : origins.get(trigger) ?? '';
      if (!TRACED.has(type)) {
        if (stack) origins.set(id, stack);
        return;
      }
      // The leak check's own poll timer and vitest's hook timeouts are not the file's.
      if (stack === '' || stack.includes('/tools/test/support/')) return;
      alive.set(id, { type, resource, stack });
    },
    destroy(id) {
      alive.delete(id);
      origins.delete(id);
    },
  }).enable();
  return {
    // An unref'd timer is no leak; an unref'd socket or server still is (it holds a descriptor).
    live: () =>
      [...alive.values()]
        .filter((r) => r.type !== 'Timeout' || r.resource.hasRef?.() !== false)
        .map((r) => `${r.type}${r.resource.hasRef?.() === false ? ' (unref\'d)' : ''} created\n${r.stack}`),
    stop: () => void hook.disable(),
  };
}
