// README examples are run as tests, so the docs cannot rot: every ```ts block that imports from
// 'skein' is transpiled, run as a module inside the repository (so 'skein' resolves), and every
// `console.log(...); // expected` line must print exactly the expected text.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { repoRoot, start } from './processes.js';

const DOCS = ['README.md', 'packages/skein/README.md', 'packages/client/README.md'];

interface Example {
  doc: string;
  index: number;
  code: string;
  expected: string[];
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const doc of DOCS) {
    const text = readFileSync(join(repoRoot, doc), 'utf8');
    let index = 0;
    for (const m of text.matchAll(/```ts\n([\s\S]*?)```/g)) {
      const code = m[1]!;
      index++;
      if (!/from 'skein'/.test(code) || !/LocalCluster\.start/.test(code)) continue;
      const expected = [...code.matchAll(/console\.log\(.*\);\s*\/\/\s*(.+)$/gm)].map((x) => x[1]!.trim());
      out.push({ doc, index, code, expected });
    }
  }
  return out;
}

describe('README examples', () => {
  const found = examples();
  it('finds the runnable examples', () => {
    expect(found.length).toBeGreaterThanOrEqual(2);
  });
  for (const ex of found) {
    it(`${ex.doc} example ${ex.index} runs and prints what it says`, async () => {
      const js = ts.transpileModule(ex.code, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      }).outputText;
      const dir = mkdtempSync(join(repoRoot, 'examples', '.readme-'));
      const file = join(dir, 'example.mjs');
      writeFileSync(file, `${js}\nprocess.exit(0);\n`);
      try {
        const p = start('readme', process.execPath, [file]);
        if (p.child.exitCode === null) await new Promise((resolve) => p.child.once('exit', resolve));
        const code = p.child.exitCode;
        const printed = p.output().split('\n').filter((l) => l && !/^\d{4}-\d\d-\d\dT/.test(l));
        expect(code, p.output()).toBe(0);
        const squash = (l: string) => l.replace(/\s+/g, '');
        expect(printed.map(squash)).toEqual(ex.expected.map(squash));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
