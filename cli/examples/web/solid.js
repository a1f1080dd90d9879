// A texport solid texture network in JavaScript: the 3D noise contract and one run of the exported
// graph (`texport export NAME.onnx --model pebbles-solid`) with onnxruntime-web, for the page's Solid
// tab and for node.mjs. Each function mirrors a piece of texport:
//   noiseVolume   <- texport/textures/noise.py noise_volume (the 3D contract, bit for bit)
//   planVolume    <- texport/scale/volumes.py check_request for a tileable cube
//   sampleVolume  <- SolidNetwork.forward, the graph exported: the periodic volume of the noise's
//                    sides, which is `texport synth MODEL --size NxNxN --tileable --seed S`
//                    (texport computes that one block by block, with every noise coordinate taken
//                    modulo N: the same volume, to rounding)
import * as ort from "onnxruntime-web";

import { fillPlane, hash32, readMetadata, seedUint32 } from "./texnet.js";

/**
 * The window [z0, z0+depth) x [y0, y0+height) x [x0, x0+width) of the 3D noise field for `batch`
 * items (item b uses seed + b): a Float32Array laid out [batch, channels, depth, height, width], as
 * noise.noise_volume. The 2D field's hash chain with z one hash deeper:
 * hash32(x + hash32(y + hash32(z + hash32(channel + hash32(seed))))).
 */
export function noiseVolume(seed, channels, depth, height, width, x0 = 0, y0 = 0, z0 = 0, batch = 1) {
  const out = new Float32Array(batch * channels * depth * height * width);
  let i = 0;
  for (let b = 0; b < batch; b++) {
    const hs = hash32(seedUint32(seed) + b);
    for (let c = 0; c < channels; c++) {
      const hc = hash32(c + hs);
      for (let z = 0; z < depth; z++) {
        // negative coordinates: their two's-complement bits
        i = fillPlane(out, i, hash32(((z0 + z) >>> 0) + hc), height, width, x0, y0);
      }
    }
  }
  return out;
}

/** WebGL2 guarantees 3D textures of 256 a side, but the run holds about 1 GB at 128 and would need 8 at 256 (WASM: 4 at most). */
export const MAX_SIDE = 128;

/**
 * The side of the cube to compute from the size field ("64"): the graph's volume wraps around its
 * sides, which must then be multiples of the model's grid (as `texport synth --tileable` requires).
 */
export function planVolume(size, multiple, limit = MAX_SIDE) {
  const text = String(size).trim();
  if (!/^\d+$/.test(text)) {
    throw new Error(`the Solid tab's size is the cube's side N (a multiple of ${multiple}), got ${JSON.stringify(text)}`);
  }
  const side = parseInt(text, 10);
  if (side < multiple || side % multiple) {
    throw new Error(`the cube's side must be a multiple of ${multiple} (the volume wraps around, as with texport synth --tileable), got ${side}`);
  }
  if (side > limit) throw new Error(`the cube's side is at most ${limit} here, got ${side}`);
  return side;
}

/**
 * An exported solid texture network from its bytes, ready to sample: {session, meta, multiple,
 * channels, inputName, outputName}. Anything else (a texture network, the block graphs of texport's
 * volume cache) is refused with a one-line reason.
 */
export async function loadSolid(bytes, { threads = 1 } = {}) {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const meta = readMetadata(buf);
  const kind = meta["texport.kind"];
  if (kind !== "solid" || meta["texport.graph"]) {
    const what = kind === "texnet" ? "a texture network (2D): the Texture tab shows it"
      : meta["texport.graph"] ? `texport's internal ${meta["texport.graph"]} graph` : kind ? `a ${kind} graph` : "not a texport graph";
    throw new Error(`the Solid tab runs solid texture networks (texport export NAME.onnx --model pebbles-solid), and this is ${what}`);
  }
  const multiple = parseInt(meta["texport.size_multiple"], 10);
  if (!Number.isInteger(multiple)) throw new Error("the solid graph has no texport.size_multiple in its metadata");
  ort.env.wasm.numThreads = threads; // more than 1 needs a cross-origin isolated page in a browser
  const session = await ort.InferenceSession.create(buf, { executionProviders: ["wasm"] });
  const channels = session.inputMetadata?.[0]?.shape?.[1]; // noise [batch, K*C, depth, height, width]
  if (!Number.isInteger(channels)) throw new Error("the graph's noise input has no fixed channel count");
  return { session, meta, multiple, channels, inputName: session.inputNames[0], outputName: session.outputNames[0] };
}

/**
 * The periodic cube of side `side` for `seed`: the noise of [0, side)^3 through the graph, clamped to
 * [0, 1]. Returns {data: Float32Array [3, side, side, side] (channel, z, y, x), side}.
 */
export async function sampleVolume(model, side, seed = 0) {
  const noise = noiseVolume(seed, model.channels, side, side, side);
  const feeds = { [model.inputName]: new ort.Tensor("float32", noise, [1, model.channels, side, side, side]) };
  const volume = (await model.session.run(feeds))[model.outputName];
  const data = Float32Array.from(volume.data, (v) => (v < 0 ? 0 : v > 1 ? 1 : v)); // a copy: the tensor is freed
  volume.dispose?.();
  return { data, side };
}
