// A texport texture network in JavaScript: the noise contract, the size plan, the 8-bit conversion
// and one run of the exported ONNX graph with onnxruntime-web's WASM backend.
//
// The page (index.html) and the Node runner (node.mjs, used by tests/test_web.py) both import this
// module, so the browser and the test run the same code; solid.js (the Solid tab) builds on its hash
// and metadata reader, and its volume takes the same 8-bit conversion. Each function mirrors texport:
//   hash32, noiseField  <- texport/noise.py (the written contract, bit for bit)
//   planSize            <- texport/sizes.py plan_size (grid = next multiple, output = top-left crop)
//   sample              <- texport/backends.py sample_with (noise, run, crop, clamp)
//   toUint8             <- texport/images.py to_uint8
//   readMetadata        <- the ONNX file's metadata_props (texport.size_multiple, texport.kind, ...)
//
// "onnxruntime-web" resolves to node_modules in Node and through the page's import map in a browser.
import * as ort from "onnxruntime-web";

// ---- the noise contract (texport/noise.py) --------------------------------------------------------

/** lowbias32 (Chris Wellons, hash-prospector) on uint32: Math.imul multiplies modulo 2^32. */
export function hash32(v) {
  v >>>= 0;
  v ^= v >>> 16;
  v = Math.imul(v, 0x7feb352d);
  v ^= v >>> 15;
  v = Math.imul(v, 0x846ca68b);
  v ^= v >>> 16;
  return v >>> 0;
}

/** Any integer (number, BigInt or decimal string, e.g. from a form field) modulo 2^32, as Python's `seed & MASK`. */
export function seedUint32(seed) {
  return Number(BigInt.asUintN(32, BigInt(seed)));
}

/**
 * The window [y0, y0+height) x [x0, x0+width) of the noise field for `batch` items (item b uses
 * seed + b): a Float32Array laid out [batch, channels, height, width], as noise.noise_field.
 *
 * A texture network takes all K*C channels at full resolution and subsamples scale i by 2^i inside
 * the graph (noise.scales), so this full field is exactly the tensor Python feeds it.
 */
export function noiseField(seed, channels, height, width, x0 = 0, y0 = 0, batch = 1) {
  const out = new Float32Array(batch * channels * height * width);
  let i = 0;
  for (let b = 0; b < batch; b++) {
    const hs = hash32(seedUint32(seed) + b);
    for (let c = 0; c < channels; c++) {
      i = fillPlane(out, i, hash32(c + hs), height, width, x0, y0);
    }
  }
  return out;
}

/**
 * The rows of one noise plane into out from index i, below the hash h of everything above y (the 2D
 * field's channel, the 3D field's z): hash32(x + hash32(y + h)) >>> 8, times 2^-24. Returns the next index.
 */
export function fillPlane(out, i, h, height, width, x0, y0) {
  const step = 2 ** -24;
  for (let y = 0; y < height; y++) {
    const hy = hash32(((y0 + y) >>> 0) + h); // (y + h) mod 2^32: hash32 wraps its argument
    for (let x = 0; x < width; x++) {
      out[i++] = (hash32(((x0 + x) >>> 0) + hy) >>> 8) * step; // exact in float32
    }
  }
  return i;
}

// ---- sizes (texport/sizes.py) ------------------------------------------------------------------------

export const MIN_SIZE = 16;
export const SIZE_LIMIT = 8192; // texport.defaults.SIZE_LIMIT (TEXPORT_MAX_SIZE does not reach a browser)

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** [width, height] from 512, "512", "1024x768" (or "1024*768") or [1024, 768]; throws on anything else. */
export function parseSize(text) {
  if (Array.isArray(text)) return [Number(text[0]), Number(text[1])];
  if (typeof text === "number") text = String(text);
  const parts = String(text).toLowerCase().replaceAll("*", "x").split("x");
  const ints = parts.map((p) => (/^\s*[+-]?\d+\s*$/.test(p) ? parseInt(p, 10) : NaN));
  if (parts.length > 2 || ints.some(Number.isNaN)) {
    throw new Error(`size must be N or WxH (e.g. 512 or 1024x768), got ${JSON.stringify(String(text))}`);
  }
  return ints.length === 1 ? [ints[0], ints[0]] : ints;
}

/**
 * What the user gets (width x height) and what the generator computes (gridWidth x gridHeight, the
 * next multiples of `multiple`, at least minSide); the output is the grid image's top-left crop.
 * A tileable request must already be on the grid (a crop does not wrap), or `snap` to the nearest.
 */
export function planSize(size, multiple = 1, minSide = MIN_SIZE, tileable = false, snap = false, limit = SIZE_LIMIT) {
  let [width, height] = parseSize(size);
  if (Math.min(width, height) < MIN_SIZE) {
    throw new Error(`size ${width}x${height} is too small: each side must be at least ${MIN_SIZE} pixels`);
  }
  if (Math.max(width, height) > limit) {
    throw new Error(`size ${width}x${height} exceeds the maximum side of ${limit} pixels`);
  }
  if (tileable && (width % multiple || height % multiple)) {
    const near = [width, height].map((s) => Math.max(multiple, roundHalfEven(s / multiple) * multiple));
    if (!snap) {
      throw new Error(
        `a tileable output needs sides that are multiples of ${multiple}; ${width}x${height} would be a crop ` +
          `that does not wrap (the nearest that does: ${near[0]}x${near[1]}; snapping picks it)`,
      );
    }
    [width, height] = near;
  }
  if (tileable && Math.min(width, height) < minSide) {
    throw new Error(`a tileable output of this model needs sides of at least ${minSide}, got ${width}x${height}`);
  }
  const grid = (s) => Math.max(minSide, Math.ceil(s / multiple) * multiple);
  return { width, height, gridWidth: grid(width), gridHeight: grid(height) };
}

