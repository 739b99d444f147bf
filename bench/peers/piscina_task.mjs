// The piscina pool's task functions (bench/peers/bench_piscina.mjs): a no-op and a sum.
export default function noop(x) {
  return x;
}

export function sum(xs) {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}
