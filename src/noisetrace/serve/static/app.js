// noisetrace web page: plain JavaScript, no build step, no third-party code.
// Flow per file: POST /v1/scan (upload progress from XHR), show the record, then
// POST /v1/explain for the heatmap. Files dropped together are scanned one after another.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  threshold: 0.5,
  maxBytes: null,
  explain: true,
  queue: [],
  busy: false,
  history: [], // {file, url, record, heatmapUrl}
  current: null,
};

function fmtScore(s) {
  return s === null || s === undefined ? "–" : s.toFixed(3);
}

function fmtBytes(n) {
  if (n >= 2 ** 30) return (n / 2 ** 30).toFixed(1) + " GB";
  if (n >= 2 ** 20) return (n / 2 ** 20).toFixed(1) + " MB";
  return Math.max(1, Math.round(n / 1024)) + " kB";
}

async function loadInfo() {
  $("origin").textContent = window.location.origin;
  try {
    const r = await fetch("/v1/models");
    if (!r.ok) return;
    const m = await r.json();
    state.threshold = m.active.threshold;
    state.maxBytes = m.limits.max_upload_bytes;
    state.explain = m.active.explain;
    $("model-info").textContent =
      `Model: ${m.active.name} (${m.active.arch}), threshold ${m.active.threshold.toFixed(2)}.`;
    $("limits").textContent =
      `Up to ${fmtBytes(m.limits.max_upload_bytes)} per file. Files are scanned on this ` +
      "server and deleted afterwards.";
  } catch (e) {
    // The page still works with the defaults; the scan reports real errors.
  }
}

// -- activity ------------------------------------------------------------------------------
function setActivity(text, fraction) {
  $("activity").hidden = false;
  $("status").textContent = text;
  const bar = $("progress");
  if (fraction === null) bar.removeAttribute("value"); // indeterminate while the server works
  else bar.value = fraction;
}

function endActivity(text) {
  $("status").textContent = text;
  $("progress").value = 1;
}

function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = !text;
}

// -- requests ------------------------------------------------------------------------------
function post(url, file, responseType, onUploadProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = responseType;
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable && onUploadProgress) onUploadProgress(ev.loaded / ev.total);
    };
    xhr.upload.onload = () => onUploadProgress && onUploadProgress(null);
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.response });
    xhr.onerror = () => resolve({ status: 0, body: null });
    xhr.ontimeout = () => resolve({ status: 0, body: null });
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

async function errorText(res) {
  if (res.status === 0) return "the server could not be reached (is it still running?)";
  let body = res.body;
  if (body instanceof Blob) {
    try {
      body = JSON.parse(await body.text());
    } catch (e) {
      body = null;
    }
  }
  const detail = body && (body.detail || body.error);
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) return detail.map((d) => d.msg).join("; ");
  return `the server answered ${res.status}`;
}

// -- queue ---------------------------------------------------------------------------------
function enqueue(files) {
  for (const f of files) state.queue.push(f);
  if (!state.busy) next();
}

async function next() {
  const file = state.queue.shift();
  if (!file) {
    state.busy = false;
    return;
  }
  state.busy = true;
  showError("");
  await scanOne(file);
  next();
}

