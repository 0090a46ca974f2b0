// The Streamlit component (components v2) around device.js: ui/device.py mounts it.
//   mode "measure" (Compare): every twin timed on this device and run on the agreement images;
//                             one report goes back to the server (setStateValue "report").
//   mode "draw" (Draw):       every twin answers each stroke in the page, no server round trip.

const BASE = new URL("app/static/", document.baseURI);
const device = () => import(new URL("qlab/device.js", BASE).href);
const framing = () => import(new URL("qlab/framing.js", BASE).href);
// run_id -> the promise of its report: a remount (any rerun may remount the component) joins the
// measurement already under way, and a report made once is sent again by every later mount, so a
// message lost in a rerun cannot leave the page without its figures.
const reports = (globalThis.__qlabReports ??= new Map());

function imagesOf(base64, count) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const all = new Float32Array(bytes.buffer);
  return Array.from({ length: count }, (_, i) => all.subarray(i * 784, (i + 1) * 784));
}

function finite(values) {
  return values.map((v) => (Number.isFinite(v) ? v : null));
}

async function measure(data, root, setStateValue, alive) {
  let report = null;
  while (!report) {
    if (!alive() || !root.isConnected) return;
    if (!reports.has(data.run_id)) {
      const pending = timeEveryTwin(data, root);
      reports.set(data.run_id, pending);
      pending.then((made) => { if (!made) reports.delete(data.run_id); });
    }
    report = await reports.get(data.run_id); // null: an earlier mount's element left the page
  }
  if (!alive()) return;
  root.querySelector("progress").hidden = true;
  root.dataset.state = report.load_error ? "failed" : "done";
  setStateValue("report", report);
}

// One measurement of every twin; null if the page left it (the component's element gone).
async function timeEveryTwin(data, root) {
  const alive = () => root.isConnected;
  const status = root.querySelector(".status"), bar = root.querySelector("progress");
  const report = { version: 1, run_id: data.run_id, rows: {} };
  root.dataset.state = "running";
  bar.hidden = false;
  let runtime;
  try {
    status.textContent = "Loading LiteRT.js (WebAssembly, about 9 MB, from this app's server)…";
    runtime = await device();
    await runtime.load(BASE);
    report.device = await runtime.facts();
  } catch (error) {
    report.load_error = String((error && error.message) || error).split("\n")[0].slice(0, 300);
    status.textContent = "LiteRT.js cannot run in this browser: " + report.load_error;
    return report;
  }
  const images = imagesOf(data.images, data.image_count);
  const accelerators = report.device.webgpu ? ["wasm", "webgpu"] : ["wasm"];
  // First every twin compiled, checked on the agreement images and calibrated; then the samples
  // round-robin over all of them, so that the figures are side by side in time.
  const timed = [], rows = {};
  for (const twin of data.twins) {
    rows[twin.name] = { latency: {} };
    for (const accelerator of accelerators) {
      if (!alive()) return null;
      status.textContent = `Loading ${twin.label} with ${accelerator === "wasm" ? "WebAssembly" : "WebGPU"}…`;
      try {
        const compiled = await runtime.compile(twin.digest, twin.b64, accelerator);
        if (accelerator === "wasm") rows[twin.name].outputs = (await runtime.outputs(compiled, images)).map(finite);
        const runs = await runtime.calibrate(compiled, images[0]);
        timed.push({ twin, accelerator, compiled, runs, per_run_us: [] });
      } catch (error) {
        rows[twin.name].latency[accelerator] = { error: runtime.oneLine(error) };
      }
    }
  }
  for (let s = 0; s < data.samples; s++) {
    if (!alive()) return null;
    status.textContent = `Timing ${timed.length} twins on this device, round ${s + 1} of ${data.samples}…`;
    bar.value = s / data.samples;
    for (const entry of timed) {
      try {
        entry.per_run_us.push(await runtime.sample(entry.compiled, images[0], entry.runs));
      } catch (error) {
        entry.error = runtime.oneLine(error);
      }
    }
  }
  for (const entry of timed) {
    rows[entry.twin.name].latency[entry.accelerator] = entry.error
      ? { error: entry.error }
      : { per_run_us: entry.per_run_us, runs_per_sample: entry.runs };
  }
  for (const twin of data.twins) {
    const row = rows[twin.name];
    report.rows[twin.name] = row.latency.wasm.error ? { error: row.latency.wasm.error } : row;
  }
  bar.value = 1;
  status.textContent = `Measured ${data.twins.length} variants on this device (${report.device.wasm_build}).`;
  return report;
}

