// LeNet in the browser: the arithmetic of notebook 01, written out, for the "Draw and watch" page.
//
//   LeNet.prepare(gray, width, height, dataset, centre) -> 28 x 28 uint8 image, as the model reads it
//   LeNet.forward(weights, pixels)                       -> every layer's output, scores last
//
// prepare() is lenet_course/predict.py's convert_image, step by step (the tests compare the two on
// the same drawing, pixel for pixel), including Pillow's Lanczos resize. forward() is the modern
// LeNet of notebook 06 (lenet_course.models.LeNet5v1) on weights written by
// tools/export_draw_weights.py. A classic script (no ES module): pages opened from disk may not
// import modules.
//
// Reading it for LeNet? Skip to "the forward pass" below: conv2d, pool2d, linear and forward are
// notebook 01's loops. The first half is the preparation, most of it Pillow's resize, written out
// so that the page's 28 x 28 image is predict.py's to the last pixel. Weights are stored as
// PyTorch stores them: a convolution's as [out channels, in channels, k, k], a dense layer's as
// [outputs, inputs], each flattened row by row.
(function () {
  "use strict";

  // ---- preprocessing: lenet_course/predict.py, convert_image ------------------------------------
  const CANVAS = 28;
  const LIGHT_BACKGROUND = 127;
  const TRIM_TOLERANCE = 0.05 * 255;
  // The object's longest edge and how it is centred: MNIST fits digits in 20 x 20 and puts their
  // centre of mass in the middle; Fashion-MNIST scales the longest edge to 28 and centres the box.
  const LAYOUTS = { "fashion-mnist": [28, "box"], mnist: [20, "mass"] };

  // Python's round() and numpy's rint(): halves go to the even neighbour.
  function roundHalfEven(x) {
    const f = Math.floor(x);
    const d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  // numpy's median of the outer border (corners counted twice, as np.concatenate does).
  function backgroundLevel(gray, w, h) {
    const border = [];
    for (let x = 0; x < w; x++) border.push(gray[x], gray[(h - 1) * w + x]);
    for (let y = 0; y < h; y++) border.push(gray[y * w], gray[y * w + w - 1]);
    border.sort((a, b) => a - b);
    const n = border.length;
    return n % 2 ? border[(n - 1) / 2] : (border[n / 2 - 1] + border[n / 2]) / 2;
  }

  // ---- Pillow's resize(..., Image.LANCZOS) for 8-bit images (libImaging/Resample.c) -------------
  const PRECISION_BITS = 32 - 8 - 2;
  const ONE = 2 ** PRECISION_BITS;

  function sinc(x) {
    if (x === 0.0) return 1.0;
    x *= Math.PI;
    return Math.sin(x) / x;
  }

  function lanczos(x) {
    return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
  }

  // For each output pixel: the first input pixel it reads, how many, and their fixed-point weights.
  function coefficients(inSize, outSize) {
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1.0);
    const support = 3.0 * filterScale;
    // a product with the reciprocal, as in C (a division would round differently)
    const ss = 1.0 / filterScale;
    const taps = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      const k = [];
      let sum = 0.0;
      for (let x = 0; x < xmax; x++) {
        const w = lanczos((x + xmin - center + 0.5) * ss);
        k.push(w);
        sum += w;
      }
      // normalised, then rounded to fixed point away from zero, as normalize_coeffs_8bpc does
      const fixed = k.map((w) => {
        const v = sum !== 0.0 ? w / sum : w;
        return v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
      });
      taps.push({ xmin, k: fixed });
    }
    return taps;
  }

  function clip8(value) {
    if (value >= ONE * 256) return 255;
    if (value <= 0) return 0;
    return Math.floor(value / ONE);
  }

  // One pass along rows (horizontal) or columns (vertical) of a w x h uint8 image.
  function resamplePass(src, w, h, outSize, horizontal) {
    const taps = coefficients(horizontal ? w : h, outSize);
    const ow = horizontal ? outSize : w;
    const oh = horizontal ? h : outSize;
    const out = new Uint8Array(ow * oh);
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const { xmin, k } = taps[horizontal ? x : y];
        let sum = ONE / 2;
        for (let i = 0; i < k.length; i++) {
          const index = horizontal ? y * w + xmin + i : (xmin + i) * w + x;
          sum += src[index] * k[i];
        }
        out[y * ow + x] = clip8(sum);
      }
    }
    return out;
  }

  function resizeLanczos(src, w, h, newW, newH) {
    if (newW === w && newH === h) return Uint8Array.from(src);
    let out = src;
    // Pillow resizes horizontally first, then vertically, each pass only when its size changes
    if (newW !== w) out = resamplePass(out, w, h, newW, true);
    if (newH !== h) out = resamplePass(out, newW, h, newH, false);
    return out === src ? Uint8Array.from(src) : out;
  }

  // Resize the trimmed object as the data set did and centre it on the 28 x 28 canvas (_place).
  function place(values, w, h, level, dataset) {
    const [longest, centring] = LAYOUTS[dataset];
    const scale = longest / Math.max(h, w);
    const newH = Math.max(1, roundHalfEven(h * scale));
    const newW = Math.max(1, roundHalfEven(w * scale));
    const small = Uint8Array.from(values, roundHalfEven);
    const patch = resizeLanczos(small, w, h, newW, newH);
    let top = Math.floor((CANVAS - newH) / 2);
    let left = Math.floor((CANVAS - newW) / 2);
    if (centring === "mass") {
      let mass = 0;
      let my = 0;
      let mx = 0;
      for (let y = 0; y < newH; y++) {
        for (let x = 0; x < newW; x++) {
          const m = patch[y * newW + x] - level;
          mass += m;
          my += y * m;
          mx += x * m;
        }
      }
      if (mass > 0) {
        // the centre of mass goes in the middle, as far as the canvas lets the patch move
        top = Math.min(Math.max(roundHalfEven((CANVAS - 1) / 2 - my / mass), 0), CANVAS - newH);
        left = Math.min(Math.max(roundHalfEven((CANVAS - 1) / 2 - mx / mass), 0), CANVAS - newW);
      }
    }
    const canvas = new Uint8Array(CANVAS * CANVAS).fill(roundHalfEven(level));
    for (let y = 0; y < newH; y++) {
      for (let x = 0; x < newW; x++) canvas[(top + y) * CANVAS + left + x] = patch[y * newW + x];
    }
    return canvas;
  }

  // A w x h uint8 grayscale picture as the data set lays out its 28 x 28 images (convert_image with
  // invert=None). With centre=false the whole picture is only resized to 28 x 28: the step the
  // page's toggle leaves out, to show what an off-centre drawing looks like to the network.
  function prepare(gray, w, h, dataset, centre = true) {
    if (!centre) return resizeLanczos(gray, w, h, CANVAS, CANVAS);
    const background = backgroundLevel(gray, w, h);
    const inverted = background > LIGHT_BACKGROUND;
    let values = Float64Array.from(gray, (v) => (inverted ? 255.0 - v : v));
    let level = inverted ? 255.0 - background : background;
    if (level <= LIGHT_BACKGROUND) {
      // a dark background becomes exactly black, as in the data
      const gain = 255.0 / (255.0 - level);
      values = values.map((v) => Math.min(Math.max((v - level) * gain, 0), 255));
      level = 0.0;
    }
    // trim to the object: the pixels that differ from the background (a blank picture stays whole)
    let top = h;
    let bottom = -1;
    let left = w;
    let right = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (Math.abs(values[y * w + x] - level) > TRIM_TOLERANCE) {
          top = Math.min(top, y);
          bottom = Math.max(bottom, y);
          left = Math.min(left, x);
          right = Math.max(right, x);
        }
      }
    }
    if (bottom < 0) return place(values, w, h, level, dataset);
    const tw = right - left + 1;
    const th = bottom - top + 1;
    const trimmed = new Float64Array(tw * th);
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) trimmed[y * tw + x] = values[(top + y) * w + left + x];
    }
    return place(trimmed, tw, th, level, dataset);
  }

  // ---- the forward pass: lenet_course.models.LeNet5v1 ---------------------------------------------
  // The base64 float32 tensors of a weights file, decoded once and kept with it.
  function decode(weights) {
    if (weights.decoded) return weights.decoded;
    const tensors = {};
    for (const [name, { shape, data }] of Object.entries(weights.tensors)) {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      tensors[name] = { shape, data: new Float32Array(bytes.buffer) };
    }
    weights.decoded = tensors;
    return tensors;
  }

  // A convolution as notebook 01 writes it: each output is a bias plus a sum of products over the
  // input channels and the kernel window. The input is zero-padded by `pad` on every side.
  function conv2d(input, c, size, { shape, data }, bias, pad) {
    const [out, , k] = shape; // [out channels, in channels, k, k]
    const outSize = size + 2 * pad - k + 1;
    const result = new Float32Array(out * outSize * outSize);
    for (let o = 0; o < out; o++) {
      for (let y = 0; y < outSize; y++) {
        for (let x = 0; x < outSize; x++) {
          let sum = bias[o];
          for (let i = 0; i < c; i++) {
            for (let ky = 0; ky < k; ky++) {
              const iy = y + ky - pad;
              if (iy < 0 || iy >= size) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = x + kx - pad;
                if (ix < 0 || ix >= size) continue;
                sum += input[(i * size + iy) * size + ix] * data[((o * c + i) * k + ky) * k + kx];
              }
            }
          }
          result[(o * outSize + y) * outSize + x] = sum;
        }
      }
    }
    return { data: result, channels: out, size: outSize };
  }

  function relu(values) {
    return values.map((v) => Math.max(v, 0));
  }

  // 2 x 2 windows, stride 2: the largest value (max) or the mean (avg) of each.
  function pool2d({ data, channels, size }, kind) {
    const half = size / 2;
    const result = new Float32Array(channels * half * half);
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < half; y++) {
        for (let x = 0; x < half; x++) {
          const at = (dy, dx) => data[(c * size + 2 * y + dy) * size + 2 * x + dx];
          const window = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
          const value = kind === "max" ? Math.max(...window) : window.reduce((a, b) => a + b) / 4;
          result[(c * half + y) * half + x] = value;
        }
      }
    }
    return { data: result, channels, size: half };
  }

  // A dense layer: out[j] = bias[j] + sum_i weight[j][i] * input[i].
  function linear(input, { shape, data }, bias) {
    const [out, inputs] = shape;
    const result = new Float32Array(out);
    for (let j = 0; j < out; j++) {
      let sum = bias[j];
      for (let i = 0; i < inputs; i++) sum += data[j * inputs + i] * input[i];
      result[j] = sum;
    }
    return result;
  }

  function softmax(scores) {
    const top = Math.max(...scores);
    const exps = Array.from(scores, (s) => Math.exp(s - top));
    const total = exps.reduce((a, b) => a + b);
    return exps.map((e) => e / total);
  }

  // Every layer's output for one 28 x 28 uint8 image: what the page draws.
  function forward(weights, pixels) {
    const t = decode(weights);
    const { mean, std } = weights.normalization;
    const { activation, pooling } = weights.model;
    if (activation !== "relu") throw new Error(`lenet.js runs ReLU networks, not ${activation}`);
    // prepare_images: v * 1 / (255 std) - mean / std, on the 28 x 28 image (conv1 pads it to 32)
    const scale = 1.0 / (255.0 * std);
    const x = Float32Array.from(pixels, (v) => v * scale - mean / std);
    const c1 = conv2d(x, 1, CANVAS, t["conv1.weight"], t["conv1.bias"].data, 2);
    c1.data = relu(c1.data);
    const s2 = pool2d(c1, pooling);
    const c3 = conv2d(s2.data, s2.channels, s2.size, t["conv2.weight"], t["conv2.bias"].data, 0);
    c3.data = relu(c3.data);
    const s4 = pool2d(c3, pooling);
    const f5 = relu(linear(s4.data, t["fc1.weight"], t["fc1.bias"].data));
    const f6 = relu(linear(f5, t["fc2.weight"], t["fc2.bias"].data));
    const scores = linear(f6, t["fc3.weight"], t["fc3.bias"].data);
    return { c1, s2, c3, s4, f5, f6, scores, probabilities: softmax(scores) };
  }

  // C1's kernels (6 x 5 x 5), to draw next to the maps they make.
  function kernels(weights) {
    const { shape, data } = decode(weights)["conv1.weight"];
    return { data, channels: shape[0], size: shape[3] };
  }

  globalThis.LeNet = { prepare, forward, kernels, resizeLanczos, roundHalfEven, LAYOUTS };
})();
