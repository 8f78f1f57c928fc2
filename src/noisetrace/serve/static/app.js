// noisetrace web page: plain JavaScript, no build step, no third-party code.
// Flow per file: POST /v1/scan (upload progress from XHR), show the record, then
// POST /v1/explain for the heatmap, both with the model chosen in the <select> (sent as the
// form field "model"). Files dropped together are scanned one after another.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  threshold: 0.5,
  maxBytes: null,
  explain: true,
  queue: [],
  busy: false,
  history: [], // {file, url, record, heatmapUrl, model}
  current: null,
  defaultModel: "", // the server's start-up model: used when no model is sent
  models: new Map(), // offered name -> {purpose, input, threshold, face_threshold, explain}
};

//: Names of the metadata sources in noisetrace.media.provenance, for people.
const SOURCES = {
  c2pa: "Content Credentials (C2PA)", "png-text": "PNG text", exif: "EXIF", xmp: "XMP",
};

function fmtScore(s) {
  return s === null || s === undefined ? "–" : s.toFixed(3);
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
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
    state.defaultModel = m.default_model || m.active.name;
    fillModels(m.offered || []);
    $("model-info").textContent =
      `Server's default model: ${m.active.name} (${m.active.arch}), threshold ` +
      `${m.active.threshold.toFixed(2)}.`;
    $("limits").textContent =
      `Up to ${fmtBytes(m.limits.max_upload_bytes)} per file. Files are scanned on this ` +
      "server and deleted afterwards.";
  } catch (e) {
    // The page still works with the defaults; the scan reports real errors.
  }
}

function fillModels(offered) {
  const select = $("model");
  if (!offered.length) return; // an older server: the one option sends no model
  select.replaceChildren();
  for (const o of offered) {
    state.models.set(o.name, o);
    const opt = document.createElement("option");
    opt.value = o.name;
    opt.textContent = `${o.name} · ${o.purpose}`;
    select.append(opt);
  }
  select.value = state.defaultModel;
  describeModel();
}

// The chosen model's name ("" until the server said which it offers: then none is sent).
function chosenModel() {
  return $("model").value;
}

function modelInfo(name) {
  return state.models.get(name || state.defaultModel) ||
    { threshold: state.threshold, explain: state.explain, face_threshold: null };
}

function describeModel() {
  const o = state.models.get(chosenModel());
  if (!o) return;
  let text = `judges the ${o.purpose}; threshold ${o.threshold.toFixed(2)}`;
  if (o.face_threshold !== null && o.face_threshold !== undefined) {
    text += `, faces ${o.face_threshold.toFixed(2)}`;
  }
  $("model-desc").textContent = text + (o.default ? " (the server's default)" : "");
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
function post(url, file, model, responseType, onUploadProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = responseType;
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable && onUploadProgress) onUploadProgress(ev.loaded / ev.total);
    };
    xhr.upload.onload = () => onUploadProgress && onUploadProgress(null);
    xhr.onload = () => resolve({
      status: xhr.status, body: xhr.response,
      // /v1/explain names the video frame it explains (the scan's most suspicious one)
      frame: xhr.getResponseHeader("X-Explained-Frame"),
      time: xhr.getResponseHeader("X-Explained-Time"),
      method: xhr.getResponseHeader("X-Explain-Method"),
    });
    xhr.onerror = () => resolve({ status: 0, body: null });
    xhr.ontimeout = () => resolve({ status: 0, body: null });
    const form = new FormData();
    if (model) form.append("model", model); // before the file: read as the upload starts
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
  const model = chosenModel();
  if (state.maxBytes !== null && file.size > state.maxBytes) {
    const rec = errorRecord(file, `not sent: the file is ${fmtBytes(file.size)}; this server ` +
      `accepts up to ${fmtBytes(state.maxBytes)}`);
    const entry = { file, url: null, record: rec, heatmapUrl: null, model };
    $("activity").hidden = true; // the error below is the one message
    addHistory(entry);
    show(entry);
    return;
  }
  setActivity(`Uploading ${file.name}${left}…`, 0);
  const t0 = performance.now();
  const res = await post("/v1/scan", file, model, "json", (f) => {
    if (f === null) setActivity(`Scanning ${file.name}${left}…`, null);
    else setActivity(`Uploading ${file.name}${left}… ${Math.round(f * 100)}%`, f);
  });
  const entry = { file, url: null, record: null, heatmapUrl: null, model };
  if (res.status === 200 || (res.status === 422 && res.body && res.body.verdict)) {
    entry.record = res.body;
  } else {
    entry.record = errorRecord(file, await errorText(res));
  }
  if (entry.record.verdict === "error") {
    // One message, in the alert: no score, no preview of bytes that are not media.
    $("activity").hidden = true;
    addHistory(entry);
    show(entry);
    return;
  }
  entry.url = URL.createObjectURL(file);
  addHistory(entry);
  show(entry);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  endActivity(`Scanned ${file.name} in ${secs} s: ${entry.record.verdict}.`);
  if (modelInfo(model).explain !== false) await explain(entry);
}