// -- Draw ----------------------------------------------------------------------------------------

function findCanvas() {
  for (const host of document.querySelectorAll("[data-testid=stBidiComponentIsolated], [data-testid=stBidiComponent]")) {
    const scope = host.shadowRoot || host;
    const upper = scope.querySelector("canvas.upper-canvas"), lower = scope.querySelector("canvas.lower-canvas:not(.dc-background-canvas)");
    if (upper && lower) return { upper, lower };
  }
  return null;
}

// The drawing as the 280×280 RGBA the server's canvas sends: the lower canvas is drawn at the
// device's pixel ratio, so a ratio of k is brought back by averaging k×k blocks (premultiplied).
function pixels(lower, size) {
  const context = lower.getContext("2d");
  const { width, height } = lower;
  const raw = context.getImageData(0, 0, width, height).data;
  const k = width / size;
  if (k === 1) return raw;
  if (!Number.isInteger(k) || height !== width) {
    const scratch = document.createElement("canvas");
    scratch.width = scratch.height = size;
    scratch.getContext("2d").drawImage(lower, 0, 0, size, size);
    return scratch.getContext("2d").getImageData(0, 0, size, size).data;
  }
  const out = new Uint8ClampedArray(size * size * 4), n = k * k;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) {
        const i = ((y * k + dy) * width + x * k + dx) * 4, alpha = raw[i + 3];
        r += raw[i] * alpha; g += raw[i + 1] * alpha; b += raw[i + 2] * alpha; a += alpha;
      }
      const o = (y * size + x) * 4;
      out[o] = a ? r / a : 0; out[o + 1] = a ? g / a : 0; out[o + 2] = a ? b / a : 0; out[o + 3] = Math.round(a / n);
    }
  }
  return out;
}

