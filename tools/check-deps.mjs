#!/usr/bin/env node
// Enforces the dependency direction between the packages (see STYLE.md, "Layout"):
//
//   @skein/protocol ← @skein/common ← @skein/client, @skein/core-scheduler, @skein/core-worker
//     ← @skein/nanny, @skein/cluster ← @skein/deploy-*        and `skein` (the umbrella) on top.
//
// It reads every packages/*/package.json and every import in packages/*/src/**/*.ts and checks:
//   1. layers: a package depends only on packages of a lower layer (same-layer packages never
//      depend on each other: the scheduler and worker never import each other);
//   2. forbidden pairs, also through other packages: the client never reaches the scheduler or
//      worker; the cluster base and deployers never reach them either;
//   3. every imported package is declared in package.json (runtime imports in `dependencies`,
//      type-only imports may use `devDependencies`);
//   4. no deep imports into another @skein package (`@skein/x/src/...`, `@skein/x/dist/...`), and
//      no relative import that leaves its package;
//   5. no cycles between packages;
//   6. every package has an `exports` map (that is what blocks deep imports for users).
// Exit code 1 with one line per violation; 0 when clean.
//
// To place a new package, add it to LAYERS (and FORBIDDEN if needed).
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const packagesDir = join(root, 'packages');

/** Lower layers first. A package may depend on packages of strictly lower layers only. */
const LAYERS = [
  { layer: 0, match: (n) => n === '@skein/protocol' },
  // Test infrastructure with no @skein dependency (private; see the published-package check below).
  { layer: 0, match: (n) => n === '@skein/kube-emulator' },
  { layer: 1, match: (n) => n === '@skein/common' },
  // The dashboard sits with the client/scheduler/worker (it may use only protocol and common),
  // just below the scheduler, which serves it.
  { layer: 1.5, match: (n) => n === '@skein/dashboard' },
  { layer: 2, match: (n) => ['@skein/client', '@skein/core-scheduler', '@skein/core-worker'].includes(n) },
  { layer: 3, match: (n) => n === '@skein/nanny' || n === '@skein/cluster' },
  { layer: 4, match: (n) => n.startsWith('@skein/deploy-') },
  { layer: 9, match: (n) => n === 'skein' }, // the umbrella may depend on everything
];

const isCore = (n) => n === '@skein/core-scheduler' || n === '@skein/core-worker';
/** Pairs that must not be connected, directly or through other packages. */
const FORBIDDEN = [
  {
    from: (n) => n === '@skein/client',
    to: isCore,
    why: 'the client talks to the scheduler and workers over gRPC only (users install it without them)',
  },
  {
    from: (n) => n === '@skein/cluster' || n.startsWith('@skein/deploy-'),
    to: isCore,
    why: 'deployers start schedulers and workers as processes; they never load their implementations',
  },
  {
    from: (n) => n === '@skein/core-scheduler',
    to: (n) => n === '@skein/core-worker',
    why: 'the scheduler and the worker never import each other (they share @skein/common and @skein/protocol)',
  },
  {
    from: (n) => n === '@skein/core-worker',
    to: (n) => n === '@skein/core-scheduler',
    why: 'the scheduler and the worker never import each other (they share @skein/common and @skein/protocol)',
  },
];

const DEP_FIELDS = ['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies'];
const RUNTIME_FIELDS = ['dependencies', 'peerDependencies', 'optionalDependencies'];
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

const errors = [];
const warnings = [];
const fail = (msg) => errors.push(msg);
const rel = (p) => relative(root, p).split(sep).join('/');

// ---- read the packages ----
/** @type {Map<string, {name: string, dir: string, json: any, layer: number | undefined}>} */
const pkgs = new Map();
for (const d of readdirSync(packagesDir).sort()) {
  const dir = join(packagesDir, d);
  const file = join(dir, 'package.json');
  if (!statSync(dir).isDirectory() || !existsSync(file)) continue;
  let json;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`${rel(file)}: not valid JSON (${e.message})`);
    continue;
  }
  const name = json.name;
  if (!name) {
    fail(`${rel(file)}: has no "name"`);
    continue;
  }
  const layer = LAYERS.find((l) => l.match(name))?.layer;
  if (layer === undefined && (name.startsWith('@skein/') || name === 'skein')) {
    warnings.push(`${name}: no layer assigned in tools/check-deps.mjs (LAYERS); only the generic rules apply`);
  }
  if (!json.exports) {
    fail(`${name} (${rel(file)}): has no "exports" map; add one so users cannot deep-import its files`);
  }
  pkgs.set(name, { name, dir, json, layer });
}
const internal = (n) => pkgs.has(n);

