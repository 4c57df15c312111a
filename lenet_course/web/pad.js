// The "Draw and watch" pad: draw with a mouse, a finger or a pen and watch LeNet read the drawing.
//
// One pad, two engines. On the book's page the network runs here, in lenet.js, on the weights that
// tools/export_draw_weights.py ships. In JupyterLab (lenet_course.draw.DrawPad, an anywidget) the
// pad sends the drawing to the kernel, where PyTorch runs the model, and draws what comes back.
// Either way the engine answers with the same record: the 28 x 28 image, every layer's output,
// the probabilities; this file only draws.
(function () {
  "use strict";

  const SIZE = 224; // the drawing canvas, in pixels
  const STROKE = 18; // about the stroke width of MNIST's digits, relative to their height
  // The pad's words in each edition's language: the book's Chinese pages mount the pad with
  // language: "zh", and so does DrawPad under LENET_COURSE_LANG=zh (make lab EDITION=zh).
  const TEXT = {
    en: {
      clear: "Clear",
      centre: " fit and centre it, as the data set did",
      seen: "What LeNet sees (28 x 28)",
      top: "Its top 3 guesses",
      blank: "Nothing is drawn: even a black square gets a guess.",
      kernels: "C1's six 5 x 5 kernels",
      c1: "C1: 6 feature maps, 28 x 28 (convolution, then the activation)",
      s2: "S2: 6 maps, 14 x 14 (pooling)",
      c3: "C3: 16 feature maps, 10 x 10 (convolution, then the activation)",
      s4: "S4: 16 maps, 5 x 5 (pooling)",
      f5: "F5: 120 units (after the activation)",
      f6: "F6: 84 units (after the activation)",
    },
    zh: {
      clear: "清除",
      centre: " 像数据集那样缩放并居中",
      seen: "LeNet 看到的图像（28 x 28）",
      top: "它的前 3 个猜测",
      blank: "什么都没画：即使是黑色方框也会得到一个猜测。",
      kernels: "C1 的六个 5 x 5 卷积核",
      c1: "C1：6 张特征图，28 x 28（卷积，然后激活）",
      s2: "S2：6 张特征图，14 x 14（池化）",
      c3: "C3：16 张特征图，10 x 10（卷积，然后激活）",
      s4: "S4：16 张特征图，5 x 5（池化）",
      f5: "F5：120 个单元（激活之后）",
      f6: "F6：84 个单元（激活之后）",
    },
  };
  const LAYERS = ["c1", "s2", "c3", "s4"];
  // F5 and F6 as grids of cells, one per unit: 12 to a row
  const DENSE = ["f5", "f6"];

  const STYLE = `
    .lenet-pad { font: 14px/1.4 system-ui, sans-serif; display: flex; flex-wrap: wrap; gap: 16px; }
    .lenet-pad canvas.draw { background: #000; touch-action: none; cursor: crosshair;
      border-radius: 4px; width: ${SIZE}px; height: ${SIZE}px; }
    .lenet-pad canvas.map { image-rendering: pixelated; margin: 2px; background: #000;
      outline: 1px solid #999; }
    .lenet-pad .controls { display: flex; gap: 8px; align-items: center; margin: 6px 0; }
    .lenet-pad .bar { background: #3b7dd8; height: 12px; display: inline-block; }
    .lenet-pad .guess { display: flex; gap: 6px; align-items: center; white-space: nowrap; }
    .lenet-pad .layer { margin: 4px 0 8px; }
    .lenet-pad .caption { opacity: 0.75; font-size: 12px; }
  `;

  function element(tag, props = {}, children = []) {
    const node = Object.assign(document.createElement(tag), props);
    for (const child of children) node.append(child);
    return node;
  }

  // A small grayscale picture of width x height `values`, on a scale given by `reach`: black at
  // 0 and white at `reach` for outputs (an activation such as ReLU keeps them at 0 or above);
  // for kernels (`signed`), grey at 0, white at +reach and black at -reach.
  function drawMap(canvas, values, offset, [width, height], scale, reach, signed = false) {
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = `${width * scale}px`;
    canvas.style.height = `${height * scale}px`;
    const image = canvas.getContext("2d").createImageData(width, height);
    for (let i = 0; i < width * height; i++) {
      const x = reach > 0 ? values[offset + i] / reach : 0;
      const v = Math.round(signed ? 127.5 + 127.5 * x : 255 * Math.max(x, 0));
      image.data.set([v, v, v, 255], 4 * i);
    }
    canvas.getContext("2d").putImageData(image, 0, 0);
  }

  // One picture per channel, all on one scale: the layer's largest value, so that a map that
  // answers weakly looks darker than one that answers strongly.
  function pictures(key, { data, channels, size }, scale, signed = false) {
    const reach = Array.from(data).reduce((top, v) => Math.max(top, Math.abs(v)), 0);
    return Array.from({ length: channels }, (_, c) => {
      const canvas = element("canvas", { className: `map ${key}` });
      drawMap(canvas, data, c * size * size, [size, size], scale, reach, signed);
      return canvas;
    });
  }

  class Pad {
    // engine(pad) returns a Promise of the record to draw; datasets: the names the switch offers.
    constructor(root, { engine, datasets, dataset, language }) {
      this.engine = engine;
      this.text = TEXT[language] || TEXT.en;
      this.dataset = dataset || datasets[0];
      this.centre = true;
      this.latencies = []; // ms from a stroke's pointerup to its last picture (performance.now)
      this.updates = 0;
      this.record = null;
      this.build(root, datasets);
      this.clear();
    }

    build(root, datasets) {
      root.append(element("style", { textContent: STYLE }));
      this.canvas = element("canvas", { className: "draw", width: SIZE, height: SIZE });
      this.context = this.canvas.getContext("2d", { willReadFrequently: true });
      const clear = element("button", { textContent: this.text.clear, className: "clear" });
      clear.onclick = () => this.clear();
      this.switch = element(
        "select",
        { className: "dataset" },
        datasets.map((name) => element("option", { value: name, textContent: name })),
      );
      this.switch.value = this.dataset;
      this.switch.onchange = () => {
        this.dataset = this.switch.value;
        this.update();
      };
      this.switch.hidden = datasets.length < 2;
      const centre = element("input", { type: "checkbox", checked: true, className: "centre" });
      centre.onchange = () => {
        this.centre = centre.checked;
        this.update();
      };
      const centreLabel = element("label", {}, [centre, this.text.centre]);
      this.seen = element("canvas", { className: "map seen" });
      this.top = element("div", { className: "top" });
      this.maps = element("div", { className: "maps" });
      this.dense = element("div", { className: "dense" });
      root.append(
        element("div", { className: "lenet-pad" }, [
          element("div", {}, [
            this.canvas,
            element("div", { className: "controls" }, [clear, this.switch]),
            element("div", { className: "controls" }, [centreLabel]),
          ]),
          element("div", {}, [
            element("div", { className: "caption", textContent: this.text.seen }),
            this.seen,
            element("div", { className: "caption", textContent: this.text.top }),
            this.top,
            (this.blank = element("div", { className: "caption blank" })),
          ]),
          element("div", {}, [this.maps, this.dense]),
        ]),
      );
      this.listen();
    }

    // Pointer events cover the mouse, touch and pens alike.
    listen() {
      // one pointer draws at a time (a second finger is not a second pen)
      let last = null;
      let drawing = null;
      const at = (event) => {
        const box = this.canvas.getBoundingClientRect();
        return [
          ((event.clientX - box.left) * SIZE) / box.width,
          ((event.clientY - box.top) * SIZE) / box.height,
        ];
      };
      this.canvas.addEventListener("pointerdown", (event) => {
        if (drawing !== null || event.button !== 0) return; // the main button, or a touch, or a pen
        drawing = event.pointerId;
        this.canvas.setPointerCapture(event.pointerId);
        last = at(event);
        this.line(last, last);
        this.schedule();
      });
      this.canvas.addEventListener("pointermove", (event) => {
        if (!last || event.pointerId !== drawing) return;
        const next = at(event);
        this.line(last, next);
        last = next;
        this.schedule();
      });
      const end = (event) => {
        if (!last || event.pointerId !== drawing) return;
        last = null;
        drawing = null;
        const start = performance.now();
        this.update().then(() => this.latencies.push(performance.now() - start));
      };
      this.canvas.addEventListener("pointerup", end);
      this.canvas.addEventListener("pointercancel", end);
    }

    line([x0, y0], [x1, y1]) {
      const c = this.context;
      c.strokeStyle = "#fff";
      c.lineWidth = STROKE;
      c.lineCap = c.lineJoin = "round";
      c.beginPath();
      c.moveTo(x0, y0);
      c.lineTo(x1, y1);
      c.stroke();
    }

    clear() {
      this.context.fillStyle = "#000";
      this.context.fillRect(0, 0, SIZE, SIZE);
      return this.update();
    }

    // While a stroke is drawn: at most one update per frame.
    schedule() {
      if (this.pending) return;
      this.pending = requestAnimationFrame(() => {
        this.pending = null;
        this.update();
      });
    }

    // The drawing as the H x W uint8 grayscale picture predict.py reads: white ink on black.
    get gray() {
      const rgba = this.context.getImageData(0, 0, SIZE, SIZE).data;
      return Uint8Array.from({ length: SIZE * SIZE }, (_, i) => rgba[4 * i]);
    }

    async update() {
      const record = await this.engine(this);
      this.record = record;
      this.show(record);
      this.updates += 1;
      return record;
    }

    show(record) {
      drawMap(this.seen, record.pixels, 0, [28, 28], 4, 255);
      const blank = !this.gray.some((v) => v > 0);
      this.blank.textContent = blank ? this.text.blank : "";
      const ranked = record.probabilities
        .map((p, i) => [record.classNames[i], p])
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3);
      this.topClasses = ranked;
      this.top.replaceChildren(
        ...ranked.map(([name, p], rank) =>
          element("div", { className: "guess" }, [
            element("b", { className: rank === 0 ? "top1" : "", textContent: name }),
            element("span", { className: "bar", style: `width: ${Math.round(120 * p)}px` }),
            element("span", { textContent: `${(100 * p).toFixed(1)}%` }),
          ]),
        ),
      );
      const kernels = element("div", { className: "layer" }, [
        element("div", { className: "caption", textContent: this.text.kernels }),
        element("div", {}, pictures("kernel", record.kernels, 11, true)),
      ]);
      const layers = LAYERS.map((key) => {
        const scale = Math.max(1, Math.floor(56 / record[key].size));
        return element("div", { className: "layer" }, [
          element("div", { className: "caption", textContent: this.text[key] }),
          element("div", {}, pictures(key, record[key], scale)),
        ]);
      });
      this.maps.replaceChildren(kernels, ...layers);
      const dense = DENSE.filter((key) => record[key] && record[key].length);
      this.dense.replaceChildren(
        ...dense.map((key) => {
          const values = record[key];
          const reach = values.reduce((top, v) => Math.max(top, v), 0);
          const canvas = element("canvas", { className: `map ${key}` });
          drawMap(canvas, values, 0, [12, values.length / 12], 5, reach);
          return element("div", { className: "layer" }, [
            element("div", { className: "caption", textContent: this.text[key] }),
            canvas,
          ]);
        }),
      );
    }
  }

  // The book's engine: lenet.js with the shipped weights, all in the page.
  function browserEngine(pad) {
    const weights = globalThis.LeNetWeights[pad.dataset];
    const pixels = globalThis.LeNet.prepare(pad.gray, SIZE, SIZE, pad.dataset, pad.centre);
    const layers = globalThis.LeNet.forward(weights, pixels);
    const kernels = globalThis.LeNet.kernels(weights);
    return Promise.resolve({ ...layers, pixels, kernels, classNames: weights.class_names });
  }

  const instances = [];

  function mount(root, options = {}) {
    const datasets = Object.keys(globalThis.LeNetWeights || {}).sort().reverse();
    const pad = new Pad(root, { engine: browserEngine, datasets, ...options });
    instances.push(pad);
    return pad;
  }

  // anywidget's render(): the kernel runs the model. The pad sends its drawing (base64 of the
  // SIZE x SIZE uint8 picture) and the centring switch; the kernel answers with the record.
  // Each request is numbered, and the record that answers it carries its number.
  function renderWidget({ model, el }) {
    const waiting = new Map();
    let pad = null;
    model.on("change:record", () => {
      const record = { ...model.get("record"), classNames: model.get("record").class_names };
      const resolve = waiting.get(record.request);
      waiting.delete(record.request);
      // a record nobody waits for answers a picture the kernel sent (DrawPad.draw): show it
      if (resolve) resolve(record);
      else if (pad) pad.show(record);
    });
    let requests = 0;
    const engine = (pad) =>
      new Promise((resolve) => {
        // after the kernel's own pictures (DrawPad.draw), the next number is above theirs
        requests = Math.max(requests, model.get("request")) + 1;
        waiting.set(requests, resolve);
        let text = "";
        for (const byte of pad.gray) text += String.fromCharCode(byte);
        model.set("drawing", btoa(text));
        model.set("size", SIZE);
        model.set("centre", pad.centre);
        model.set("request", requests);
        model.save_changes();
      });
    const language = model.get("language");
    pad = new Pad(el, { engine, datasets: [model.get("dataset")], language });
    instances.push(pad);
  }

  globalThis.LeNetPad = { mount, renderWidget, instances, Pad, SIZE, TEXT };
})();
