import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SSHCluster, parseKnownHosts, parseSshArgs, shellQuote } from '../src/index.js';

// Level 1: no sshd needed.
describe('known_hosts', () => {
  const key = randomBytes(51);
  const b64 = key.toString('base64');
  it('matches plain entries, with and without a port', () => {
    const hosts = parseKnownHosts(`# comment\nnode1,10.0.0.5 ssh-ed25519 ${b64}\n[127.0.0.2]:2222 ssh-ed25519 ${b64} comment\n`);
    expect(hosts).toHaveLength(2);
    expect(hosts[0]!.matches('node1', 22)).toBe(true);
    expect(hosts[0]!.matches('10.0.0.5', 22)).toBe(true);
    expect(hosts[0]!.matches('node1', 2222)).toBe(false);
    expect(hosts[1]!.matches('127.0.0.2', 2222)).toBe(true);
    expect(hosts[1]!.matches('127.0.0.2', 22)).toBe(false);
    expect(hosts[1]!.key.equals(key)).toBe(true);
  });
  it('matches hashed entries', () => {
    const salt = randomBytes(20);
    const hash = createHmac('sha1', salt).update('[node2]:2200').digest('base64');
    const [h] = parseKnownHosts(`|1|${salt.toString('base64')}|${hash} ssh-ed25519 ${b64}`);
    expect(h!.matches('node2', 2200)).toBe(true);
    expect(h!.matches('node3', 2200)).toBe(false);
  });
});

describe('options and arguments', () => {
  it('quotes remote arguments for the shell', () => {
    expect(shellQuote('tcp://127.0.0.1:8786')).toBe('tcp://127.0.0.1:8786');
    expect(shellQuote("it's here")).toBe(`'it'\\''s here'`);
  });
  it('parses skein-ssh flags', async () => {
    process.env['SKEIN_TEST_PW'] = 'secret';
    const o = await parseSshArgs(['h1', 'h2', 'h3', '--ssh-port', '2222', '--ssh-user', 'me', '--ssh-password-env', 'SKEIN_TEST_PW', '--remote-command', 'node /x/cli.js', '--scheduler-port', '9000', '--known-hosts', '/dev/null']);
    expect(o).toMatchObject({
      hosts: ['h1', 'h2', 'h3'],
      connectOptions: { port: 2222, username: 'me', password: 'secret', knownHosts: '/dev/null' },
      remoteCommand: 'node /x/cli.js',
      schedulerOptions: { port: 9000 },
    });
    await expect(parseSshArgs(['h1', '--ssh-password-env', 'SKEIN_TEST_UNSET_VAR'])).rejects.toThrow(/not set/);
  });
  it('refuses a cluster without hosts or without worker hosts', () => {
    expect(() => new SSHCluster({ hosts: [] })).toThrow(/needs hosts/);
    expect(() => new SSHCluster({ hosts: ['a'], nWorkers: 1, connectOptions: { knownHosts: '/dev/null', password: 'x' } })).toThrow(/no worker hosts/);
  });
});
