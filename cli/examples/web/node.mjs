// The page's code (texnet.js, solid.js) in Node, for tests and for scripts:
//
//   node node.mjs sample MODEL.onnx SEED SIZE OUT [--tileable] [--snap]
//       writes OUT.f32 (the float image, [3, H, W] float32, little-endian), OUT.u8 (its 8-bit
//       conversion, [3, H, W]) and OUT.noise.f32 (the noise fed to the graph, [C, gridH, gridW]);
//       prints {"width", "height", "gridWidth", "gridHeight", "channels", "multiple", "seconds"}.
//   node node.mjs plan '[[SIZE, MULTIPLE, MINSIDE, TILEABLE, SNAP], ...]'
//       prints a JSON list: each case's size plan, or {"error": message}.
//   node node.mjs volume SOLID.onnx SEED SIDE OUT
//       the Solid tab's volume (solid.js): writes OUT.f32 ([3, D, H, W] float32, little-endian) and
//       OUT.u8 (its 8-bit conversion, [3, D, H, W]); prints {"side", "channels", "multiple", "seconds"}.
//   node node.mjs noise3 SEED CHANNELS WxHxD X,Y,Z OUT
//       writes OUT: the 3D noise window at origin (x, y, z), [C, D, H, W] float32.
import { readFileSync, writeFileSync } from "node:fs";

import { loadSolid, noiseVolume, planVolume, sampleVolume } from "./solid.js";
import { loadTexnet, noiseField, planSize, sample, toUint8 } from "./texnet.js";

const [command, ...args] = process.argv.slice(2);
const flag = (name) => args.includes(name);
const bytesOf = (typed) => new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);

if (command === "sample") {
  const [modelPath, seed, size, out] = args;
  const model = await loadTexnet(readFileSync(modelPath));
  const plan = planSize(size, model.multiple, model.minSide, flag("--tileable"), flag("--snap"));
  const start = performance.now();
  const image = await sample(model, plan, seed);
  const seconds = (performance.now() - start) / 1000;
  writeFileSync(`${out}.f32`, bytesOf(image.data));
  writeFileSync(`${out}.u8`, toUint8(image.data));
  writeFileSync(`${out}.noise.f32`, bytesOf(noiseField(seed, model.channels, plan.gridHeight, plan.gridWidth)));
  console.log(JSON.stringify({ ...plan, channels: model.channels, multiple: model.multiple, seconds }));
} else if (command === "plan") {
  const plan = ([size, multiple, minSide, tileable, snap]) => {
    try {
      return planSize(size, multiple, minSide, tileable, snap);
    } catch (error) {
      return { error: error.message };
    }
  };
  console.log(JSON.stringify(JSON.parse(args[0]).map(plan)));
} else if (command === "volume") {
  const [modelPath, seed, size, out] = args;
  const model = await loadSolid(readFileSync(modelPath));
  const side = planVolume(size, model.multiple);
  const start = performance.now();
  const volume = await sampleVolume(model, side, seed);
  const seconds = (performance.now() - start) / 1000;
  writeFileSync(`${out}.f32`, bytesOf(volume.data));
  writeFileSync(`${out}.u8`, toUint8(volume.data));
  console.log(JSON.stringify({ side, channels: model.channels, multiple: model.multiple, seconds }));
} else if (command === "noise3") {
  const [seed, channels, size, origin, out] = args;
  const [width, height, depth] = size.split("x").map(Number);
  const [x0, y0, z0] = origin.split(",").map(Number);
  writeFileSync(out, bytesOf(noiseVolume(seed, Number(channels), depth, height, width, x0, y0, z0)));
} else {
  console.error("usage: node node.mjs sample MODEL.onnx SEED SIZE OUT [--tileable] [--snap] | plan CASES_JSON | "
    + "volume SOLID.onnx SEED SIDE OUT | noise3 SEED CHANNELS WxHxD X,Y,Z OUT");
  process.exit(2);
}
