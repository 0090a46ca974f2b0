// The drawing as the models see it, in the browser: a port of core/images.py, number for number.
//
// canvasToGrey(rgba, width, height) is canvas_png_to_grey: Pillow's reduce(2) of an RGBA image
// (premultiplied by alpha, a 2×2 box average rounded half up, then unpremultiplied), its "L"
// conversion, and ImageChops.multiply by the alpha channel, in Pillow's own integer arithmetic.
// mnistStyle(grey, width, height) is mnist_style: the digit's bounding box (ink over 0.05) scaled
// by Pillow's bilinear filter to fit 20×20, placed in a 28×28 field by its centre of mass. Python's
// round() rounds halves to even; so does pyRound here. tests/test_browser_device.py holds this file to
// core's on real drawings, in chromium.

const FIELD = 28;
const BOX = 20;
const THRESHOLD = 0.05;

function muldiv255(a, b) {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

export function canvasToGrey(rgba, width, height, reduce = 2) {
  if (width % reduce || height % reduce) throw new Error(`a ${width}×${height} canvas does not halve evenly`);
  const w = width / reduce, h = height / reduce, n = reduce * reduce, amend = n >> 1;
  const grey = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let dy = 0; dy < reduce; dy++) {
        for (let dx = 0; dx < reduce; dx++) {
          const i = ((y * reduce + dy) * width + (x * reduce + dx)) * 4, alpha = rgba[i + 3];
          r += muldiv255(rgba[i], alpha); g += muldiv255(rgba[i + 1], alpha); b += muldiv255(rgba[i + 2], alpha); a += alpha;
        }
      }
      r = Math.floor((r + amend) / n); g = Math.floor((g + amend) / n); b = Math.floor((b + amend) / n); a = Math.floor((a + amend) / n);
      if (a !== 0 && a !== 255) {
        r = Math.min(255, Math.floor((255 * r) / a)); g = Math.min(255, Math.floor((255 * g) / a)); b = Math.min(255, Math.floor((255 * b) / a));
      }
      const luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      grey[y * w + x] = Math.floor((luma * a) / 255) / 255;
    }
  }
  return { grey, width: w, height: h };
}

export function pyRound(x) {
  const floor = Math.floor(x), rest = x - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// Pillow's bilinear coefficients for resizing one axis from size to newSize (Resample.c's
// precompute_coeffs): a newSize × size matrix, row-major, in doubles.
export function resizeMatrix(size, newSize) {
  const scale = size / newSize, filterscale = Math.max(scale, 1), support = filterscale, ss = 1 / filterscale;
  const weights = new Float64Array(newSize * size);
  for (let xx = 0; xx < newSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), size) - xmin;
    let total = 0;
    const row = [];
    for (let x = 0; x < xmax; x++) {
      const d = Math.abs((x + xmin - center + 0.5) * ss), w = d < 1 ? 1 - d : 0;
      row.push(w); total += w;
    }
    for (let x = 0; x < xmax; x++) weights[xx * size + xmin + x] = Math.fround(total !== 0 ? row[x] / total : row[x]);
  }
  return weights;
}

// The 28×28 field (Float32Array of 784) or null for a blank drawing.
export function mnistStyle(grey, width, height) {
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (grey[y * width + x] > THRESHOLD) {
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
  }
  if (bottom < 0) return null;
  const h = bottom - top + 1, w = right - left + 1, scale = BOX / Math.max(h, w);
  const newH = Math.max(1, pyRound(h * scale)), newW = Math.max(1, pyRound(w * scale));
  const rows = resizeMatrix(h, newH), cols = resizeMatrix(w, newW);
  // rows (newH×h) @ crop (h×w) @ cols.T (w×newW)
  const middle = new Float64Array(newH * w);
  for (let i = 0; i < newH; i++) {
    for (let j = 0; j < w; j++) {
      let sum = 0;
      for (let k = 0; k < h; k++) sum += rows[i * h + k] * grey[(top + k) * width + left + j];
      middle[i * w + j] = sum;
    }
  }
  const digit = new Float32Array(newH * newW);
  let total = 0, cy = 0, cx = 0;
  for (let i = 0; i < newH; i++) {
    for (let j = 0; j < newW; j++) {
      let sum = 0;
      for (let k = 0; k < w; k++) sum += middle[i * w + k] * cols[j * w + k];
      const v = Math.min(1, Math.max(0, Math.fround(sum)));
      digit[i * newW + j] = v;
      total += v; cy += v * i; cx += v * j;
    }
  }
  if (total <= 0) return null;
  const placeTop = Math.min(Math.max(pyRound(FIELD / 2 - cy / total), 0), FIELD - newH);
  const placeLeft = Math.min(Math.max(pyRound(FIELD / 2 - cx / total), 0), FIELD - newW);
  const field = new Float32Array(FIELD * FIELD);
  for (let i = 0; i < newH; i++) for (let j = 0; j < newW; j++) field[(placeTop + i) * FIELD + placeLeft + j] = digit[i * newW + j];
  return field;
}

export function frameCanvas(rgba, width, height) {
  const { grey, width: w, height: h } = canvasToGrey(rgba, width, height);
  return mnistStyle(grey, w, h);
}