function errorRecord(file, message) {
  return {
    path: file.name, kind: null, score: null, verdict: "error",
    threshold: modelInfo(chosenModel()).threshold,
    frames: null, error: message, seconds: 0, width: null, height: null, frame_scores: null,
  };
}

async function explain(entry) {
  const status = $("heatmap-status");
  if (state.current === entry) status.textContent = "Computing the heatmap…";
  const res = await post("/v1/explain", entry.file, entry.model, "blob", null);
  if (res.status === 200) {
    entry.heatmapUrl = URL.createObjectURL(res.body);
    entry.heatmapFrame = res.frame === null ? null : { index: Number(res.frame), time: res.time };
    entry.heatmapMethod = res.method;
  } else {
    entry.heatmapError = "No heatmap: " + (await errorText(res));
    const info = state.models.get(entry.model);
    if (res.status === 501 && info) info.explain = false; // do not ask again
  }
  if (state.current === entry) show(entry);
}

// -- rendering -----------------------------------------------------------------------------
function show(entry) {
  state.current = entry;
  const rec = entry.record;
  for (const row of $("history").tBodies[0].rows) {
    row.classList.toggle("current", row.entry === entry);
  }
  if (rec.verdict === "error") {
    // The alert is the one place the reason is shown; nothing else of the result applies.
    $("result").hidden = true;
    showError(`${rec.path}: ${rec.error}`);
    return;
  }
  showError("");
  $("result").hidden = false;
  $("result-name").textContent = rec.path;

  const verdict = $("verdict");
  verdict.dataset.verdict = rec.verdict;
  verdict.textContent = rec.verdict;
  const thr = rec.threshold ?? state.threshold;
  $("score-text").textContent = `fake score ${fmtScore(rec.score)} (threshold ${thr.toFixed(2)})`;
  renderFaceScore(rec);
  renderTemporal(rec);

  const bar = $("bar");
  const fill = $("bar-fill");
  const score = rec.score ?? 0;
  fill.style.width = `${(score * 100).toFixed(1)}%`;
  fill.classList.toggle("fake", rec.score !== null && rec.score >= thr);
  bar.setAttribute("aria-valuenow", String(score));
  bar.setAttribute("aria-valuetext", fmtScore(rec.score));
  $("bar-threshold").style.left = `${(thr * 100).toFixed(1)}%`;
  $("threshold-label").textContent = `threshold ${thr.toFixed(2)}`;

  $("provenance-text").textContent = provenanceText(rec);
  renderDetails(rec);
  renderPreview(entry);
  renderFaces(entry);
  renderFrames(rec, thr);
}

// Faces the face model judged (whole-frame fallbacks are not faces: never boxed).
function faceBoxes(rec) {
  return (rec.face_boxes || []).filter((b) => !b.kind || b.kind === "face");
}

function faceIsFake(rec, score) {
  return rec.face_threshold !== null && rec.face_threshold !== undefined &&
    score >= rec.face_threshold;
}

function renderFaceScore(rec) {
  const el = $("face-text");
  // Only a whole image + faces record judges faces beside the whole image.
  el.hidden = rec.face_threshold === null || rec.face_threshold === undefined;
  if (el.hidden) return;
  if (rec.face_score === null || rec.face_score === undefined) {
    el.textContent = "faces: no face found";
    el.dataset.verdict = "";
    return;
  }
  const boxes = faceBoxes(rec);
  let count = plural(boxes.length, "face");
  if (rec.kind === "video") {
    const frames = new Set(boxes.map((b) => b.frame)).size;
    count += ` in ${frames} of ${rec.frames} sampled frames`;
  }
  el.textContent = `faces: ${fmtScore(rec.face_score)} (${count}; threshold ` +
    `${rec.face_threshold.toFixed(2)})`;
  el.dataset.verdict = faceIsFake(rec, rec.face_score) ? "fake" : "real";
}

