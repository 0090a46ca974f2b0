// The browser runtime: LiteRT.js (vendored in ../litertjs/) running the lab's browser twins.
// core/litertjs.py is its server side; ui/device.py mounts it as a Streamlit component.
//
// Timing: performance.now() is clamped to 100 µs on a page that is not cross-origin isolated
// (Streamlit's is not), so each sample times a batch of runs long enough (MIN_SAMPLE_MS) for the
// clamp to be under 5% of it, and reports the mean per run of that batch.

import * as litert from "../litertjs/index.js";

export const MIN_SAMPLE_MS = 2;
const state = (globalThis.__qlabDevice ??= { loading: null, build: "", compiled: new Map() });

function oneLine(error) {
  const text = String((error && error.message) || error || "unknown error");
  return text.split("\n")[0].slice(0, 300);
}

export async function load(baseUrl) {
  if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
  if (!state.loading) {
    state.loading = (async () => {
      const simd = await litert.supportsFeature("relaxedSimd");
      state.build = simd ? "litert_wasm_internal" : "litert_wasm_compat_internal";
      await litert.loadLiteRt(new URL("litertjs/", baseUrl).href);
      return state.build;
    })().catch((error) => {
      state.loading = null;
      throw error;
    });
  }
  return state.loading;
}

export async function facts() {
  let webgpu = false;
  try {
    webgpu = !!(navigator.gpu && (await navigator.gpu.requestAdapter()));
  } catch (error) {
    webgpu = false;
  }
  return {
    user_agent: navigator.userAgent.slice(0, 300),
    mobile: !!(navigator.userAgentData ? navigator.userAgentData.mobile : /Mobi|Android|iPhone|iPad/.test(navigator.userAgent)),
    cores: navigator.hardwareConcurrency || 0,
    webgpu,
    wasm_build: state.build,
    touch: navigator.maxTouchPoints || 0,
  };
}

function bytesOf(base64) {
  const text = atob(base64), bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// A compiled twin, kept per page for its digest and accelerator: reruns and pages reuse it.
export async function compile(digest, base64, accelerator = "wasm") {
  const key = `${digest}:${accelerator}`;
  if (!state.compiled.has(key)) {
    const pending = litert.loadAndCompile(bytesOf(base64), { accelerator }).then((model) => {
      const shape = Array.from(model.getInputDetails()[0].shape);
      return { model, shape };
    });
    state.compiled.set(key, pending);
    pending.catch(() => state.compiled.delete(key));
  }
  return state.compiled.get(key);
}

async function runOnce(compiled, image) {
  const input = new litert.Tensor(image, compiled.shape);
  try {
    const outputs = await compiled.model.run(input);
    const values = Float32Array.from(outputs[0].toTypedArray());
    for (const tensor of outputs) tensor.delete();
    return values;
  } finally {
    input.delete();
  }
}

export async function answer(compiled, image) {
  return { scores: Array.from(await runOnce(compiled, image)) };
}

// One stroke's latency per twin: runs until MIN_SAMPLE_MS have passed, the mean per run in µs
// (one run alone is under the 100 µs clamp).
export async function perRunUs(compiled, image) {
  const start = performance.now();
  let runs = 0, elapsed = 0;
  while (elapsed < MIN_SAMPLE_MS) {
    await runOnce(compiled, image);
    runs += 1;
    elapsed = performance.now() - start;
  }
  return (elapsed * 1000) / runs;
}

// Latency, in two steps so that a page can interleave its twins (on a busy machine a drift then
// hits every twin alike): calibrate() warms a twin up and finds how many runs make a batch at
// least MIN_SAMPLE_MS long; sample() times one such batch and gives the mean per run in µs.
export async function calibrate(compiled, image) {
  for (let i = 0; i < 5; i++) await runOnce(compiled, image);
  let runs = 1, elapsed = 0;
  while (elapsed < MIN_SAMPLE_MS && runs < 4096) {
    runs *= 2;
    const start = performance.now();
    for (let i = 0; i < runs; i++) await runOnce(compiled, image);
    elapsed = performance.now() - start;
  }
  return runs;
}

// A batch is never shorter than MIN_SAMPLE_MS: a calibration slowed by a busy moment can leave
// `runs` too few to rise above the clamp (it measured 0 µs once, on a loaded 2-core machine).
export async function sample(compiled, image, runs) {
  const start = performance.now();
  let done = 0, elapsed = 0;
  while (done < runs || elapsed < MIN_SAMPLE_MS) {
    await runOnce(compiled, image);
    done += 1;
    elapsed = performance.now() - start;
  }
  return (elapsed * 1000) / done;
}

// Every twin on the same images: its answers, for agreement with the server's LiteRT.
export async function outputs(compiled, images) {
  const found = [];
  for (const image of images) found.push(Array.from(await runOnce(compiled, image)));
  return found;
}

export { oneLine, bytesOf };
