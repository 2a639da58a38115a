"""The page ``imgstore-view`` serves: one self-contained HTML file with its script and style.

Kept as a Python string (not a package-data file) so it installs with the code whatever
the packaging configuration. Each store's frame is drawn at 1:1 scale (scaled down only
when its panel is smaller than the frame, or fitted on request: key f); the controls,
the timeline of dropped frames and pauses, and the extra data sit around it.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgstore viewer</title>
<style>
  :root { --bg: #15171c; --panel: #1e2128; --line: #2e323b; --text: #e6e8ec; --dim: #9aa1ad;
          --accent: #4ea1ff; --gap: #f2a33a; --pause: #ef5b5b; --live: #e5484d; --ok: #3fb950; }
  * { box-sizing: border-box; }
  html, body { margin: 0; height: 100%; background: var(--bg); color: var(--text);
               font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  body { display: grid; grid-template-rows: auto minmax(0, 1fr) auto; height: 100vh; overflow: hidden; }
  .num, b { font-variant-numeric: tabular-nums; }
  button, select, input { font: inherit; color: var(--text); background: #2a2e37; border: 1px solid #3a3f4b;
                          border-radius: 5px; padding: 3px 8px; }
  button:hover, select:hover { background: #343946; }
  button:focus-visible, select:focus-visible, input:focus-visible { outline: 2px solid var(--accent); }
  /* header */
  #top { display: flex; align-items: center; gap: 12px; padding: 6px 12px; background: var(--panel);
         border-bottom: 1px solid var(--line); min-width: 0; }
  #brand { font-weight: 600; letter-spacing: .02em; color: var(--accent); }
  #storename { color: var(--dim); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; min-width: 0; }
  #live { display: none; color: #fff; background: var(--live); border-radius: 4px; padding: 1px 7px;
          font-weight: 600; font-size: 11px; letter-spacing: .06em; }
  body.live #live { display: inline-block; }
  #live::before { content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%;
                  background: #fff; margin-right: 5px; vertical-align: 1px; animation: blink 1.2s infinite; }
  @keyframes blink { 50% { opacity: .25; } }
  #spacer { flex: 1; }
  #helpbtn { width: 28px; padding: 3px 0; }
  /* frames and side panel */
  #main { display: flex; min-height: 0; min-width: 0; }
  #frames { flex: 1; display: flex; gap: 8px; padding: 8px; min-width: 0; min-height: 0; }
  .pane { flex: 1 1 0; display: flex; flex-direction: column; min-width: 0; min-height: 0; }
  .caption { display: flex; gap: 10px; align-items: baseline; justify-content: center; padding: 0 2px 4px;
             color: var(--dim);
             white-space: nowrap; overflow: hidden; }
  .caption .name { color: var(--text); font-weight: 600; overflow: hidden; text-overflow: ellipsis; }
  .caption .tag { font-size: 11px; padding: 0 5px; border-radius: 3px; background: #3a3f4b; color: var(--text); }
  .caption .tag.repeat { background: #5a4a1a; } .caption .tag.blank { background: #5a1f1f; }
  .wrap { flex: 1; min-height: 0; display: flex; align-items: flex-start; justify-content: center;
          overflow: hidden; }
  .wrap img { display: block; background: #000; }
  .wrap img.up { image-rendering: pixelated; }
  body.stopped .wrap img { opacity: .35; }
  #side { display: none; width: 300px; flex: 0 0 300px; border-left: 1px solid var(--line); background: var(--panel);
          padding: 8px 10px; overflow-y: auto; }
  body.has-extra #side { display: block; }
  #side h2 { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .06em; color: var(--dim);
             margin: 2px 0 6px; }
  .xstore { margin-bottom: 12px; } .xstore .caption { justify-content: flex-start; padding: 0; }
  .xwhen { color: var(--dim); font-size: 12px; margin-bottom: 4px; }
  .xrow { display: grid; grid-template-columns: 1fr auto; gap: 0 8px; padding: 4px 0;
          border-top: 1px solid var(--line); }
  .xrow .k { color: var(--dim); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .xrow .v { text-align: right; font-variant-numeric: tabular-nums; }
  .xrow canvas { grid-column: 1 / 3; width: 100%; height: 34px; margin-top: 3px; }
  /* controls */
  #controls { background: var(--panel); border-top: 1px solid var(--line); padding: 6px 12px 8px; }
  #row1 { display: flex; align-items: center; gap: 10px; }
  #play { width: 36px; padding: 3px 0; }
  #track { flex: 1; min-width: 120px; position: relative; }
  #slider { -webkit-appearance: none; appearance: none; width: 100%; height: 18px; margin: 0; padding: 0;
            background: transparent; border: 0; display: block; }
  #slider::-webkit-slider-runnable-track { height: 4px; background: #3a3f4b; border-radius: 2px; }
  #slider::-webkit-slider-thumb { -webkit-appearance: none; width: 14px; height: 14px; margin-top: -5px;
                                  border-radius: 50%; background: var(--accent); border: 2px solid #fff; }
  #slider::-moz-range-track { height: 4px; background: #3a3f4b; border-radius: 2px; }
  #slider::-moz-range-thumb { width: 10px; height: 10px; border-radius: 50%; background: var(--accent);
                              border: 2px solid #fff; }
  #timeline { display: block; width: 100%; height: 14px; cursor: pointer; }
  #row2 { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 16px; margin-top: 4px; }
  #row2 .lbl { color: var(--dim); }
  #goto { width: 15em; }
  #gotoform { display: flex; gap: 4px; }
  #events { display: flex; gap: 4px; align-items: center; }
  #evsummary { color: var(--dim); }
  #evsummary .g { color: var(--gap); } #evsummary .p { color: var(--pause); }
  #status { color: #f0c36d; }
  #perf { color: var(--dim); } #perf.behind { color: var(--pause); font-weight: 600; }
  #newest { display: none; } body.live #newest { display: inline-block; }
  /* help */
  #help { display: none; position: fixed; inset: 0; background: rgba(0,0,0,.55); align-items: center;
          justify-content: center; z-index: 10; }
  body.helpon #help { display: flex; }
  #helpbox { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 20px;
             max-width: 560px; box-shadow: 0 10px 40px rgba(0,0,0,.5); }
  #helpbox h2 { margin: 0 0 8px; font-size: 15px; }
  #helpbox table { border-collapse: collapse; }
  #helpbox td { padding: 2px 10px 2px 0; vertical-align: top; }
  #helpbox td:first-child { white-space: nowrap; }
  kbd { font: 12px ui-monospace, monospace; background: #2a2e37; border: 1px solid #444a57; border-bottom-width: 2px;
        border-radius: 4px; padding: 0 5px; }
  #helpbox .legend span { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 10px; }
</style>
</head>
<body>
<div id="top">
  <span id="brand">imgstore</span>
  <span id="live" title="a writer is recording this store: new frames appear as they are written">LIVE</span>
  <span id="storename"></span>
  <span id="spacer"></span>
  <span id="perf" class="num"></span>
  <button id="helpbtn" type="button" tabindex="-1" title="keyboard help (?)">?</button>
</div>
<div id="main">
  <div id="frames"></div>
  <div id="side"><h2>Extra data</h2><div id="extra"></div></div>
</div>
<div id="controls">
  <div id="row1">
    <button id="play" type="button" tabindex="-1" title="play/pause (Space)">&#9654;</button>
    <select id="speed" tabindex="-1" title="playback speed (- / +)">
      <option value="0.1">0.1&times;</option><option value="0.25">0.25&times;</option>
      <option value="0.5">0.5&times;</option><option value="1" selected>1&times;</option>
      <option value="2">2&times;</option><option value="4">4&times;</option><option value="8">8&times;</option>
    </select>
    <div id="track">
      <input id="slider" type="range" min="0" max="0" value="0" step="1" title="frame index">
      <canvas id="timeline" height="14" title="dropped frames (orange) and pauses (red); click to jump"></canvas>
    </div>
    <button id="newest" type="button" tabindex="-1" title="jump to the newest frame and follow the recording (End)">
      newest &#8677;</button>
  </div>
  <div id="row2">
    <span><span class="lbl" id="poslabel">index</span> <b id="frame_index">-</b><span class="lbl"> of
      0&ndash;</span><span
      id="last_index" class="num">-</span></span>
    <span><span class="lbl">frame_number</span> <b id="frame_number">-</b></span>
    <span><b id="datetime">-</b> <span class="num lbl" id="offset"></span></span>
    <span class="num"><span class="lbl">frame_time</span> <span id="frame_time">-</span></span>
    <span id="events">
      <button id="prevev" type="button" tabindex="-1" title="previous dropped frames or pause (p)">&#9664;</button>
      <span id="evsummary">no drops</span>
      <button id="nextev" type="button" tabindex="-1" title="next dropped frames or pause (n)">&#9654;</button>
    </span>
    <form id="gotoform" autocomplete="off">
      <input id="goto" placeholder="frame number, 12.5s, 12:00:05"
             title="a frame number (1234), seconds since the start (12.5s), seconds since the epoch
(1700000000.5), a date-time or a time of day (12:00:05)">
      <button type="submit" tabindex="-1">go</button>
    </form>
    <span id="status"></span>
  </div>
</div>
<div id="help"><div id="helpbox">
  <h2>Keys</h2>
  <table>
    <tr><td><kbd>Space</kbd></td><td>play / pause</td></tr>
    <tr><td><kbd>&rarr;</kbd> <kbd>&larr;</kbd></td>
        <td>next / previous frame (with <kbd>Shift</kbd>: 10 frames)</td></tr>
    <tr><td><kbd>PgDn</kbd> <kbd>PgUp</kbd></td><td>one second forward / back</td></tr>
    <tr><td><kbd>Home</kbd> <kbd>End</kbd></td><td>first / last frame; <kbd>End</kbd> follows a live recording</td></tr>
    <tr><td><kbd>n</kbd> <kbd>p</kbd></td><td>next / previous dropped frames or pause</td></tr>
    <tr><td><kbd>-</kbd> <kbd>+</kbd></td><td>slower / faster playback</td></tr>
    <tr><td><kbd>f</kbd></td><td>fit frames to the window / back to 1:1</td></tr>
    <tr><td><kbd>g</kbd> or <kbd>/</kbd></td><td>go to: a frame number, 12.5s, a date-time or 12:00:05</td></tr>
    <tr><td><kbd>?</kbd></td><td>this help (any key closes it)</td></tr>
    <tr><td><kbd>q</kbd> <kbd>Esc</kbd></td><td>stop the viewer</td></tr>
  </table>
  <p class="legend">Timeline:<span style="background: var(--gap)"></span>frame numbers skipped
    <span style="background: var(--pause)"></span>pause (interval &gt; 1.5&times; median)</p>
</div></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let info = null, n = 0, fps = 25, speed = 1, version = 0;
let panes = [];        // one per store: {img, caption elements, w, h}
let index = -1;        // step (frame_index for one store) on screen
let wanted = 0;        // step asked for last (key presses accumulate on it)
let loader = null;     // the running load loop, if any
let playing = false, playGen = 0, stopped = false, follow = false, fitMode = false, live = false;
let events = [];       // [step, kind (0 gap, 1 pause), store, size, text], by step
let shownTimes = [];   // performance.now() of frames shown while playing
let extraTimer = null, extraAt = -1;

function status(text) { $("status").textContent = text || ""; }
function clamp(i) { return Math.min(Math.max(0, Math.round(i)), Math.max(n - 1, 0)); }
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; }

function buildPanes() {
  const box = $("frames");
  box.textContent = "";
  panes = info.names.map((name, k) => {
    const pane = el("div", "pane"), cap = el("div", "caption"), wrap = el("div", "wrap"), img = el("img");
    img.id = k === 0 ? "frame" : "frame" + k;
    img.alt = name;
    const p = {img, wrap, name: el("span", "name", name), fn: el("span", "num"), when: el("span", "num"),
               tag: el("span", "tag"), w: info.stores[k].image_shape[1], h: info.stores[k].image_shape[0]};
    p.tag.style.display = "none";
    if (info.names.length > 1) { cap.append(p.name, p.fn, p.when, p.tag); pane.append(cap); }
    wrap.append(img);
    pane.append(wrap);
    box.append(pane);
    return p;
  });
  layout();
}

// 1:1 unless the pane is smaller (then scaled down); fit mode scales up too
function layout() {
  for (const p of panes) {
    const aw = p.wrap.clientWidth, ah = p.wrap.clientHeight;
    if (!aw || !ah) continue;
    let s = Math.min(aw / p.w, ah / p.h);
    if (!fitMode) s = Math.min(s, 1);
    p.img.style.width = Math.floor(p.w * s) + "px";
    p.img.style.height = Math.floor(p.h * s) + "px";
    p.img.classList.toggle("up", s > 1);
  }
  drawTimeline();
}
window.addEventListener("resize", layout);

async function fetchFrame(i, k) {
  const r = await fetch("/frame?index=" + i + "&store=" + k, {cache: "no-store"});
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).error; } catch (e) { /* not JSON */ }
    return {ok: false, error: msg};
  }
  const url = URL.createObjectURL(await r.blob());
  return {ok: true, url, h: (key) => r.headers.get(key)};
}

function setImage(img, url) {
  return new Promise((resolve) => {
    img.onload = img.onerror = () => resolve();
    const old = img.dataset.url;
    img.src = url;
    img.dataset.url = url;
    if (old) URL.revokeObjectURL(old);
  });
}

// Load steps until the one on screen is the one wanted; several quick requests
// (slider drags, held arrow keys) collapse into the latest.
async function load() {
  while (wanted !== index && !stopped) {
    const i = wanted;
    let results;
    try {
      results = await Promise.all(panes.map((p, k) => fetchFrame(i, k)));
    } catch (e) {
      if (!stopped) status("cannot reach the viewer: " + e);
      index = i;  // do not retry forever; the next key press asks again
      break;
    }
    await Promise.all(results.map((r, k) => r.ok ? setImage(panes[k].img, r.url) : null));
    index = i;
    const bad = results.find((r) => !r.ok);
    if (bad) status("frame " + i + ": " + bad.error);
    else if ($("status").dataset.kind === "error") status("");
    $("status").dataset.kind = bad ? "error" : "";
    results.forEach((r, k) => {
      if (!r.ok) return;
      const p = panes[k];
      p.fn.textContent = "#" + r.h("X-Frame-Number");
      p.when.textContent = r.h("X-Frame-Datetime");
      const st = r.h("X-Frame-Status");
      p.tag.style.display = st === "ok" ? "none" : "";
      p.tag.className = "tag " + st;
      p.tag.textContent = st === "repeat" ? "no new frame" : st;
      p.img.dataset.index = r.h("X-Frame-Index");
      p.img.dataset.frameNumber = r.h("X-Frame-Number");
    });
    const first = results[0];
    if (first.ok) {
      const h = first.h;
      $("frame_index").textContent = i;
      $("frame_number").textContent = h("X-Frame-Number");
      $("datetime").textContent = h("X-Frame-Datetime");
      $("offset").textContent = h("X-Frame-Offset") ? "(+" + h("X-Frame-Offset") + " s)" : "";
      $("frame_time").textContent = h("X-Frame-Time");
    }
    $("slider").value = i;
    document.body.dataset.ready = "1";
    if (playing) notePlayed();
    drawTimeline();
    scheduleExtra();
  }
}

function show(i) {
  if (n === 0 || stopped) return Promise.resolve();
  wanted = clamp(i);
  if (!loader) {
    // cleared when the loop has really ended (never before the assignment, whatever the loop did),
    // and restarted if a request came in between its last check and now
    loader = load().finally(() => {
      loader = null;
      if (wanted !== index && !stopped) show(wanted);
    });
  }
  return loader;
}

function go(i) { follow = false; setPlaying(false); return show(i); }

// ------------------------------------------------------------------ playback

function setPlaying(p) {
  playing = p && n > 1 && !stopped;
  playGen += 1;
  shownTimes = [];
  $("play").innerHTML = playing ? "&#10074;&#10074;" : "&#9654;";
  perf();
  if (playing) {
    if (wanted >= n - 1 && !live) show(0);
    tick(playGen);
  }
}

async function tick(gen) {
  if (gen !== playGen || !playing) return;
  const t0 = performance.now();
  if (wanted >= n - 1) {
    if (!live) { setPlaying(false); return; }
  } else {
    await show(wanted + 1);
  }
  if (gen !== playGen) return;
  setTimeout(() => tick(gen), Math.max(0, 1000 / (fps * speed) - (performance.now() - t0)));
}

function notePlayed() {
  const now = performance.now();
  shownTimes.push(now);
  while (shownTimes.length > 2 && now - shownTimes[0] > 2000) shownTimes.shift();
  perf();
}

// the rate asked for, and, when frames cannot be decoded and sent that fast, the rate reached
function perf() {
  const target = fps * speed, el_ = $("perf");
  let text = "", behind = false;
  if (playing && shownTimes.length >= 6 && shownTimes[shownTimes.length - 1] - shownTimes[0] >= 700) {
    const got = (shownTimes.length - 1) * 1000 / (shownTimes[shownTimes.length - 1] - shownTimes[0]);
    behind = got < 0.85 * target && wanted < n - 1;
    text = behind ? "behind: " + got.toFixed(1) + " of " + fmtRate(target) + " fps"
                  : fmtRate(got) + " fps";
  } else if (playing) {
    text = fmtRate(target) + " fps";
  }
  el_.textContent = text;
  el_.classList.toggle("behind", behind);
  el_.title = behind ? "frames cannot be read and sent as fast as asked; playback is slower than real time" : "";
}
function plural(k, word) { return k + " " + word + (k === 1 ? "" : "s"); }
function fmtRate(x) { return x >= 10 ? x.toFixed(0) : x.toFixed(1); }

function setSpeed(value) {
  speed = +value;
  $("speed").value = String(speed);
  shownTimes = [];
  perf();
}
function stepSpeed(dir) {
  const opts = [...$("speed").options].map((o) => +o.value);
  const k = opts.indexOf(speed);
  setSpeed(opts[Math.min(Math.max(0, k + dir), opts.length - 1)]);
}

// ------------------------------------------------------------------ timeline

function drawTimeline() {
  const c = $("timeline"), w = c.clientWidth, h = 14;
  if (!w) return;
  if (c.width !== w) c.width = w;
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, h);
  const pad = 7, span = w - 2 * pad;  // the slider thumb's half width: marks line up with the thumb
  const x = (s) => pad + (n > 1 ? s / (n - 1) : 0) * span;
  g.fillStyle = "#262a32";
  g.fillRect(pad, 3, span, h - 6);
  const cols = ["#f2a33a", "#ef5b5b"];
  let lastX = [-9, -9];
  for (const [s, kind] of events) {  // pauses drawn over gaps; one mark per pixel column and kind
    const px = Math.round(x(s));
    if (px === lastX[kind]) continue;
    lastX[kind] = px;
    g.fillStyle = cols[kind];
    if (kind === 0) g.fillRect(px - 1, 1, 2, h - 2); else g.fillRect(px - 1, 3, 2, h - 6);
  }
  if (index >= 0 && n > 0) {
    g.fillStyle = "#ffffff";
    g.fillRect(Math.round(x(index)), 0, 1, h);
  }
  c.dataset.marks = events.length;
}

$("timeline").addEventListener("click", (e) => {
  const c = $("timeline"), r = c.getBoundingClientRect(), pad = 7;
  const frac = Math.min(Math.max(0, (e.clientX - r.left - pad) / (r.width - 2 * pad)), 1);
  const s = Math.round(frac * (n - 1));
  // snap to a mark within 4 pixels, so a drop is easy to hit
  let best = null;
  for (const ev of events) {
    const dx = Math.abs(ev[0] - s) * (r.width - 2 * pad) / Math.max(n - 1, 1);
    if (dx <= 4 && (!best || dx < best.dx)) best = {dx, ev};
  }
  if (best) { go(best.ev[0]).then(() => status(best.ev[4])); } else go(s);
});

function jumpEvent(dir) {
  if (!events.length) { status("no dropped frames or pauses"); return; }
  const here = wanted;
  let target = null;
  if (dir > 0) target = events.find((ev) => ev[0] > here);
  else for (let k = events.length - 1; k >= 0; k--) if (events[k][0] < here) { target = events[k]; break; }
  if (!target) { status(dir > 0 ? "no more drops after this frame" : "no drops before this frame"); return; }
  const texts = events.filter((ev) => ev[0] === target[0]).map((ev) => ev[4]);
  go(target[0]).then(() => status(texts.join("; ")));
}

async function loadEvents() {
  try {
    const r = await fetch("/events", {cache: "no-store"});
    const j = await r.json();
    events = j.events;
    const gaps = j.totals.reduce((a, t) => a + t.gaps, 0), missing = j.totals.reduce((a, t) => a + t.missing, 0);
    const pauses = j.totals.reduce((a, t) => a + t.pauses, 0);
    const s = $("evsummary");
    s.textContent = "";
    if (!gaps && !pauses) s.textContent = "no drops";
    else {
      if (gaps) s.append(el("span", "g", missing + " dropped in " + gaps + " gap" + (gaps === 1 ? "" : "s")));
      if (gaps && pauses) s.append(" \u00b7 ");
      if (pauses) s.append(el("span", "p", pauses + " pause" + (pauses === 1 ? "" : "s")));
    }
    s.title = j.left_out ? j.left_out + " smaller events are not marked" : "";
    drawTimeline();
  } catch (e) { /* the timeline is an extra: the frames still work */ }
}

// ------------------------------------------------------------------ extra data

function scheduleExtra() {
  if (!document.body.classList.contains("has-extra") || index === extraAt) return;
  if (extraTimer) return;  // at most a few requests a second while playing
  extraTimer = setTimeout(async () => {
    extraTimer = null;
    const i = index;
    extraAt = i;
    try {
      const r = await fetch("/extra?index=" + i, {cache: "no-store"});
      if (r.ok) renderExtra(await r.json());
    } catch (e) { /* shown again at the next frame */ }
    if (index !== extraAt) scheduleExtra();
  }, playing ? 200 : 0);
}

function fmtValue(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "number") {
    return Number.isInteger(v) ? String(v) : (Math.abs(v) >= 1000 ? v.toFixed(1) : v.toPrecision(4));
  }
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function renderExtra(j) {
  const box = $("extra");
  box.textContent = "";
  for (const s of j.stores) {
    if (!info.has_extra_data[s.store]) continue;
    const div = el("div", "xstore");
    if (j.stores.length > 1) div.append(el("div", "caption", s.name));
    if (s.frame_index < 0) { div.append(el("div", "xwhen", "no frame of this store yet")); box.append(div); continue; }
    const when = s.current ? (s.current_frame_index === s.frame_index ? "at this frame"
      : "last record: " + plural(s.frame_index - s.current_frame_index, "frame") + " earlier")
      : "no record yet at this frame";
    div.append(el("div", "xwhen", when));
    for (const col of s.columns) {
      const row = el("div", "xrow"), v = s.current ? s.current[col] : null;
      const k = el("span", "k", col), val = el("span", "v", fmtValue(v));
      k.title = col;
      val.dataset.extraCol = col;
      val.dataset.store = s.store;
      row.append(k, val);
      const series = s.series && s.series.columns[col];
      if (series) {
        const c = el("canvas");
        row.append(c);
        requestAnimationFrame(() => spark(c, s.series, series, s.frame_index));
      }
      div.append(row);
    }
    box.append(div);
  }
}

function spark(c, ser, ys, at) {
  const w = c.clientWidth, h = c.clientHeight;
  if (!w) return;
  c.width = w; c.height = h;
  const g = c.getContext("2d"), xs = ser.frame_index;
  const pts = xs.map((x, k) => [x, ys[k]]).filter((p) => typeof p[1] === "number");
  c.dataset.points = pts.length;
  g.fillStyle = "#262a32"; g.fillRect(0, 0, w, h);
  const X = (x) => (x - ser.from) / Math.max(ser.to - ser.from, 1) * (w - 2) + 1;
  g.fillStyle = "#ffffff55"; g.fillRect(Math.round(X(at)), 0, 1, h);
  if (!pts.length) return;
  let lo = Math.min(...pts.map((p) => p[1])), hi = Math.max(...pts.map((p) => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  const Y = (y) => h - 3 - (y - lo) / (hi - lo) * (h - 6);
  g.strokeStyle = "#4ea1ff"; g.lineWidth = 1.5; g.beginPath();
  pts.forEach((p, k) => k ? g.lineTo(X(p[0]), Y(p[1])) : g.moveTo(X(p[0]), Y(p[1])));
  g.stroke();
  g.fillStyle = "#4ea1ff";
  for (const p of pts) if (pts.length < 60) g.fillRect(X(p[0]) - 1, Y(p[1]) - 1, 3, 3);
  g.fillStyle = "#9aa1ad"; g.font = "10px system-ui";
  if (hi !== lo + 2) { g.fillText(fmtValue(hi), 3, 10); g.fillText(fmtValue(lo), 3, h - 3); }
}

// ------------------------------------------------------------------ live following

async function poll() {
  if (stopped) return;
  try {
    const r = await fetch("/status", {cache: "no-store"});
    const s = await r.json();
    setLive(s.live);
    if (s.steps !== n) {
      const grew = s.steps > n;
      n = s.steps;
      $("slider").max = Math.max(n - 1, 0);
      $("last_index").textContent = Math.max(n - 1, 0);
      if (grew && follow) show(n - 1);
      else if (index < 0 && n > 0) show(0);
    }
    if (s.version !== version) {
      version = s.version;
      loadEvents();
      extraAt = -1;
      scheduleExtra();
    }
  } catch (e) { /* the server stopped: quit() says so */ }
  setTimeout(poll, live ? 500 : 3000);
}

function setLive(value) {
  if (value === live) return;
  live = value;
  document.body.classList.toggle("live", live);
  if (!live && n > 0) status("recording ended: " + n + " frames");
}

// ------------------------------------------------------------------ the rest

async function quit() {
  if (stopped) return;
  setPlaying(false);
  stopped = true;
  try { await fetch("/quit", {method: "POST"}); } catch (e) { /* the server may already be gone */ }
  document.body.classList.add("stopped");
  document.body.classList.remove("live");
  status("viewer stopped; you can close this tab");
}

async function lookup(text) {
  const r = await fetch("/lookup?q=" + encodeURIComponent(text), {cache: "no-store"});
  const j = await r.json();
  if (!r.ok) { status(j.error); return; }
  status("");
  await go(j.index);
  status(j.note || "");  // after the frame, so the note never describes the previous one
}

function toggleHelp(on) { document.body.classList.toggle("helpon", on); }

document.addEventListener("keydown", (e) => {
  if (stopped) return;
  if (document.body.classList.contains("helpon")) { toggleHelp(false); e.preventDefault(); return; }
  if (e.key === "Escape") { e.preventDefault(); quit(); return; }
  if (e.target.id === "goto" || e.ctrlKey || e.metaKey || e.altKey) return;
  const step = e.shiftKey ? 10 : 1, second = Math.max(1, Math.round(fps));
  switch (e.key) {
    case " ": follow = false; setPlaying(!playing); break;
    case "ArrowRight": go(wanted + step); break;
    case "ArrowLeft": go(wanted - step); break;
    case "PageDown": go(wanted + second); break;
    case "PageUp": go(wanted - second); break;
    case "Home": go(0); break;
    case "End": go(n - 1); follow = true; break;
    case "n": case "N": jumpEvent(1); break;
    case "p": case "P": jumpEvent(-1); break;
    case "-": case "_": case "[": stepSpeed(-1); break;
    case "+": case "=": case "]": stepSpeed(1); break;
    case "f": fitMode = !fitMode; layout(); break;
    case "g": case "/": $("goto").focus(); $("goto").select(); break;
    case "?": case "h": toggleHelp(true); break;
    case "q": case "Q": quit(); break;
    default: return;
  }
  e.preventDefault();  // also stops the focused slider from moving a second time
});

$("help").addEventListener("click", () => toggleHelp(false));
$("helpbtn").addEventListener("click", (e) => { e.currentTarget.blur(); toggleHelp(true); });
$("slider").addEventListener("input", (e) => go(+e.target.value));
$("play").addEventListener("click", (e) => { e.currentTarget.blur(); follow = false; setPlaying(!playing); });
$("speed").addEventListener("change", (e) => { setSpeed(e.target.value); e.target.blur(); });
$("newest").addEventListener("click", (e) => { e.currentTarget.blur(); go(n - 1); follow = true; });
$("prevev").addEventListener("click", (e) => { e.currentTarget.blur(); jumpEvent(-1); });
$("nextev").addEventListener("click", (e) => { e.currentTarget.blur(); jumpEvent(1); });
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
  version = info.version;
  $("slider").max = Math.max(n - 1, 0);
  $("last_index").textContent = Math.max(n - 1, 0);
  if (info.stores.length > 1) $("poslabel").textContent = "step";
  const size = info.image_shape[1] + "\u00d7" + info.image_shape[0];
  $("storename").textContent = info.stores.length > 1
    ? info.stores.map((s) => s.name).join("  \u00b7  ") + "  (in step by frame_time)"
    : info.path + "  \u00b7  " + info.format + "  \u00b7  " + size + "  \u00b7  " + info.timezone;
  document.title = "imgstore: " + info.names.join(" + ");
  document.body.classList.toggle("has-extra", info.has_extra_data.some((x) => x));
  buildPanes();
  setLive(info.live);
  loadEvents();
  poll();
  if (n === 0) { status(live ? "waiting for the first frame" : "this store has no frames");
                 document.body.dataset.ready = "1"; return; }
  if (live) { follow = true; show(n - 1); } else show(0);
})();
</script>
</body>
</html>
"""