async function scanOne(file) {
  const left = state.queue.length ? ` (${state.queue.length} more waiting)` : "";
  if (state.maxBytes !== null && file.size > state.maxBytes) {
    const rec = errorRecord(file, `the file is ${fmtBytes(file.size)}; this server accepts up ` +
      `to ${fmtBytes(state.maxBytes)}`);
    const entry = { file, url: null, record: rec, heatmapUrl: null };
    addHistory(entry);
    show(entry);
    showError(`${file.name}: ${rec.error}`);
    setActivity(`Not sent: ${file.name} is too large.`, 1);
    return;
  }
  setActivity(`Uploading ${file.name}${left}…`, 0);
  const t0 = performance.now();
  const res = await post("/v1/scan", file, "json", (f) => {
    if (f === null) setActivity(`Scanning ${file.name}${left}…`, null);
    else setActivity(`Uploading ${file.name}${left}… ${Math.round(f * 100)}%`, f);
  });
  const entry = { file, url: URL.createObjectURL(file), record: null, heatmapUrl: null };
  if (res.status === 200 || (res.status === 422 && res.body && res.body.verdict)) {
    entry.record = res.body;
  } else {
    entry.record = errorRecord(file, await errorText(res));
  }
  addHistory(entry);
  show(entry);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (entry.record.verdict === "error") {
    showError(`${file.name}: ${entry.record.error}`);
    endActivity(`Could not scan ${file.name}.`);
    return;
  }
  endActivity(`Scanned ${file.name} in ${secs} s: ${entry.record.verdict}.`);
  if (state.explain) await explain(entry);
}

function errorRecord(file, message) {
  return {
    path: file.name, kind: null, score: null, verdict: "error", threshold: state.threshold,
    frames: null, error: message, seconds: 0, width: null, height: null, frame_scores: null,
  };
}

async function explain(entry) {
  const status = $("heatmap-status");
  if (state.current === entry) status.textContent = "Computing the heatmap…";
  const res = await post("/v1/explain", entry.file, "blob", null);
  if (res.status === 200) {
    entry.heatmapUrl = URL.createObjectURL(res.body);
  } else {
    entry.heatmapError = "No heatmap: " + (await errorText(res));
  }
  if (state.current === entry) show(entry);
}

// -- rendering -----------------------------------------------------------------------------
function show(entry) {
  state.current = entry;
  const rec = entry.record;
  $("result").hidden = false;
  $("result-name").textContent = rec.path;

  const verdict = $("verdict");
  verdict.dataset.verdict = rec.verdict;
  verdict.textContent = rec.verdict;
  const thr = rec.threshold ?? state.threshold;
  $("score-text").textContent = rec.score === null
    ? rec.error
    : `fake score ${fmtScore(rec.score)} (threshold ${thr.toFixed(2)})`;

  const bar = $("bar");
  const fill = $("bar-fill");
  const score = rec.score ?? 0;
  fill.style.width = `${(score * 100).toFixed(1)}%`;
  fill.classList.toggle("fake", rec.verdict === "fake");
  bar.setAttribute("aria-valuenow", String(score));
  bar.setAttribute("aria-valuetext", rec.score === null ? "no score" : fmtScore(rec.score));
  $("bar-threshold").style.left = `${(thr * 100).toFixed(1)}%`;
  $("threshold-label").textContent = `threshold ${thr.toFixed(2)}`;

  renderDetails(rec);
  renderPreview(entry);
  renderFrames(rec, thr);
  for (const row of $("history").tBodies[0].rows) {
    row.classList.toggle("current", row.entry === entry);
  }
}