/** name -> Map(dep name -> why, e.g. "package.json dependencies" or "src/x.ts imports it") */
const edges = new Map([...pkgs.keys()].map((n) => [n, new Map()]));
const addEdge = (from, to, why) => {
  if (from === to) return;
  const m = edges.get(from);
  if (!m.has(to)) m.set(to, why);
};

function checkPair(from, to, where) {
  const a = pkgs.get(from);
  const b = pkgs.get(to);
  if (to === 'skein' && from !== 'skein') {
    fail(`${where}: ${from} depends on the umbrella package skein; only applications may (depend on the @skein/* package instead)`);
    return;
  }
  for (const rule of FORBIDDEN) {
    if (rule.from(from) && rule.to(to)) {
      fail(`${where}: ${from} must not depend on ${to}: ${rule.why}`);
      return;
    }
  }
  if (a?.layer !== undefined && b?.layer !== undefined && b.layer >= a.layer) {
    fail(
      `${where}: ${from} (layer ${a.layer}) must not depend on ${to} (layer ${b.layer}): ` +
        'dependencies point down only (protocol ← common ← client/core-scheduler/core-worker ← nanny/cluster ← deployers)',
    );
  }
}

// ---- package.json dependencies ----
for (const p of pkgs.values()) {
  for (const field of DEP_FIELDS) {
    for (const [dep, range] of Object.entries(p.json[field] ?? {})) {
      if (!internal(dep)) {
        if (dep.startsWith('@skein/') || dep === 'skein') {
          fail(`${p.name}: ${field} names ${dep}, which is not a package of this workspace`);
        }
        continue;
      }
      const where = `${rel(join(p.dir, 'package.json'))} ${field}`;
      checkPair(p.name, dep, where);
      addEdge(p.name, dep, `${field} in package.json`);
      if (typeof range === 'string' && !range.startsWith('workspace:')) {
        fail(`${where}: ${dep} has range "${range}"; use "workspace:^" for packages of this workspace`);
      }
    }
  }
}

// ---- private test packages never reach users ----
for (const p of pkgs.values()) {
  if (p.json.private) continue;
  for (const field of RUNTIME_FIELDS) {
    for (const dep of Object.keys(p.json[field] ?? {})) {
      if (pkgs.get(dep)?.json.private) {
        fail(`${rel(join(p.dir, 'package.json'))} ${field}: the published ${p.name} depends on the private ${dep}; make it a devDependency (tests only)`);
      }
    }
  }
}

// ---- imports in src ----
let ts;
try {
  ts = createRequire(join(root, 'package.json'))('typescript');
} catch {
  fail('typescript is not installed at the repository root: run `pnpm install` first');
}

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') yield* walk(p);
    } else if (/\.(c|m)?tsx?$/.test(entry.name) && !entry.name.endsWith('.d.ts')) {
      yield p;
    }
  }
}

