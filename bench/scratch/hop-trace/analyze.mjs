import { readdirSync, readFileSync } from 'node:fs';
const by = new Map();
for (const f of readdirSync('/tmp/skein-hop-trace')) for (const line of readFileSync('/tmp/skein-hop-trace/' + f, 'utf8').split('\n')) {
  if (!line) continue; const [t, label, key] = line.split(' ');
  if (!by.has(key)) by.set(key, {}); const o = by.get(key); if (!(label in o)) o[label] = BigInt(t);
}
const order = ['C0submit','C1flush','C2written','S1recv','S2flush','S3wrote','W1recv','W2exec','W3posted','T1run','T2ran','W5done','W6flush','W7wrote','S4recv','S5flush','S6wrote','C3inmem','C9result'];
const gaps = new Map(); const tot = [];
for (const [k, o] of by) {
  if (!o.C0submit || !o.C9result) continue;
  tot.push(Number(o.C9result - o.C0submit) / 1e3);
  let prev = 'C0submit';
  for (const l of order.slice(1)) { if (!(l in o)) continue; const g = Number(o[l] - o[prev]) / 1e3; if (!gaps.has(prev + '>' + l)) gaps.set(prev + '>' + l, []); gaps.get(prev + '>' + l).push(g); prev = l; }
}
const med = (a) => { a = [...a].sort((x, y) => x - y); return a[a.length >> 1]; };
const p90 = (a) => { a = [...a].sort((x, y) => x - y); return a[Math.floor(a.length * 0.9)]; };
console.log('n', tot.length, 'total p50 us', med(tot).toFixed(0), 'p90', p90(tot).toFixed(0));
let s = 0;
for (const [g, a] of gaps) { s += med(a); console.log(g.padEnd(22), 'p50', med(a).toFixed(1).padStart(7), 'p90', p90(a).toFixed(1).padStart(7), 'n', a.length); }
console.log('sum of medians', s.toFixed(0));
