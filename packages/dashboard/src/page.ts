/**
 * The `/status` page: one self-contained HTML document (inline CSS and JS, no external requests).
 * It opens `/api/events` and redraws from the updates. The script avoids template literals so it
 * can live in this TypeScript string as is.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Skein dashboard</title>
<style>
  :root { --fg:#1d2430; --muted:#6b7480; --line:#e3e6ea; --bg:#f6f7f9; --card:#fff; --accent:#2f6fde; }
  * { box-sizing: border-box; }
  body { margin:0; font:13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; align-items:center; gap:18px; padding:10px 16px; background:#1d2430; color:#fff; flex-wrap:wrap; }
  header h1 { font-size:16px; margin:0; font-weight:600; letter-spacing:.02em; }
  header .stat { color:#c9d1dc; } header .stat b { color:#fff; font-weight:600; }
  #conn { width:10px; height:10px; border-radius:50%; background:#999; display:inline-block; }
  #conn.on { background:#3ecf6e; } #conn.off { background:#e5534b; }
  main { display:grid; grid-template-columns: minmax(0,1.3fr) minmax(0,1fr); gap:12px; padding:12px; }
  section { contain: content; background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 12px; min-width:0; }
  section h2 { font-size:13px; margin:0 0 8px; font-weight:600; color:#39424e; text-transform:uppercase; letter-spacing:.04em; }
  .full { grid-column: 1 / -1; }
  canvas { display:block; width:100%; }
  table { border-collapse:collapse; width:100%; font-variant-numeric: tabular-nums; }
  th, td { text-align:left; padding:3px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
  th { font-weight:600; color:var(--muted); font-size:12px; }
  td.num, th.num { text-align:right; }
  .membar { position:relative; width:220px; height:14px; background:#eef0f3; border-radius:3px; overflow:hidden; display:inline-block; vertical-align:middle; }
  .membar span { position:absolute; top:0; bottom:0; }
  .m-managed { background:#2f6fde; } .m-unmanaged { background:#9bb8ee; } .m-spilled { background:#8a8f98; }
  .membar.over .m-managed { background:#e5534b; }
  .memtxt { color:var(--muted); margin-left:6px; font-size:12px; }
  .status-running { color:#1a7f37; } .status-paused { color:#b35900; font-weight:600; } .status-retiring { color:#6b7480; font-style:italic; }
  .prog { display:grid; grid-template-columns: 180px 1fr 110px; gap:4px 8px; align-items:center; }
  .prog .name { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
  .prog .bar { height:14px; background:#eef0f3; border-radius:3px; overflow:hidden; display:flex; }
  .prog .bar span { height:100%; }
  .prog .cnt { color:var(--muted); font-size:12px; text-align:right; font-variant-numeric: tabular-nums; }
  .legend { color:var(--muted); font-size:12px; margin-top:6px; }
  .legend i { display:inline-block; width:10px; height:10px; margin:0 4px 0 10px; vertical-align:-1px; border-radius:2px; }
  .charts { display:grid; grid-template-columns: 1fr 1fr; gap:10px; }
  .charts div small { color:var(--muted); display:block; min-height:34px; }
  #errors td.msg { white-space:normal; color:#b42318; }
  .empty { color:var(--muted); font-style:italic; }
  #tip { position:fixed; pointer-events:none; background:#1d2430; color:#fff; padding:4px 7px; border-radius:4px; font-size:12px; display:none; z-index:9; }
  .wtable { max-height:420px; overflow:auto; }
</style>
</head>
<body>
<header>
  <h1>Skein</h1><span id="conn" title="live updates"></span>
  <span class="stat" id="addr"></span>
  <span class="stat">workers <b id="h-workers">0</b></span>
  <span class="stat">threads <b id="h-threads">0</b></span>
  <span class="stat">processing <b id="h-processing">0</b></span>
  <span class="stat">in memory <b id="h-memory">0</b></span>
  <span class="stat">erred <b id="h-erred">0</b></span>
  <span class="stat">completed <b id="h-completed">0</b></span>
  <span class="stat">tasks/s <b id="h-rate">0</b></span>
  <span class="stat">scheduler loop lag p99 <b id="h-lag">0 ms</b></span>
</header>
<main>
  <section class="full" id="stream-section">
    <h2>Task stream <small id="stream-info" style="text-transform:none;color:var(--muted);font-weight:400"></small></h2>
    <canvas id="stream" height="120"></canvas>
  </section>
  <section id="progress-section">
    <h2>Progress</h2>
    <div id="progress" class="prog"></div>
    <div class="legend"><i style="background:#888;opacity:.35"></i>done<i style="background:#888"></i>in memory<i style="background:#4b5563"></i>processing<i style="background:#d5d9de"></i>waiting<i style="background:#111"></i>erred</div>
  </section>
  <section id="charts-section">
    <h2>Cluster memory and CPU</h2>
    <div class="charts">
      <div><small>memory: <span id="mem-now"></span></small><canvas id="chart-mem" height="130"></canvas></div>
      <div><small>CPU: <span id="cpu-now"></span></small><canvas id="chart-cpu" height="130"></canvas></div>
    </div>
  </section>
  <section class="full" id="workers-section">
    <h2>Workers</h2>
    <div class="wtable"><table id="workers"><thead><tr>
      <th>name</th><th>address</th><th class="num">threads</th><th class="num">processing</th>
      <th>memory (managed / unmanaged / spilled vs limit)</th><th class="num">CPU</th><th>status</th><th class="num">last seen</th>
    </tr></thead><tbody></tbody></table></div>
  </section>
  <section class="full" id="errors-section">
    <h2>Errors</h2>
    <table id="errors"><thead><tr><th>time</th><th>key</th><th>worker</th><th>error</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<div id="tip"></div>
<script>
"use strict";
var WINDOW_MS = 15000;
// Keyed by worker addresses and task groups (user data): Maps, never plain objects.
var S = { snap: null, stream: [], history: [], lag: null, offset: 0, lanes: new Map(), rate: [], dirty: true };
var $ = function (id) { return document.getElementById(id); };
function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
function bytes(n) {
  if (!(n > 0)) return "0 B";
  var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + u[i];
}
var colorCache = new Map();
function color(group, alpha) {
  var c = colorCache.get(group);
  if (c === undefined) {
    var h = 0;
    for (var i = 0; i < group.length; i++) h = (h * 31 + group.charCodeAt(i)) >>> 0;
    c = Math.round((h % 1000) * 137.508) % 360; // golden angle: near names, far hues
    colorCache.set(group, c);
  }
  return "hsla(" + c + ",62%,52%," + (alpha === undefined ? 1 : alpha) + ")";
}
function now() { return Date.now() + S.offset; }

// ------------------------------------------------------------- task stream lanes
function workerLanes() {
  // row offsets per worker, in the workers' order: one row per thread, or one per worker when
  // the cluster has more threads than fit
  var lanes = new Map(), y = 0, ws = S.snap ? S.snap.workers : [], threads = 0, i;
  for (i = 0; i < ws.length; i++) threads += ws[i].nthreads;
  var perThread = threads <= 96;
  for (i = 0; i < ws.length; i++) { var n = perThread ? ws[i].nthreads : 1; lanes.set(ws[i].address, { first: y, n: n, name: ws[i].name }); y += n; }
  var laneH = y ? Math.max(1, Math.min(22, Math.floor(400 / y))) : 20;
  return { map: lanes, total: y, laneH: laneH, perThread: perThread };
}
function addRows(rows) {
  for (var i = 0; i < rows.length; i++) {
    var r = rows[i];
    var ends = S.lanes.get(r[0]);
    if (!ends) S.lanes.set(r[0], ends = []);
    var lane = -1, best = 0;
    for (var j = 0; j < ends.length; j++) {
      if (ends[j] <= r[3] + 1) { lane = j; break; }
      if (ends[j] < ends[best]) best = j;
    }
    var n = lanesOf(r[0]);
    if (lane < 0) lane = ends.length < n ? ends.length : best;
    ends[lane] = Math.max(ends[lane] || 0, r[4]);
    S.stream.push({ w: r[0], g: r[1], k: r[2], a: r[3], b: r[4], kind: r[5], lane: lane });
  }
  var cutoff = now() - WINDOW_MS - 2000;
  var drop = 0;
  while (drop < S.stream.length && S.stream[drop].b < cutoff) drop++;
  if (S.stream.length - drop > 40000) drop = S.stream.length - 40000;
  if (drop) S.stream.splice(0, drop);
}
function lanesOf(addr) {
  var ws = S.snap ? S.snap.workers : [];
  for (var i = 0; i < ws.length; i++) if (ws[i].address === addr) return ws[i].nthreads;
  return 1;
}
function fitCanvas(c, h) {
  var dpr = window.devicePixelRatio || 1, w = c.clientWidth;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); c.style.height = h + "px"; }
  var ctx = c.getContext("2d"); ctx.setTransform(dpr, 0, 0, dpr, 0, 0); return ctx;
}
var LABEL_W = 90;
function drawStream() {
  var c = $("stream"), L = workerLanes();
  var laneH = L.laneH;
  var h = Math.max(60, L.total * laneH + 20);
  var ctx = fitCanvas(c, h), W = c.clientWidth;
  ctx.clearRect(0, 0, W, h);
  var t1 = now(), t0 = t1 - WINDOW_MS, plotW = W - LABEL_W;
  var sx = function (t) { return LABEL_W + (t - t0) / WINDOW_MS * plotW; };
  ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
  L.map.forEach(function (ln) {
    ctx.fillStyle = "#f0f2f5"; ctx.fillRect(LABEL_W, ln.first * laneH, plotW, Math.max(1, ln.n * laneH - (laneH > 3 ? 1 : 0)));
    if (ln.n * laneH >= 10) { ctx.fillStyle = "#6b7480"; ctx.fillText(ln.name.length > 13 ? ln.name.slice(0, 12) + "…" : ln.name, 4, ln.first * laneH + ln.n * laneH / 2); }
  });
  var byColor = new Map();
  var shown = 0;
  // Thousands of short tasks land on the same pixels: per row, skip a bar that would only cover
  // the pixel the previous bar of the same colour already filled.
  var lastX = new Float64Array(L.total), lastKey = new Array(L.total);
  for (var i = 0; i < S.stream.length; i++) {
    var e = S.stream[i];
    if (e.b < t0) continue;
    var wl = L.map.get(e.w); if (!wl) continue;
    var row = wl.first + Math.min(e.lane, wl.n - 1);
    var key = e.kind === 1 ? "erred" : e.kind === 2 ? "transfer" : e.g;
    shown++;
    var x0 = sx(e.a), x1 = Math.max(x0 + 1, sx(e.b));
    if (lastKey[row] === key && Math.floor(x1) <= lastX[row]) continue;
    lastKey[row] = key; lastX[row] = Math.floor(x1);
    var rects = byColor.get(key);
    if (!rects) byColor.set(key, rects = []);
    rects.push(x0, row * laneH + (laneH > 6 ? 1 : 0), x1 - x0, laneH > 6 ? laneH - 3 : laneH);
  }
  byColor.forEach(function (rs, k) {
    ctx.fillStyle = k === "erred" ? "#111" : k === "transfer" ? "rgba(229,83,75,.7)" : color(k);
    for (var j = 0; j < rs.length; j += 4) ctx.fillRect(rs[j], rs[j + 1], rs[j + 2], rs[j + 3]);
  });
  // time axis
  ctx.fillStyle = "#6b7480"; ctx.textBaseline = "top";
  for (var s = 0; s <= WINDOW_MS / 1000; s += 5) { var x = sx(t1 - s * 1000); ctx.fillRect(x, L.total * laneH, 1, 4); ctx.fillText(s ? "-" + s + " s" : "now", Math.min(x - 10, W - 26), L.total * laneH + 5); }
  $("stream-info").textContent = "last " + WINDOW_MS / 1000 + " s, " + shown + " task runs, one row per worker" + (L.perThread ? " thread" : "") + ", coloured by task group";
}

// ------------------------------------------------------------- progress
function drawProgress() {
  var gs = S.snap.groups.map(function (g, i) { return { g: g, i: i }; });
  var active = function (g) { var s = g.states; return s.waiting + s.queued + s["no-worker"] + s.processing; };
  // groups with work left first, then the newest
  gs.sort(function (a, b) { return (active(b.g) > 0) - (active(a.g) > 0) || b.i - a.i; });
  gs = gs.map(function (x) { return x.g; });
  gs = gs.slice(0, 40);
  var html = "";
  for (var i = 0; i < gs.length; i++) {
    var g = gs[i], s = g.states;
    // as in Dask: released and forgotten tasks are done (a task waiting to run is never released for long)
    var parts = [["done", s.released + s.forgotten, color(g.name, .35)], ["memory", s.memory, color(g.name)], ["processing", s.processing, "#4b5563"],
      ["waiting", s.waiting + s.queued + s["no-worker"], "#d5d9de"], ["erred", s.erred, "#111"]];
    var total = 0; for (var j = 0; j < parts.length; j++) total += parts[j][1];
    if (!total) continue;
    var bar = "";
    for (j = 0; j < parts.length; j++) if (parts[j][1]) bar += '<span class="seg-' + parts[j][0] + '" style="width:' + (100 * parts[j][1] / total) + '%;background:' + parts[j][2] + '" title="' + parts[j][0] + ": " + parts[j][1] + '"></span>';
    html += '<div class="name" title="' + esc(g.name) + '">' + esc(g.name) + '</div><div class="bar" data-group="' + esc(g.name) + '">' + bar +
      '</div><div class="cnt">' + (s.released + s.forgotten + s.memory) + " / " + total + (s.erred ? ' <b style="color:#b42318">' + s.erred + " erred</b>" : "") + "</div>";
  }
  $("progress").innerHTML = html || '<div class="empty">no tasks yet</div>';
}

// ------------------------------------------------------------- charts
function lineChart(id, series, maxY, fmt) {
  var c = $(id), ctx = fitCanvas(c, 130), W = c.clientWidth, H = 130, pad = 8, left = 52;
  ctx.clearRect(0, 0, W, H);
  var hs = S.history; if (!hs.length) return;
  // the last 5 minutes, or the last minute while the history is shorter
  var t1 = hs[hs.length - 1].timeMs, span = Math.min(300000, Math.max(60000, t1 - hs[0].timeMs)), t0 = t1 - span;
  var ymax = maxY || 1;
  for (var si = 0; si < series.length; si++) for (var i = 0; i < hs.length; i++) ymax = Math.max(ymax, series[si].get(hs[i]));
  ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#6b7480"; ctx.font = "10px system-ui, sans-serif"; ctx.textBaseline = "middle";
  for (var g = 0; g <= 2; g++) { var y = pad + (H - 2 * pad - 12) * g / 2; ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W, y); ctx.stroke(); ctx.fillText(fmt(ymax * (1 - g / 2)), 2, y); }
  var X = function (t) { return left + (t - t0) / (t1 - t0 || 1) * (W - left); };
  var Y = function (v) { return pad + (H - 2 * pad - 12) * (1 - v / ymax); };
  for (si = 0; si < series.length; si++) {
    ctx.strokeStyle = series[si].color; ctx.lineWidth = series[si].dash ? 1 : 1.6; ctx.setLineDash(series[si].dash ? [4, 3] : []);
    ctx.beginPath(); var started = false;
    for (i = 0; i < hs.length; i++) { if (hs[i].timeMs < t0) continue; var px = X(hs[i].timeMs), py = Y(series[si].get(hs[i])); if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; } }
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.fillStyle = "#6b7480"; ctx.textBaseline = "bottom"; ctx.fillText(span >= 120000 ? "-" + Math.round(span / 60000) + " min" : "-" + Math.round(span / 1000) + " s", left, H); ctx.fillText("now", W - 20, H);
}
function drawCharts() {
  lineChart("chart-mem", [
    { color: "#2f6fde", get: function (h) { return h.managedBytes; } },
    { color: "#9bb8ee", get: function (h) { return h.rssBytes; } },
    { color: "#8a8f98", get: function (h) { return h.spilledBytes; } },
    { color: "#e5534b", dash: true, get: function (h) { return h.limitBytes; } }], 0, bytes);
  lineChart("chart-cpu", [
    { color: "#1a7f37", get: function (h) { return h.cpuPercent; } },
    { color: "#b0b6be", dash: true, get: function (h) { return h.threads * 100; } }], 100, function (v) { return v.toFixed(0) + "%"; });
  var last = S.history[S.history.length - 1];
  if (last) {
    $("mem-now").innerHTML = '<b style="color:#2f6fde">managed ' + bytes(last.managedBytes) + '</b>, <b style="color:#7d9bd4">rss ' + bytes(last.rssBytes) + '</b>, spilled ' + bytes(last.spilledBytes) + ', <span style="color:#e5534b">limit ' + bytes(last.limitBytes) + "</span>";
    $("cpu-now").innerHTML = '<b style="color:#1a7f37">' + last.cpuPercent.toFixed(0) + "%</b> of " + last.threads * 100 + "% (threads)";
  }
}

// ------------------------------------------------------------- workers and errors
function drawWorkers() {
  var ws = S.snap.workers, t = S.snap.timeMs, html = "";
  for (var i = 0; i < ws.length; i++) {
    var w = ws[i], lim = w.memoryLimit || Math.max(w.memoryRss, 1);
    var managed = Math.min(w.managedBytes, w.memoryRss || w.managedBytes), unmanaged = Math.max(0, w.memoryRss - managed);
    var pct = function (v) { return Math.min(100, 100 * v / lim); };
    var over = w.memoryLimit && w.memoryRss > 0.8 * w.memoryLimit;
    var a = pct(managed), b = Math.min(100 - a, pct(unmanaged)), c = Math.min(100 - a - b, pct(w.spilledBytes));
    html += "<tr><td>" + esc(w.name) + "</td><td>" + esc(w.address) + '</td><td class="num">' + w.nthreads + '</td><td class="num">' + w.processing +
      '</td><td><span class="membar' + (over ? " over" : "") + '"><span class="m-managed" style="left:0;width:' + a + '%"></span><span class="m-unmanaged" style="left:' + a + "%;width:" + b +
      '%"></span><span class="m-spilled" style="left:' + (a + b) + "%;width:" + c + '%"></span></span><span class="memtxt">' + bytes(managed) + " / " + bytes(unmanaged) + " / " + bytes(w.spilledBytes) +
      " of " + (w.memoryLimit ? bytes(w.memoryLimit) : "no limit") + '</span></td><td class="num">' + w.cpuPercent.toFixed(0) + '%</td><td class="status-' + w.status + '">' + w.status +
      '</td><td class="num">' + Math.max(0, (t - w.lastSeenMs) / 1000).toFixed(1) + " s ago</td></tr>";
  }
  $("workers").tBodies[0].innerHTML = html || '<tr><td colspan="8" class="empty">no workers</td></tr>';
}
function drawErrors() {
  var es = S.snap.errors.slice().reverse().slice(0, 50), html = "";
  for (var i = 0; i < es.length; i++) {
    var e = es[i];
    html += "<tr><td>" + new Date(e.timeMs).toLocaleTimeString() + "</td><td>" + esc(e.key) + "</td><td>" + esc(e.worker || "-") + '</td><td class="msg"><b>' + esc(e.type) + "</b>: " + esc(e.message) + "</td></tr>";
  }
  $("errors").tBodies[0].innerHTML = html || '<tr><td colspan="4" class="empty">no errors</td></tr>';
}
function drawHeader(d) {
  var s = d.snapshot, threads = 0;
  for (var i = 0; i < s.workers.length; i++) threads += s.workers[i].nthreads;
  $("addr").textContent = s.schedulerAddress;
  $("h-workers").textContent = s.workers.length; $("h-threads").textContent = threads;
  $("h-processing").textContent = s.tasksByState.processing; $("h-memory").textContent = s.tasksByState.memory;
  $("h-erred").textContent = s.tasksByState.erred; $("h-completed").textContent = s.counters.tasksCompleted;
  S.rate.push([s.timeMs, s.counters.tasksCompleted]); while (S.rate.length > 6) S.rate.shift();
  var r0 = S.rate[0], r1 = S.rate[S.rate.length - 1];
  $("h-rate").textContent = r1[0] > r0[0] ? Math.round((r1[1] - r0[1]) / ((r1[0] - r0[0]) / 1000)) : 0;
  if (d.lag) $("h-lag").textContent = d.lag.p99Ms.toFixed(1) + " ms";
  document.title = "Skein: " + s.tasksByState.processing + " processing, " + s.workers.length + " workers";
}
var lastWorkersDraw = 0;
function apply(d) {
  S.snap = d.snapshot; S.lag = d.lag; S.offset = d.snapshot.timeMs - Date.now();
  drawCharts(); // first: it reads layout, the others change the DOM
  drawHeader(d); drawProgress(); drawErrors();
  // a big workers table is redrawn once a second at most
  var t = performance.now();
  if (S.snap.workers.length <= 50 || t - lastWorkersDraw > 1000) { drawWorkers(); lastWorkersDraw = t; }
  S.dirty = true;
}

// ------------------------------------------------------------- wiring
var es = new EventSource("/api/events");
es.addEventListener("init", function (ev) {
  var d = JSON.parse(ev.data);
  S.snap = d.snapshot; S.stream = []; S.lanes = new Map(); S.history = d.history || [];
  addRows(d.stream || []); apply(d); $("conn").className = "on";
});
es.addEventListener("update", function (ev) {
  var d = JSON.parse(ev.data);
  S.snap = d.snapshot;
  addRows(d.stream || []);
  for (var i = 0; i < (d.history || []).length; i++) { var h = d.history[i]; if (!S.history.length || S.history[S.history.length - 1].timeMs < h.timeMs) S.history.push(h); }
  if (S.history.length > 600) S.history.splice(0, S.history.length - 600);
  apply(d); $("conn").className = "on";
});
es.onerror = function () { $("conn").className = "off"; };
// The task stream scrolls at up to 5 frames/s, fewer when drawing it gets expensive (at most
// about a fifth of the main thread): a watching browser should leave the CPU to the cluster.
var lastDraw = 0, drawCost = 0;
function frame(t) {
  if (S.snap && (S.dirty && t - lastDraw > 100 || t - lastDraw > Math.max(200, drawCost * 5))) {
    var t0 = performance.now(); drawStream(); drawCost = performance.now() - t0; lastDraw = t; S.dirty = false;
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
$("stream").addEventListener("mousemove", function (ev) {
  var c = $("stream"), rect = c.getBoundingClientRect(), L = workerLanes(), x = ev.clientX - rect.left, y = ev.clientY - rect.top;
  var laneH = L.laneH;
  var t1 = now(), t0 = t1 - WINDOW_MS, t = t0 + (x - LABEL_W) / (c.clientWidth - LABEL_W) * WINDOW_MS, laneIdx = Math.floor(y / laneH), hit = null;
  for (var i = S.stream.length - 1; i >= 0 && !hit; i--) {
    var e = S.stream[i], wl = L.map.get(e.w);
    if (wl && wl.first + Math.min(e.lane, wl.n - 1) === laneIdx && e.a <= t + 30 && e.b >= t - 30) hit = e;
  }
  var tip = $("tip");
  if (!hit) { tip.style.display = "none"; return; }
  tip.style.display = "block"; tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + 12 + "px";
  tip.textContent = hit.k + " on " + (L.map.has(hit.w) ? L.map.get(hit.w).name : hit.w) + ": " + (hit.b - hit.a).toFixed(1) + " ms" + (hit.kind === 1 ? " (erred)" : "");
});
$("stream").addEventListener("mouseleave", function () { $("tip").style.display = "none"; });
</script>
</body>
</html>
`;
