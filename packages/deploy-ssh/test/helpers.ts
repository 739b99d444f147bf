import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const SKEIN_BIN = fileURLToPath(new URL('../../skein/dist/cli.js', import.meta.url));
export const SSH_BIN = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
/** How the tests start Skein on the "remote" hosts (the same machine, over SSH). */
export const REMOTE_COMMAND = `${process.execPath} ${SKEIN_BIN}`;

export const SSHD_DIR = process.env['SKEIN_SSHD_DIR'] ?? '/tmp/skein-sshd-test';
export const SSHD_PORT = Number(process.env['SKEIN_SSHD_PORT'] ?? 2222);
export const KEY = `${SSHD_DIR}/client/id_ed25519`;
export const KNOWN_HOSTS = `${SSHD_DIR}/known_hosts`;
export const PASSWORD_USER = 'skeintest';
export const PASSWORD = 'skeintest-pass';

function sshdLocal(mode: 'start' | 'stop'): void {
  execFileSync('bash', [`${REPO}tools/sshd-local.sh`, mode], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      SKEIN_SSHD_DIR: SSHD_DIR,
      SKEIN_SSHD_PORT: String(SSHD_PORT),
      SKEIN_SSHD_PASSWORD_USER: PASSWORD_USER,
      SKEIN_SSHD_PASSWORD: PASSWORD,
    },
    timeout: 240_000,
  });
}
export const startSshd = () => sshdLocal('start');
export const stopSshd = () => sshdLocal('stop');

/** Pids of live processes whose environment holds `marker` (remote processes of one test). */
export function processesWithMarker(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${entry}/cwd`);
      } catch {
        // not ours to read
      }
      if (cwd.includes(marker) || readFileSync(`/proc/${entry}/environ`, 'latin1').includes(marker)) {
        const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
        if (!/\) Z /.test(stat)) pids.push(Number(entry));
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
