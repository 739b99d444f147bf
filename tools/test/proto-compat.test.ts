// The protocol compatibility check (`pnpm check:proto`, a step of tools/test.sh): `buf breaking`
// of proto/ against the snapshot of the last released protocol, packages/protocol/released.binpb.
// Each case edits a scratch copy of proto/ and runs the same command on it: breaking edits fail,
// additive ones pass.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot } from './processes.js';

const buf = join(repoRoot, 'node_modules/.bin/buf');
const released = join(repoRoot, 'packages/protocol/released.binpb');
const scratch: string[] = [];

afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A copy of proto/ with `edits` applied (file under skein/v1 → [from, to] replacements). */
function protoCopy(edits: Record<string, Array<[string, string]>> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'skein-proto-'));
  scratch.push(dir);
  cpSync(join(repoRoot, 'proto'), dir, { recursive: true });
  for (const [file, replacements] of Object.entries(edits)) {
    const path = join(dir, 'skein/v1', file);
    let text = readFileSync(path, 'utf8');
    for (const [from, to] of replacements) {
      if (!text.includes(from)) throw new Error(`${file} has no ${JSON.stringify(from)}; update this test`);
      text = text.replace(from, to);
    }
    writeFileSync(path, text);
  }
  return dir;
}

function breaking(dir: string): { code: number | null; output: string } {
  const r = spawnSync(buf, ['breaking', dir, '--against', released], { encoding: 'utf8' });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

// Transition (scheduler.proto) as released: key 1, start 2, finish 3, stimulus_id 4, time_ms 5, worker 6.
describe('buf breaking against the released protocol', () => {
  it('passes for proto/ as it is', () => {
    expect(breaking(join(repoRoot, 'proto'))).toEqual({ code: 0, output: '' });
  });

  it('passes additive changes: a new field, message, enum value and RPC', () => {
    const dir = protoCopy({
      'scheduler.proto': [['  string worker = 6;\n}', '  string worker = 6;\n  string note = 99;\n}']],
      'common.proto': [
        ['  ENCODING_RAW = 3;', '  ENCODING_RAW = 3;\n  ENCODING_EXTRA = 99;'],
        ['message Value {', 'message ExtraMessage {\n  string a = 1;\n}\n\nmessage Value {'],
      ],
      'worker.proto': [
        ['  rpc GetStatus(GetStatusRequest) returns (GetStatusResponse);', '  rpc GetStatus(GetStatusRequest) returns (GetStatusResponse);\n  rpc Extra(ExtraRequest) returns (ExtraResponse);'],
        ['message GetStatusRequest {}', 'message GetStatusRequest {}\n\nmessage ExtraRequest {}\n\nmessage ExtraResponse {}'],
      ],
    });
    expect(breaking(dir)).toEqual({ code: 0, output: '' });
  });

  it('fails on a renumbered field', () => {
    const r = breaking(protoCopy({ 'scheduler.proto': [['  double time_ms = 5;', '  double time_ms = 7;']] }));
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('Previously present field "5" with name "time_ms" on message "Transition" was deleted.');
  });

  it('fails on a removed field, even with its number reserved', () => {
    const removed = breaking(protoCopy({ 'scheduler.proto': [['  string worker = 6;\n}', '}']] }));
    expect(removed.code).not.toBe(0);
    expect(removed.output).toContain('Previously present field "6" with name "worker" on message "Transition" was deleted.');
    const reserved = breaking(protoCopy({ 'scheduler.proto': [['  string worker = 6;\n}', '  reserved 6;\n  reserved "worker";\n}']] }));
    expect(reserved.code).not.toBe(0);
    expect(reserved.output).toContain('was deleted');
  });

  it('fails on a changed type', () => {
    const r = breaking(protoCopy({ 'scheduler.proto': [['  double time_ms = 5;', '  int64 time_ms = 5;']] }));
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('Field "5" with name "time_ms" on message "Transition" changed type from "double" to "int64".');
  });

  it('fails on a renamed field (JSON and generated code see names)', () => {
    const r = breaking(protoCopy({ 'scheduler.proto': [['  string worker = 6;', '  string worker_address = 6;']] }));
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('on message "Transition" changed name from "worker" to "worker_address".');
  });

  it('fails on a removed RPC and a removed enum value', () => {
    const rpc = breaking(protoCopy({ 'worker.proto': [['  rpc GetStatus(GetStatusRequest) returns (GetStatusResponse);\n', '']] }));
    expect(rpc.code).not.toBe(0);
    expect(rpc.output).toContain('Previously present RPC "GetStatus" on service "WorkerService" was deleted.');
    const value = breaking(protoCopy({ 'common.proto': [['  ENCODING_RAW = 3;', '']] }));
    expect(value.code).not.toBe(0);
    expect(value.output).toContain('Previously present enum value "3" on enum "Encoding" was deleted.');
  });
});
