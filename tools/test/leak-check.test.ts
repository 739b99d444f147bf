// The leak check of every test file (support/leaks.ts, run by support/setup.ts) against leaks
// made on purpose: it must name a child process left running, a server left listening, a socket
// left connected and a ref'd timer left pending, and report nothing once they are closed.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { leaksSince, snapshot, waitForNoLeaks } from './support/leaks.js';

describe('the leak check', () => {
  it('names a child process left running, and forgets it once it has exited', async () => {
    const before = snapshot();
    const child: ChildProcess = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await once(child, 'spawn');
      const leaks = leaksSince(before, snapshot());
      expect(leaks).toContain(`child process ${child.pid}: sleep 60`);
      expect(leaks).toContain('active resource ProcessWrap (keeps the event loop alive)');
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    expect(await waitForNoLeaks(before)).toEqual([]);
  });

  it("names a server left listening and a socket left connected, even unref'd", async () => {
    const before = snapshot();
    const server: Server = createServer((s) => s.on('error', () => undefined));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    server.unref();
    const { port } = server.address() as { port: number };
    const socket: Socket = createConnection(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.unref();
    try {
      const leaks = leaksSince(before, snapshot());
      expect(leaks).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^fd \\d+: tcp 127\\.0\\.0\\.1:${port} LISTEN$`))]));
      expect(leaks).toEqual(
        expect.arrayContaining([expect.stringMatching(new RegExp(`^fd \\d+: tcp 127\\.0\\.0\\.1:\\d+ → 127\\.0\\.0\\.1:${port} ESTABLISHED$`))]),
      );
    } finally {
      socket.destroy();
      server.close();
    }
    expect(await waitForNoLeaks(before)).toEqual([]);
  });

  it("names a ref'd timer left pending, not an unref'd one", async () => {
    const before = snapshot();
    const quiet = setTimeout(() => undefined, 60_000);
    quiet.unref();
    const pending = setTimeout(() => undefined, 60_000);
    try {
      // "×2" when one of vitest's own short timers happens to run as well.
      expect(leaksSince(before, snapshot())).toEqual(
        expect.arrayContaining([expect.stringMatching(/^active resource Timeout( ×\d+)? \(keeps the event loop alive\)$/)]),
      );
      clearTimeout(pending);
      expect(await waitForNoLeaks(before)).toEqual([]);
    } finally {
      clearTimeout(pending);
      clearTimeout(quiet);
    }
  });
});
