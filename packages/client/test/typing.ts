// Compile-time checks of the public typings, not a runtime test: `npx tsc -p packages/client/test`
// must pass, and the lines marked as expected errors must stay errors.
import { Client, delayed, registered, type Future, asCompleted } from '../src/index.js';
declare const client: Client;
const x = client.submit((a: number, b: number) => a + b, 1, 2);
const y: Future<number> = client.submit((a: number, b: number) => a + b, x, 2);
const z: Future<string> = client.submit(async (o: { a: number[]; s: string }) => o.s + o.a.length, { a: [x, 1, y], s: 'q' });
// @ts-expect-error wrong arg type
client.submit((a: number) => a, 'str');
// @ts-expect-error wrong future type
client.submit((a: string) => a, x);
const m: Future<number>[] = client.map((a: number, b: string) => a + b.length, [1, 2], ['a', 'b']);
const r = registered<[number], number>('double');
const rf: Future<number> = client.submit(r, x);
const d = delayed((a: number) => a * 2)(x);
const d2 = delayed((a: number, b: number) => a + b)(d, 1);
const cf: Future<number> = client.compute(d2);
const [c1, c2] = client.compute([d, d2] as const);
const c1n: Future<number> = c1; void c2;
async function g() {
  const v: number[] = await client.gather(m);
  const o: { a: number; b: string[] } = await client.gather({ a: x, b: [z] });
  for await (const [f, val] of asCompleted(m, { withResults: true })) { const n: number = val; void f; void n; }
  void v; void o;
}
void y; void z; void rf; void cf; void c1n; void g;
