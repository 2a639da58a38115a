"""The page ``imgstore-view`` serves: one self-contained HTML file with its script and style.

Kept as a Python string (not a package-data file) so it installs with the code whatever
the packaging configuration. The frame is drawn at 1:1 scale (scaled down only when
the window is narrower than the frame, or on request: key f) right under the toolbar.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>imgstore viewer</title>
<style>
  html, body { margin: 0; background: #1e1e1e; color: #e8e8e8; font: 14px system-ui, sans-serif; }
  #bar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; padding: 6px 8px;
         background: #2b2b2b; border-bottom: 1px solid #444; }
  #bar b, .num { font-variant-numeric: tabular-nums; }
  #slider { flex: 1 1 260px; min-width: 160px; }
  #goto { width: 17em; }
  #status { color: #f0c36d; }
  #help { color: #999; font-size: 12px; padding: 2px 8px 6px; background: #2b2b2b; }
  #frame { display: block; max-width: 100%; image-rendering: pixelated; }
  #frame.fit { width: 100%; max-width: none; height: calc(100vh - 110px); object-fit: contain;
               object-position: left top; }
  body.stopped #frame { opacity: 0.4; }
  button { min-width: 2.5em; }
</style>
</head>
<body>
<div id="bar">
  <button id="play" type="button" tabindex="-1" title="play/pause (Space)">&#9654;</button>
  <input id="slider" type="range" min="0" max="0" value="0" step="1" title="frame index">
  <span>index <b id="frame_index">-</b> of 0&ndash;<span id="last_index">-</span></span>
  <span>frame_number <b id="frame_number">-</b></span>
  <span><b id="datetime">-</b> <span class="num" id="offset"></span></span>
  <span class="num">frame_time <span id="frame_time">-</span></span>
  <form id="gotoform" autocomplete="off">
    <input id="goto" placeholder="frame number, 12.5s, 2024-05-01 12:00:00"
           title="a frame number (1234), seconds since the start (12.5s), seconds since the epoch
(1700000000.5), a date-time or a time of day (12:00:05)">
    <button type="submit" tabindex="-1">go</button>
  </form>
  <span id="status"></span>
</div>
<div id="help">Space play/pause &middot; &larr;/&rarr; step (Shift: 10) &middot; PgUp/PgDn one second &middot;
  Home/End &middot; f fit to window / 1:1 &middot; Esc or q stops the viewer &middot; <span id="storename"></span></div>
<img id="frame" alt="">
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const img = $("frame");
let info = null, n = 0, fps = 25;
let index = -1;        // frame_index on screen
let wanted = 0;        // frame_index asked for last (key presses accumulate on it)
let loader = null;     // the running load loop, if any
let lastUrl = null;
let playing = false, playGen = 0, stopped = false;

function status(text) { $("status").textContent = text || ""; }
function clamp(i) { return Math.min(Math.max(0, Math.round(i)), Math.max(n - 1, 0)); }

// Load frames until the one on screen is the one wanted; several quick requests
// (slider drags, held arrow keys) collapse into the latest.
async function load() {
  try {
    while (wanted !== index && !stopped) {
      const i = wanted;
      const r = await fetch("/frame?index=" + i, {cache: "no-store"});
      if (!r.ok) { status(await r.text()); break; }
      const blob = await r.blob();
      const url = URL.createObjectURL(blob);
      await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
      if (lastUrl) URL.revokeObjectURL(lastUrl);
      lastUrl = url;
      index = i;
      const h = (k) => r.headers.get(k);
      $("frame_index").textContent = i;
      $("frame_number").textContent = h("X-Frame-Number");
      $("datetime").textContent = h("X-Frame-Datetime");
      $("offset").textContent = "(+" + h("X-Frame-Offset") + " s)";
      $("frame_time").textContent = h("X-Frame-Time");
      $("slider").value = i;
      img.dataset.index = i;
      img.dataset.frameNumber = h("X-Frame-Number");
      document.body.dataset.ready = "1";
    }
  } catch (e) {
    if (!stopped) status("error: " + e);
  } finally {
    loader = null;  // synchronous with the loop's last check: no request can be lost in between
  }
}

function show(i) {
  if (n === 0 || stopped) return Promise.resolve();
  wanted = clamp(i);
  if (!loader) loader = load();
  return loader;
}

function setPlaying(p) {
  playing = p && n > 1 && !stopped;
  playGen += 1;
  $("play").innerHTML = playing ? "&#10074;&#10074;" : "&#9654;";
  if (playing) {
    if (wanted >= n - 1) show(0);
    tick(playGen);
  }
}

async function tick(gen) {
  if (gen !== playGen || !playing) return;
  if (wanted >= n - 1) { setPlaying(false); return; }
  const t0 = performance.now();
  await show(wanted + 1);
  if (gen !== playGen) return;
  setTimeout(() => tick(gen), Math.max(0, 1000 / fps - (performance.now() - t0)));
}

async function quit() {
  if (stopped) return;
  setPlaying(false);
  stopped = true;
  try { await fetch("/quit", {method: "POST"}); } catch (e) { /* the server may already be gone */ }
  document.body.classList.add("stopped");
  status("viewer stopped; you can close this tab");
}

async function lookup(text) {
  const r = await fetch("/lookup?q=" + encodeURIComponent(text), {cache: "no-store"});
  const j = await r.json();
  if (!r.ok) { status(j.error); return; }
  setPlaying(false);
  status("");
  await show(j.index);
  status(j.note || "");  // after the frame, so the note never describes the previous one
}

document.addEventListener("keydown", (e) => {
  if (stopped) return;
  if (e.key === "Escape") { e.preventDefault(); quit(); return; }
  if (e.target.id === "goto" || e.ctrlKey || e.metaKey || e.altKey) return;
  const step = e.shiftKey ? 10 : 1;
  switch (e.key) {
    case " ": setPlaying(!playing); break;
    case "ArrowRight": setPlaying(false); show(wanted + step); break;
    case "ArrowLeft": setPlaying(false); show(wanted - step); break;
    case "PageDown": setPlaying(false); show(wanted + Math.max(1, Math.round(fps))); break;
    case "PageUp": setPlaying(false); show(wanted - Math.max(1, Math.round(fps))); break;
    case "Home": setPlaying(false); show(0); break;
    case "End": setPlaying(false); show(n - 1); break;
    case "f": img.classList.toggle("fit"); break;
    case "q": case "Q": quit(); break;
    default: return;
  }
  e.preventDefault();  // also stops the focused slider from moving a second time
});

$("slider").addEventListener("input", (e) => { setPlaying(false); show(+e.target.value); });
$("play").addEventListener("click", (e) => { e.currentTarget.blur(); setPlaying(!playing); });
$("gotoform").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("goto").value.trim();
  $("goto").blur();
  if (text) lookup(text);
});

(async function init() {
  try {
    const r = await fetch("/info", {cache: "no-store"});
    info = await r.json();
  } catch (e) { status("cannot reach the viewer: " + e); return; }
  n = info.frame_count;
  fps = info.playback_fps;
  $("slider").max = Math.max(n - 1, 0);
  $("last_index").textContent = Math.max(n - 1, 0);
  const size = info.image_shape[1] + "x" + info.image_shape[0];
  $("storename").textContent = info.path + " (" + info.format + ", " + size + ")";
  document.title = "imgstore: " + info.path;
  if (n === 0) { status("this store has no frames"); document.body.dataset.ready = "1"; return; }
  show(0);
})();
</script>
</body>
</html>
"""