/** Every module specifier in a file, with whether it only imports types. */
function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found = [];
  const add = (node, spec, typeOnly) => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    found.push({ spec, typeOnly, line });
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const typeOnly =
        !!clause &&
        (clause.isTypeOnly ||
          (!clause.name &&
            !!clause.namedBindings &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node, node.moduleSpecifier.text, typeOnly);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const typeOnly =
        node.isTypeOnly ||
        (!!node.exportClause &&
          ts.isNamedExports(node.exportClause) &&
          node.exportClause.elements.length > 0 &&
          node.exportClause.elements.every((e) => e.isTypeOnly));
      add(node, node.moduleSpecifier.text, typeOnly);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const expr = node.moduleReference.expression;
      if (ts.isStringLiteral(expr)) add(node, expr.text, node.isTypeOnly);
    } else if (
      ts.isCallExpression(node) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword ||
        (ts.isIdentifier(node.expression) && node.expression.text === 'require')) &&
      node.arguments.length >= 1 &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      add(node, node.arguments[0].text, false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node, node.argument.literal.text, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

const packageNameOf = (spec) => {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
};

if (ts) {
  for (const p of pkgs.values()) {
    const src = join(p.dir, 'src');
    if (!existsSync(src)) continue;
    const declared = (fields) => new Set(fields.flatMap((f) => Object.keys(p.json[f] ?? {})));
    const runtimeDeps = declared(RUNTIME_FIELDS);
    const allDeps = declared(DEP_FIELDS);
    for (const file of walk(src)) {
      for (const { spec, typeOnly, line } of importsOf(file)) {
        const where = `${rel(file)}:${line}`;
        if (spec.startsWith('.') || spec.startsWith('/')) {
          const target = resolve(dirname(file), spec);
          if (!(target + sep).startsWith(p.dir + sep)) {
            fail(`${where}: relative import '${spec}' leaves ${p.name}; import the other package by its name instead`);
          }
          continue;
        }
        if (builtins.has(spec) || spec.startsWith('node:')) continue;
        const name = packageNameOf(spec);
        if (name === p.name) {
          if (spec !== name) fail(`${where}: '${spec}' deep-imports ${p.name} itself; use a relative import`);
          continue;
        }
        if (internal(name)) {
          const sub = spec.slice(name.length);
          // A subpath the target package declares in its `exports` map is public.
          const declared = Object.keys(pkgs.get(name)?.json?.exports ?? {}).includes(`.${sub}`);
          if (sub && sub !== '/package.json' && !declared) {
            fail(`${where}: deep import '${spec}'; import from '${name}' (only its index is public; export what you need there)`);
          }
          checkPair(p.name, name, where);
          addEdge(p.name, name, `${rel(file)}:${line} imports it`);
        }
        if (!allDeps.has(name)) {
          fail(`${where}: imports '${spec}' but ${p.name} does not declare ${name} in package.json dependencies`);
        } else if (!typeOnly && !runtimeDeps.has(name)) {
          fail(`${where}: imports '${spec}' at run time but ${name} is only a devDependency of ${p.name}; move it to dependencies (or use \`import type\`)`);
        }
      }
    }
  }
}

// ---- forbidden pairs through other packages ----
for (const from of pkgs.keys()) {
  // breadth-first from `from`, remembering the path
  const prev = new Map([[from, null]]);
  const queue = [from];
  while (queue.length) {
    const cur = queue.shift();
    for (const next of edges.get(cur)?.keys() ?? []) {
      if (prev.has(next)) continue;
      prev.set(next, cur);
      queue.push(next);
      if (cur === from) continue; // direct edges were reported above
      for (const rule of FORBIDDEN) {
        if (rule.from(from) && rule.to(next)) {
          const path = [next];
          for (let n = cur; n !== null; n = prev.get(n)) path.unshift(n);
          fail(`${from} reaches ${next} through ${path.join(' → ')}: ${rule.why}`);
        }
      }
    }
  }
}

// ---- cycles ----
{
  const state = new Map(); // name -> 'visiting' | 'done'
  const stack = [];
  const seen = new Set();
  const dfs = (n) => {
    state.set(n, 'visiting');
    stack.push(n);
    for (const next of edges.get(n)?.keys() ?? []) {
      if (state.get(next) === 'visiting') {
        const cycle = [...stack.slice(stack.indexOf(next)), next];
        const id = [...cycle.slice(0, -1)].sort().join(',');
        if (!seen.has(id)) {
          seen.add(id);
          const detail = cycle
            .slice(0, -1)
            .map((a, i) => `${a} → ${cycle[i + 1]} (${edges.get(a).get(cycle[i + 1])})`)
            .join('; ');
          fail(`import cycle between packages: ${cycle.join(' → ')}: ${detail}`);
        }
      } else if (!state.has(next)) {
        dfs(next);
      }
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of pkgs.keys()) if (!state.has(n)) dfs(n);
}

for (const w of warnings) console.warn(`check-deps: warning: ${w}`);
if (errors.length) {
  const unique = [...new Set(errors)];
  console.error(`check-deps: ${unique.length} violation(s) of the dependency rules (tools/check-deps.mjs, STYLE.md "Layout"):`);
  for (const e of unique) console.error(`  - ${e}`);
  process.exit(1);
}
console.log(`check-deps: ${pkgs.size} packages, dependencies point one way, no deep imports, no cycles`);