function softmax(scores) {
  const top = Math.max(...scores), exp = scores.map((v) => Math.exp(v - top)), sum = exp.reduce((s, v) => s + v, 0);
  const already = scores.every((v) => v >= 0) && Math.abs(scores.reduce((s, v) => s + v, 0) - 1) < 2e-2;
  return already ? scores : exp.map((v) => v / sum);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function draw(data, root, alive) {
  const status = root.querySelector(".status"), cards = root.querySelector(".cards");
  const history = [];
  let compiled = null, frame = null, busy = false, lastSum = -1, strokeStart = null, waiting = null;

  async function prepare() {
    const [runtime, frames] = await Promise.all([device(), framing()]);
    await runtime.load(BASE);
    frame = frames;
    const ready = [];
    for (const twin of data.twins) {
      try {
        ready.push({ ...twin, compiled: await runtime.compile(twin.digest, twin.b64), error: "" });
      } catch (error) {
        ready.push({ ...twin, compiled: null, error: runtime.oneLine(error) });
      }
    }
    compiled = { runtime, twins: ready };
    root.dataset.build = (await runtime.facts()).wasm_build;
  }

  async function answerNow(start) {
    if (busy && start !== null) waiting = start; // the periodic check is running: answer after it
    if (!compiled || busy || !alive()) return;
    const found = findCanvas();
    if (!found) return;
    busy = true;
    try {
      const rgba = pixels(found.lower, data.size);
      let sum = 0;
      for (let i = 3; i < rgba.length; i += 97) sum += rgba[i];
      if (start === null && sum === lastSum) return; // the periodic check: nothing changed
      lastSum = sum;
      const field = frame.frameCanvas(rgba, data.size, data.size);
      if (field === null) {
        cards.innerHTML = "";
        status.textContent = "Draw a digit: your device answers here as soon as the stroke ends.";
        root.dataset.answers = "{}";
        return;
      }
      const answers = {}, html = [];
      let expected = null;
      const results = [];
      for (const twin of compiled.twins) {
        if (!twin.compiled) { results.push({ twin, error: twin.error }); continue; }
        const { scores } = await compiled.runtime.answer(twin.compiled, field);
        results.push({ twin, scores: softmax(scores) });
      }
      for (const result of results) if (result.twin.name === data.reference && result.scores) expected = result.scores.indexOf(Math.max(...result.scores));
      for (const { twin, scores, error } of results) {
        if (error) { html.push(`<div class="card refused"><strong>${escapeHtml(twin.label)}</strong><div class="warn">${escapeHtml(error)}</div></div>`); continue; }
        const best = scores.indexOf(Math.max(...scores));
        answers[twin.name] = best;
        const differs = expected !== null && best !== expected;
        html.push(
          `<div class="card${differs ? " disagrees" : ""}" data-variant="${escapeHtml(twin.name)}"><strong>${escapeHtml(twin.label)}</strong>` +
          `<div class="answer">${escapeHtml(data.class_names[best] ?? best)}</div>` +
          `<div class="value">${(scores[best] * 100).toFixed(1)}%</div>` +
          `<div class="time">timing…</div></div>`);
      }
      cards.innerHTML = html.join("");
      root.dataset.answers = JSON.stringify(answers);
      root.dataset.image = JSON.stringify(Array.from(field));
      if (start !== null) {
        await new Promise((resolve) => requestAnimationFrame(() => resolve()));
        const took = performance.now() - start;
        history.push(took);
        if (history.length > 50) history.shift();
        const sorted = [...history].sort((a, b) => a - b);
        root.dataset.strokeMs = took.toFixed(2);
        root.dataset.strokes = String((Number(root.dataset.strokes) || 0) + 1);
        status.textContent = `End of stroke → ${results.length} answers on screen: ${took.toFixed(0)} ms (median ${sorted[Math.floor(sorted.length / 2)].toFixed(0)} ms over ${history.length}), no server round trip.`;
      } else {
        status.textContent = "Your device's answers to the drawing (LiteRT.js, WebAssembly).";
      }
      // The answers are on screen: now each twin's time per run on this drawing (after, so that
      // timing never delays an answer).
      for (const { twin, error } of results) {
        if (error || !alive()) continue;
        const us = await compiled.runtime.perRunUs(twin.compiled, field);
        const time = cards.querySelector(`.card[data-variant="${CSS.escape(twin.name)}"] .time`);
        if (time) time.textContent = `${us < 10 ? us.toFixed(1) : us.toFixed(0)} µs per run on this device`;
      }
    } finally {
      busy = false;
      if (waiting !== null) {
        const next = waiting;
        waiting = null;
        answerNow(next);
      }
    }
  }

  // A stroke starts on the canvas's upper surface and ends wherever the finger or mouse is let go;
  // the canvas sits in a shadow root, so the window sees it through composedPath(). Fabric adds
  // the finished stroke and asks for a repaint on the next frame while this event is still being
  // dispatched: a timeout queues our frame after its one, so the lower canvas holds the stroke.
  let drawing = false;
  const onStart = (event) => {
    const found = findCanvas();
    drawing = !!(found && event.composedPath().includes(found.upper));
  };
  const onEnd = (event) => {
    if (!drawing) return;
    drawing = false;
    strokeStart = event.timeStamp;
    setTimeout(() => requestAnimationFrame(() => answerNow(strokeStart)), 0);
  };
  const starts = ["pointerdown"], ends = ["pointerup", "pointercancel"]; // pointer events cover mouse, pen and touch
  for (const name of starts) window.addEventListener(name, onStart, { capture: true, passive: true });
  for (const name of ends) window.addEventListener(name, onEnd, { capture: true, passive: true });
  status.textContent = "Loading LiteRT.js for your device's answers…";
  prepare()
    .then(() => { root.dataset.state = "ready"; return answerNow(null); })
    .catch((error) => {
      root.dataset.state = "failed";
      status.textContent = "Your device cannot run LiteRT.js here (" + String((error && error.message) || error).split("\n")[0].slice(0, 200) + "): the server's answers stand.";
    });
  // Undo, Clear and a restored drawing repaint the canvas without a stroke: look twice a second.
  const timer = setInterval(() => answerNow(null), 500);
  return () => {
    clearInterval(timer);
    for (const name of starts) window.removeEventListener(name, onStart, { capture: true });
    for (const name of ends) window.removeEventListener(name, onEnd, { capture: true });
  };
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let root = parentElement.querySelector(".qlab-device");
  if (!root) {
    root = document.createElement("div");
    root.className = "qlab-device";
    root.innerHTML = '<div class="status"></div><progress max="1" value="0"></progress><div class="cards"></div>';
    parentElement.appendChild(root);
  }
  root.dataset.mode = data.mode;
  root.querySelector("progress").hidden = data.mode !== "measure";
  let live = true;
  const alive = () => live;
  let cleanup = () => {};
  if (data.mode === "measure") measure(data, root, setStateValue, alive);
  else cleanup = draw(data, root, alive);
  return () => {
    live = false;
    cleanup();
  };
}