// ---- the ONNX file's metadata ---------------------------------------------------------------------

/**
 * metadata_props of an ONNX ModelProto (field 14: repeated {key = 1, value = 2}) as an object.
 * onnxruntime-web does not expose them, and they are all at the top level of the protobuf, so a
 * walk over its fields (skipping the rest, the graph included) is enough.
 */
export function readMetadata(bytes) {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const text = new TextDecoder();
  const fields = function* (start, end) {
    let p = start;
    const varint = () => {
      let value = 0;
      for (let scale = 1; ; scale *= 128) {
        const byte = buf[p++];
        value += (byte & 0x7f) * scale; // exact up to 2^53, far beyond any length here
        if (byte < 0x80) return value;
      }
    };
    while (p < end) {
      const tag = varint();
      const field = Math.floor(tag / 8);
      const wire = tag & 7;
      if (wire === 0) varint();
      else if (wire === 1) p += 8;
      else if (wire === 5) p += 4;
      else if (wire === 2) {
        const length = varint();
        yield [field, p, p + length];
        p += length;
      } else throw new Error(`not an ONNX model (protobuf wire type ${wire})`);
    }
    if (p !== end) throw new Error("not an ONNX model (truncated protobuf)");
  };
  const meta = {};
  for (const [field, start, end] of fields(0, buf.length)) {
    if (field !== 14) continue;
    let key = "", value = "";
    for (const [f, s, e] of fields(start, end)) {
      if (f === 1) key = text.decode(buf.subarray(s, e));
      if (f === 2) value = text.decode(buf.subarray(s, e));
    }
    meta[key] = value;
  }
  return meta;
}

// ---- the model -------------------------------------------------------------------------------------

/**
 * An exported texture network (`texport export NAME.onnx`), from its bytes, ready to sample:
 * {session, meta, multiple, minSide, channels, inputName, outputName}.
 */
export async function loadTexnet(bytes, { threads = 1 } = {}) {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const meta = readMetadata(buf);
  if (meta["texport.kind"] !== "texnet" || meta["texport.graph"]) {
    const what = meta["texport.kind"] === "solid" && !meta["texport.graph"] ? "a solid texture network: the Solid tab (tab=solid) shows it"
      : meta["texport.kind"] ? `a ${meta["texport.kind"]} graph` : "not a texport graph";
    throw new Error(`the Texture tab runs texture networks exported with texport export (${what})`);
  }
  ort.env.wasm.numThreads = threads; // more than 1 needs a cross-origin isolated page in a browser
  const session = await ort.InferenceSession.create(buf, { executionProviders: ["wasm"] });
  const multiple = parseInt(meta["texport.size_multiple"] ?? "16", 10); // handle._grid
  const minSide = parseInt(meta["texport.min_side"] ?? String(multiple), 10);
  const channels = session.inputMetadata?.[0]?.shape?.[1]; // noise [batch, K*C, height, width]
  if (!Number.isInteger(channels)) throw new Error("the graph's noise input has no fixed channel count");
  return { session, meta, multiple, minSide, channels, inputName: session.inputNames[0], outputName: session.outputNames[0] };
}

/**
 * One image: noise of the whole grid for `seed`, the graph, then its top-left width x height
 * clamped to [0, 1] (backends.sample_with). Returns {data: Float32Array [3, height, width], width,
 * height, plan}. Pass a plan from planSize, or a size (then planned as texport does).
 */
export async function sample(model, size, seed = 0, { tileable = false, snap = false } = {}) {
  const plan = typeof size === "object" && "gridWidth" in size ? size : planSize(size, model.multiple, model.minSide, tileable, snap);
  const { gridWidth: gw, gridHeight: gh, width, height } = plan;
  const noise = noiseField(seed, model.channels, gh, gw);
  const feeds = { [model.inputName]: new ort.Tensor("float32", noise, [1, model.channels, gh, gw]) };
  const result = await model.session.run(feeds);
  const image = result[model.outputName];
  const full = image.data; // [1, 3, gh, gw]
  const data = new Float32Array(3 * height * width);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = full[(c * gh + y) * gw + x];
        data[(c * height + y) * width + x] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  image.dispose?.();
  return { data, width, height, plan };
}

// ---- 8 bits (texport/images.py to_uint8) -------------------------------------------------------------

/**
 * [3, H, W] floats -> [3, H, W] bytes as a saved PNG holds them: clamp, times 255 in float32 (one
 * product rounded to float32, as torch computes it), round half to even (torch.round).
 */
export function toUint8(data) {
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i] < 0 ? 0 : data[i] > 1 ? 1 : data[i];
    const scaled = Math.fround(v * 255);
    let r = Math.round(scaled);
    if (r - scaled === 0.5 && r % 2 !== 0) r -= 1; // a tie: Math.round went up to an odd value
    out[i] = r;
  }
  return out;
}

/** [3, H, W] bytes -> RGBA bytes for a canvas ImageData (opaque). */
export function toRGBA(bytes, width, height) {
  const n = width * height;
  const rgba = new Uint8ClampedArray(4 * n);
  for (let i = 0; i < n; i++) {
    rgba[4 * i] = bytes[i];
    rgba[4 * i + 1] = bytes[n + i];
    rgba[4 * i + 2] = bytes[2 * n + i];
    rgba[4 * i + 3] = 255;
  }
  return rgba;
}