// Face models on video: the jitter index (in the score where the model learned to combine it).
function renderTemporal(rec) {
  const el = $("temporal-text");
  const t = rec.temporal;
  el.hidden = !t;
  if (!t) return;
  if (t.jitter_index === undefined) {
    el.textContent = `face jitter: not measured (${t.error || "no face"})`;
    el.dataset.unusual = "";
    return;
  }
  let text = `face jitter: ${t.jitter_index >= 0 ? "+" : ""}${t.jitter_index.toFixed(3)}`;
  if (t.real_above !== null && t.real_above !== undefined) {
    text += ` (${Math.round(t.real_above * 100)}% of ${t.calibrated_on} real videos higher` +
      `${t.unusual ? ": unusual for a real video" : ""})`;
  }
  if (t.combined) text += `; in the score (the frames alone: ${fmtScore(t.frame_score)})`;
  el.textContent = text;
  el.dataset.unusual = t.unusual ? "true" : "";
}

function claimText(c) {
  const src = SOURCES[c.source] || c.source || "metadata";
  let what = c.generator || c.claim_generator || c.digital_source_type || c.software ||
    c.creator_tool || [c.make, c.model].filter(Boolean).join(" ") || "";
  if (Array.isArray(what)) what = what.join(", ");
  let by = "unsigned";
  if (c.source === "c2pa") {
    const who = c.signer_name || c.signed_by;
    if (c.valid === true) {
      by = `signed${who ? " by " + who : ""}, signature validated` +
        (c.trusted ? " and trusted" : ", signer not on a trust list");
    } else if (c.valid === false) {
      by = `signature NOT valid${who ? ", claims to be signed by " + who : ""}`;
    } else {
      by = c.note || "signature not checked";
    }
  }
  return `${src}${what ? ": " + what : ""} (${by})`;
}

function provenanceText(rec) {
  const p = rec.provenance;
  if (!p) return rec.kind === "video" ? "not read for videos" : "no provenance metadata";
  const claims = p.claims || [];
  let text = "no provenance metadata";
  if (claims.length) {
    const says = p.ai_claimed === true ? "made by an AI generator; " :
      p.ai_claimed === false ? "a camera capture; " : "";
    text = says + claims.map(claimText).join("; ");
  }
  return p.error ? `${text} (${p.error})` : text;
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
  const rec = entry.record;
  const img = $("preview");
  const video = $("preview-video");
  const none = $("preview-none");
  const isVideo = rec.kind === "video";
  img.hidden = isVideo || !entry.url;
  video.hidden = !isVideo || !entry.url;
  none.hidden = true;
  drawBoxes(rec, []);
  $("boxes-note").textContent = "";
  if (entry.url && !isVideo) {
    img.onerror = () => { img.hidden = true; none.hidden = false; drawBoxes(rec, []); };
    img.src = entry.url;
    const boxes = faceBoxes(rec);
    drawBoxes(rec, boxes);
    if (boxes.length) $("boxes-note").textContent = " (boxes: faces the face model judged)";
  } else if (entry.url) {
    video.onerror = () => { video.hidden = true; none.hidden = false; drawBoxes(rec, []); };
    if (video.src !== entry.url) video.src = entry.url;
    else videoBoxes();
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
      (modelInfo(entry.model).explain === false ? "This model cannot draw a heatmap." :
        "Computing the heatmap…");
  }
  const f = entry.heatmapFrame;
  // Models fitted on frozen features are mapped by occlusion: red where blurring a region
  // lowers the fake score the most, blue where it does not lower it.
  const how = entry.heatmapUrl && entry.heatmapMethod === "occlusion" ?
    " (occlusion: red where blurring the region lowers the fake score most)" : "";
  $("heatmap-note").textContent = how + (rec.kind !== "video" ? "" : f ?
    ` (frame ${f.index + 1}${f.time ? `, ${Number(f.time).toFixed(1)} s` : ""}: the most suspicious sampled frame)` :
    " (the most suspicious sampled frame)");
}

