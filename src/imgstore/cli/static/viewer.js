// imgstore-view's page script: loads frames from the server (/frame, /info, /status, /events,
// /extra, /lookup) and draws them with the controls of viewer.html. Plain browser JavaScript,
// no build step; the lab tests (tests/test_cli_view*.py) read some of its globals.
"use strict";
const $ = (id) => document.getElementById(id);
// this run's token (filled into the page by the server); POST requests must carry it
const TOKEN = document.querySelector('meta[name="imgstore-token"]').content;
let info = null, n = 0, fps = 25, speed = 1, version = 0;
let panes = [];        // one per store: {img, caption elements, w, h}
let index = -1;        // step (frame_index for one store) on screen
let wanted = 0;        // step asked for last (key presses accumulate on it)
let loader = null;     // the running load loop, if any
let playing = false, playGen = 0, stopped = false, follow = false, fitMode = false, live = false;
let events = [];       // [step, kind (0 gap, 1 pause), store, size, text], by step
let shownTimes = [];   // performance.now() of frames shown while playing
let extraTimer = null, extraAt = -1;

// the line of messages under the controls (window.status is a browser global: another name)
function showStatus(text) { $("status").textContent = text || ""; }
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
    try { msg = (await r.json()).error; } catch { /* not JSON */ }
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
      if (!stopped) showStatus("cannot reach the viewer: " + e);
      index = i;  // do not retry forever; the next key press asks again
      break;
    }
    await Promise.all(results.map((r, k) => r.ok ? setImage(panes[k].img, r.url) : null));
    index = i;
    const bad = results.find((r) => !r.ok);
    if (bad) showStatus("frame " + i + ": " + bad.error);
    else if ($("status").dataset.kind === "error") showStatus("");
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
  if (best) { go(best.ev[0]).then(() => showStatus(best.ev[4])); } else go(s);
});

function jumpEvent(dir) {
  if (!events.length) { showStatus("no dropped frames or pauses"); return; }
  const here = wanted;
  let target = null;
  if (dir > 0) target = events.find((ev) => ev[0] > here);
  else for (let k = events.length - 1; k >= 0; k--) if (events[k][0] < here) { target = events[k]; break; }
  if (!target) { showStatus(dir > 0 ? "no more drops after this frame" : "no drops before this frame"); return; }
  const texts = events.filter((ev) => ev[0] === target[0]).map((ev) => ev[4]);
  go(target[0]).then(() => showStatus(texts.join("; ")));
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
  } catch { /* the timeline is an extra: the frames still work */ }
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
    } catch { /* shown again at the next frame */ }
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
  } catch { /* the server stopped: quit() says so */ }
  setTimeout(poll, live ? 500 : 3000);
}

function setLive(value) {
  if (value === live) return;
  live = value;
  document.body.classList.toggle("live", live);
  if (!live && n > 0) showStatus("recording ended: " + n + " frames");
}

// ------------------------------------------------------------------ the rest

async function quit() {
  if (stopped) return;
  setPlaying(false);
  stopped = true;
  try {
    await fetch("/quit", {method: "POST", headers: {"X-Imgstore-Token": TOKEN}});
  } catch { /* the server may already be gone */ }
  document.body.classList.add("stopped");
  document.body.classList.remove("live");
  showStatus("viewer stopped; you can close this tab");
}

async function lookup(text) {
  const r = await fetch("/lookup?q=" + encodeURIComponent(text), {cache: "no-store"});
  const j = await r.json();
  if (!r.ok) { showStatus(j.error); return; }
  showStatus("");
  await go(j.index);
  showStatus(j.note || "");  // after the frame, so the note never describes the previous one
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
  } catch (e) { showStatus("cannot reach the viewer: " + e); return; }
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
  if (n === 0) { showStatus(live ? "waiting for the first frame" : "this store has no frames");
                 document.body.dataset.ready = "1"; return; }
  if (live) { follow = true; show(n - 1); } else show(0);
})();