function renderDetails(rec) {
  const dl = $("details");
  dl.replaceChildren();
  const items = [
    ["kind", rec.kind],
    ["size", rec.width ? `${rec.width} × ${rec.height} px` : null],
    ["frames scored", rec.frames],
    ["model", rec.model],
    ["server time", rec.seconds ? `${rec.seconds.toFixed(2)} s` : null],
    ["sha256", rec.sha256],
  ];
  for (const [k, v] of items) {
    if (v === null || v === undefined || v === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dl.append(dt, dd);
  }
}

function renderPreview(entry) {
  const img = $("preview");
  const video = $("preview-video");
  const none = $("preview-none");
  const isVideo = entry.record.kind === "video" ||
    (!entry.record.kind && entry.file.type.startsWith("video/"));
  img.hidden = isVideo || !entry.url;
  video.hidden = !isVideo || !entry.url;
  none.hidden = true;
  if (entry.url && !isVideo) {
    img.onerror = () => { img.hidden = true; none.hidden = false; };
    img.src = entry.url;
  } else if (entry.url) {
    video.onerror = () => { video.hidden = true; none.hidden = false; };
    video.src = entry.url;
  }
  const heat = $("heatmap");
  const status = $("heatmap-status");
  heat.hidden = !entry.heatmapUrl;
  if (entry.heatmapUrl) {
    heat.src = entry.heatmapUrl;
    status.textContent = "";
  } else {
    heat.removeAttribute("src");
    status.textContent = entry.heatmapError ||
      (entry.record.verdict === "error" ? "No heatmap for a file that could not be read." :
        !state.explain ? "This model cannot draw a heatmap." : "Computing the heatmap…");
  }
  $("heatmap-note").textContent = entry.record.kind === "video" ? " (middle frame)" : "";
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function renderFrames(rec, thr) {
  const fig = $("frames-figure");
  const plot = $("frames-plot");
  const scores = rec.frame_scores;
  if (!scores || !scores.length) {
    fig.hidden = true;
    return;
  }
  fig.hidden = false;
  const desc = $("frames-desc");
  plot.replaceChildren(desc);
  desc.textContent = `Fake score of ${scores.length} frames, from ` +
    `${fmtScore(Math.min(...scores))} to ${fmtScore(Math.max(...scores))}; ` +
    `${scores.filter((s) => s >= thr).length} at or above the threshold.`;
  const W = 640, H = 200, L = 34, R = 10, T = 10, B = 24;
  const x = (i) => L + (scores.length === 1 ? (W - L - R) / 2 : i * (W - L - R) / (scores.length - 1));
  const y = (s) => T + (1 - s) * (H - T - B);
  for (const v of [0, 0.5, 1]) {
    plot.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "axis" }));
    const t = svg("text", { x: 4, y: y(v) + 4 });
    t.textContent = v.toFixed(1);
    plot.append(t);
  }
  plot.append(svg("line", { x1: L, x2: W - R, y1: y(thr), y2: y(thr), class: "thr" }));
  const pts = scores.map((s, i) => `${x(i).toFixed(1)},${y(s).toFixed(1)}`).join(" ");
  plot.append(svg("polyline", { points: pts, class: "line" }));
  scores.forEach((s, i) => {
    const c = svg("circle", { cx: x(i), cy: y(s), r: 3.5, class: s >= thr ? "dot fake" : "dot" });
    const title = svg("title", {});
    title.textContent = `sample ${i + 1}: ${fmtScore(s)}`;
    c.append(title);
    plot.append(c);
  });
  const first = svg("text", { x: L, y: H - 6 });
  first.textContent = "first sampled frame";
  const last = svg("text", { x: W - R, y: H - 6, "text-anchor": "end" });
  last.textContent = "last";
  plot.append(first, last);
}

function addHistory(entry) {
  state.history.push(entry);
  $("history-empty").hidden = true;
  const table = $("history");
  table.hidden = false;
  const row = table.tBodies[0].insertRow(0);
  row.entry = entry;
  const rec = entry.record;
  const name = document.createElement("button");
  name.type = "button";
  name.textContent = rec.path;
  name.title = "show this result again";
  name.addEventListener("click", () => show(entry));
  row.insertCell().append(name);
  row.insertCell().textContent = rec.kind || "–";
  row.insertCell().textContent = fmtScore(rec.score);
  const v = row.insertCell();
  v.textContent = rec.verdict;
  v.className = `v-${rec.verdict}`;
  if (rec.error) v.title = rec.error;
  row.insertCell().textContent = rec.seconds ? rec.seconds.toFixed(2) : "–";
}

// -- input ---------------------------------------------------------------------------------
function setup() {
  const drop = $("drop");
  const input = $("file");
  input.addEventListener("change", () => {
    enqueue([...input.files]);
    input.value = ""; // picking the same file again scans it again
  });
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) enqueue([...e.dataTransfer.files]);
  });
  // A file dropped beside the zone should not make the browser navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setup);