// Boxes in the decoded frame's pixels: the overlay's viewBox is that frame, and "meet"
// places it exactly as object-fit: contain places the picture, at any displayed size.
function drawBoxes(rec, boxes) {
  const ov = $("face-overlay");
  ov.replaceChildren();
  const none = !boxes.length || !rec.width || !rec.height;
  ov.toggleAttribute("hidden", none); // an SVG element has no .hidden property
  if (none) return;
  ov.setAttribute("viewBox", `0 0 ${rec.width} ${rec.height}`);
  const size = Math.max(10, Math.round(Math.max(rec.width, rec.height) / 30));
  for (const b of boxes) {
    const [x0, y0, x1, y1] = b.box;
    const fake = faceIsFake(rec, b.score);
    const g = svg("g", {
      class: `face-box ${fake ? "fake" : "real"}`, "data-score": b.score, "data-frame": b.frame,
    });
    g.append(svg("rect", {
      x: x0, y: y0, width: x1 - x0, height: y1 - y0, "vector-effect": "non-scaling-stroke",
    }));
    const label = svg("text", {
      x: x0 + 2, y: y0 >= size + 4 ? y0 - 4 : y1 + size, "font-size": size,
    });
    label.textContent = fmtScore(b.score);
    g.append(label);
    ov.append(g);
  }
}

// Frames are sampled evenly from the first to the last: sample i of N sits at about
// i/(N-1) of the duration (exact up to one frame).
function sampleTime(i, n, duration) {
  return n > 1 ? (i / (n - 1)) * duration : 0;
}

function nearestSample(t, n, duration) {
  if (n <= 1 || !(duration > 0)) return 0;
  return Math.min(n - 1, Math.max(0, Math.round((t / duration) * (n - 1))));
}

// Over a paused video: the boxes of the sampled frame nearest the current time.
function videoBoxes() {
  const entry = state.current;
  const video = $("preview-video");
  const rec = entry && entry.record;
  if (!rec || rec.kind !== "video" || video.hidden) return;
  const boxes = faceBoxes(rec);
  if (!boxes.length || !video.paused || !(video.duration > 0) || !rec.frames) {
    drawBoxes(rec, []);
    $("boxes-note").textContent = boxes.length ? " (pause to see the faces)" : "";
    return;
  }
  const i = nearestSample(video.currentTime, rec.frames, video.duration);
  const shown = boxes.filter((b) => b.frame === i);
  drawBoxes(rec, shown);
  $("boxes-note").textContent = ` (faces of sampled frame ${i + 1} of ${rec.frames}: ` +
    `${shown.length ? plural(shown.length, "face") : "none"})`;
}

function renderFaces(entry) {
  const rec = entry.record;
  const fig = $("faces-figure");
  fig.hidden = rec.kind !== "video" || rec.face_threshold === null ||
    rec.face_threshold === undefined || !rec.frames;
  if (fig.hidden) return;
  const byFrame = new Map();
  for (const b of faceBoxes(rec)) {
    if (!byFrame.has(b.frame)) byFrame.set(b.frame, []);
    byFrame.get(b.frame).push(b);
  }
  const video = $("preview-video");
  const duration = video.src === entry.url && video.duration > 0 ? video.duration : null;
  $("faces-caption").textContent = `Faces in each sampled frame: ${byFrame.size} of ` +
    `${rec.frames} had a face (red: at or above the face threshold ` +
    `${rec.face_threshold.toFixed(2)}). Pick a frame to see its boxes on the video.`;
  const body = $("faces-table").tBodies[0];
  body.replaceChildren();
  for (let i = 0; i < rec.frames; i++) {
    const row = body.insertRow();
    const pick = document.createElement("button");
    pick.type = "button";
    pick.textContent = `frame ${i + 1} of ${rec.frames}`;
    pick.addEventListener("click", () => {
      if (video.hidden || !(video.duration > 0)) return;
      video.pause();
      video.currentTime = sampleTime(i, rec.frames, video.duration);
    });
    row.insertCell().append(pick);
    row.insertCell().textContent = duration === null
      ? `${Math.round((100 * i) / Math.max(1, rec.frames - 1))}% in`
      : `${sampleTime(i, rec.frames, duration).toFixed(1)} s`;
    const faces = byFrame.get(i) || [];
    row.insertCell().textContent = String(faces.length);
    const scores = row.insertCell();
    if (!faces.length) scores.textContent = "no face";
    faces.forEach((b, k) => {
      const s = document.createElement("span");
      s.className = faceIsFake(rec, b.score) ? "s-fake" : "s-real";
      s.textContent = fmtScore(b.score);
      scores.append(s, k < faces.length - 1 ? ", " : "");
    });
  }
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
  row.insertCell().textContent = entry.model || state.defaultModel || rec.model || "–";
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
  $("model").addEventListener("change", describeModel);
  const video = $("preview-video");
  for (const ev of ["pause", "seeked", "loadedmetadata", "play"]) {
    video.addEventListener(ev, videoBoxes);
  }
  // The face table says the time of each sampled frame once the duration is known.
  video.addEventListener("loadedmetadata", () => state.current && renderFaces(state.current));
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
