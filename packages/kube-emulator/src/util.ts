/** Selectors, patches and Status bodies: the pure parts of the API emulator. */

export type Obj = Record<string, any>;

/** A Kubernetes error: answered as a Status body with this code and reason. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details: Obj = {},
  ) {
    super(message);
  }
}

export function status(code: number, reason: string, message: string, details: Obj = {}): Obj {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: code < 300 ? 'Success' : 'Failure',
    message,
    reason,
    details,
    code,
  };
}

export const clone = <T>(o: T): T => structuredClone(o);

// ---- label selectors ----
type Requirement = { key: string; op: 'in' | 'notin' | 'exists' | '!exists'; values: string[] };

/** Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`; throws a 400 on a malformed one. */
export function parseLabelSelector(text: string | null | undefined): Requirement[] {
  const out: Requirement[] = [];
  if (!text) return out;
  // Split on commas that are not inside parentheses.
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  for (const raw of parts) {
    const p = raw.trim();
    if (!p) continue;
    let m: RegExpMatchArray | null;
    if ((m = p.match(/^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      out.push({ key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()).filter(Boolean) });
    } else if ((m = p.match(/^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/))) {
      out.push({ key: m[1]!, op: m[2] === '!=' ? 'notin' : 'in', values: [m[3]!] });
    } else if ((m = p.match(/^!([\w./-]+)$/))) {
      out.push({ key: m[1]!, op: '!exists', values: [] });
    } else if ((m = p.match(/^([\w./-]+)$/))) {
      out.push({ key: m[1]!, op: 'exists', values: [] });
    } else {
      throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(p)} in label selector ${JSON.stringify(text)}`);
    }
  }
  return out;
}

export function labelsMatch(reqs: Requirement[], labels: Obj | undefined): boolean {
  const l = labels ?? {};
  for (const r of reqs) {
    const has = Object.hasOwn(l, r.key);
    const v = has ? String(l[r.key]) : undefined;
    if (r.op === 'exists' && !has) return false;
    if (r.op === '!exists' && has) return false;
    if (r.op === 'in' && (v === undefined || !r.values.includes(v))) return false;
    if (r.op === 'notin' && v !== undefined && r.values.includes(v)) return false;
  }
  return true;
}

/** `matchLabels` (and `matchExpressions`) of a LabelSelector object, as requirements. */
export function selectorObject(sel: Obj | undefined): Requirement[] {
  const out: Requirement[] = [];
  for (const [k, v] of Object.entries(sel?.['matchLabels'] ?? {})) out.push({ key: k, op: 'in', values: [String(v)] });
  for (const e of (sel?.['matchExpressions'] ?? []) as Obj[]) {
    const op = String(e['operator']);
    out.push({ key: String(e['key']), op: op === 'In' ? 'in' : op === 'NotIn' ? 'notin' : op === 'Exists' ? 'exists' : '!exists', values: (e['values'] ?? []) as string[] });
  }
  return out;
}

export function selectorString(sel: Obj | undefined): string {
  return Object.entries(sel?.['matchLabels'] ?? sel ?? {})
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(',');
}

// ---- field selectors ----
type FieldReq = { path: string; eq: boolean; value: string };
const FIELDS = new Set(['metadata.name', 'metadata.namespace', 'status.phase', 'spec.nodeName', 'spec.restartPolicy', 'status.podIP', 'type']);

export function parseFieldSelector(text: string | null | undefined): FieldReq[] {
  const out: FieldReq[] = [];
  if (!text) return out;
  for (const raw of text.split(',')) {
    const p = raw.trim();
    if (!p) continue;
    const m = p.match(/^([\w.]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw new ApiError(400, 'BadRequest', `invalid field selector: ${JSON.stringify(p)}`);
    if (!FIELDS.has(m[1]!)) throw new ApiError(400, 'BadRequest', `field label not supported: ${m[1]}`);
    out.push({ path: m[1]!, eq: m[2] !== '!=', value: m[3]! });
  }
  return out;
}

export function fieldsMatch(reqs: FieldReq[], obj: Obj): boolean {
  for (const r of reqs) {
    let v: unknown = obj;
    for (const k of r.path.split('.')) v = (v as Obj | undefined)?.[k];
    const s = v === undefined || v === null ? '' : String(v);
    if ((s === r.value) !== r.eq) return false;
  }
  return true;
}

// ---- patches ----
function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new ApiError(422, 'Invalid', `json patch path must start with '/': ${path}`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: Obj, parts: string[], path: string): { parent: Obj; key: string } {
  let cur: unknown = doc;
  for (const p of parts.slice(0, -1)) {
    cur = (cur as Obj | undefined)?.[p];
    if (cur === undefined || cur === null || typeof cur !== 'object') throw new ApiError(422, 'Invalid', `json patch: path ${path} does not exist`);
  }
  return { parent: cur as Obj, key: parts[parts.length - 1]! };
}

/** RFC 6902. */
export function applyJsonPatch(doc: Obj, ops: unknown): Obj {
  if (!Array.isArray(ops)) throw new ApiError(400, 'BadRequest', 'a json patch (application/json-patch+json) must be an array of operations');
  let out = clone(doc);
  const get = (path: string): unknown => {
    let cur: unknown = out;
    for (const p of pointer(path)) {
      cur = (cur as Obj | undefined)?.[p];
      if (cur === undefined) throw new ApiError(422, 'Invalid', `json patch: path ${path} does not exist`);
    }
    return cur;
  };
  const remove = (path: string): unknown => {
    const parts = pointer(path);
    const { parent, key } = parentOf(out, parts, path);
    if (Array.isArray(parent)) {
      const i = Number(key);
      if (!(i >= 0 && i < parent.length)) throw new ApiError(422, 'Invalid', `json patch: path ${path} does not exist`);
      return parent.splice(i, 1)[0];
    }
    if (!Object.hasOwn(parent, key)) throw new ApiError(422, 'Invalid', `json patch: path ${path} does not exist`);
    const v = parent[key];
    delete parent[key];
    return v;
  };
  const add = (path: string, value: unknown, replace: boolean) => {
    const parts = pointer(path);
    if (parts.length === 0) {
      out = clone(value as Obj);
      return;
    }
    const { parent, key } = parentOf(out, parts, path);
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key);
      if (!(i >= 0 && i <= parent.length)) throw new ApiError(422, 'Invalid', `json patch: index ${key} out of range at ${path}`);
      if (replace) parent[i] = clone(value);
      else parent.splice(i, 0, clone(value));
    } else {
      if (replace && !Object.hasOwn(parent, key)) throw new ApiError(422, 'Invalid', `json patch: path ${path} does not exist`);
      parent[key] = clone(value);
    }
  };
  for (const op of ops as Obj[]) {
    const path = String(op['path'] ?? '');
    switch (op['op']) {
      case 'add':
        add(path, op['value'], false);
        break;
      case 'replace':
        add(path, op['value'], true);
        break;
      case 'remove':
        remove(path);
        break;
      case 'move':
        add(path, remove(String(op['from'])), false);
        break;
      case 'copy':
        add(path, get(String(op['from'])), false);
        break;
      case 'test':
        if (JSON.stringify(get(path)) !== JSON.stringify(op['value'])) throw new ApiError(422, 'Invalid', `json patch: test failed at ${path}`);
        break;
      default:
        throw new ApiError(400, 'BadRequest', `json patch: unknown op ${JSON.stringify(op['op'])}`);
    }
  }
  return out;
}

/** RFC 7386. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Obj = target !== null && typeof target === 'object' && !Array.isArray(target) ? clone(target as Obj) : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}

/** The list fields a strategic merge patch merges by key (the ones pod and deployment specs use). */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
  ownerReferences: 'uid',
  conditions: 'type',
  imagePullSecrets: 'name',
};

/** A merge patch that merges the lists of MERGE_KEYS by their key (enough for pod and deployment specs). */
export function applyStrategicMergePatch(target: unknown, patch: unknown, field = ''): unknown {
  if (Array.isArray(patch) && Array.isArray(target) && MERGE_KEYS[field]) {
    const key = MERGE_KEYS[field]!;
    const out = clone(target as Obj[]);
    for (const item of patch as Obj[]) {
      const i = out.findIndex((o) => o?.[key] === item?.[key]);
      if (item?.['$patch'] === 'delete') {
        if (i >= 0) out.splice(i, 1);
      } else if (i >= 0) out[i] = applyStrategicMergePatch(out[i], item) as Obj;
      else out.push(clone(item));
    }
    return out;
  }
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Obj = target !== null && typeof target === 'object' && !Array.isArray(target) ? clone(target as Obj) : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = applyStrategicMergePatch(out[k], v, k);
  }
  return out;
}

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export function checkName(kind: string, name: unknown): void {
  if (typeof name !== 'string' || name === '') {
    throw new ApiError(422, 'Invalid', `${kind} "" is invalid: metadata.name: Required value: name or generateName is required`, { kind: kind.toLowerCase() });
  }
  if (name.length > 253 || !DNS1123.test(name)) {
    throw new ApiError(
      422,
      'Invalid',
      `${kind} "${name}" is invalid: metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
      { name, kind: kind.toLowerCase(), causes: [{ reason: 'FieldValueInvalid', field: 'metadata.name' }] },
    );
  }
}

const ALNUM = 'bcdfghjklmnpqrstvwxz2456789';
export function randomSuffix(n = 5): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALNUM[Math.floor(Math.random() * ALNUM.length)];
  return s;
}

export const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
