// texport_host: run a texture network exported by `texport export NAME.onnx` from C++, without Python.
//
//   texport_host MODEL.onnx SIZE SEED OUT [THREADS]
//
// SIZE is N or WxH (width x height, each side 16..8192, or TEXPORT_MAX_SIZE); SEED is any integer,
// taken modulo 2^32; THREADS is onnxruntime's intra-op thread count (default 0: onnxruntime's choice).
// It writes two files, the same image as `texport synth MODEL.onnx --size SIZE --seed SEED`:
//   OUT.f32  float32, little-endian, no header, planar RGB [3][H][W] (CHW, the graph's NCHW
//            output without the batch axis), values in [0, 1]
//   OUT.ppm  8-bit binary PPM (P6), quantized as texport's images.to_uint8:
//            round-half-to-even(clamp(v, 0, 1) * 255)
// Errors print one line on stderr and exit with 2, as texport does.
//
// The steps mirror texport's Python path (texport.backends.sample_with):
//   1. read the graph's metadata (texport.kind, texport.size_multiple, texport.min_side) and the
//      noise input's channel count through the onnxruntime API;
//   2. plan the size (texport/sizes.py plan_size): generate at the next multiple of size_multiple
//      (and at least min_side) on each side, then keep the top-left W x H;
//   3. make the noise [1, C, grid H, grid W] from the noise contract (texport/noise.py): channel c
//      at pixel (y, x) is lowbias32(x + lowbias32(y + lowbias32(c + lowbias32(seed)))) >> 8, times
//      2^-24. All C channels come at full resolution: the graph itself takes scale i as channels
//      3i..3i+2 subsampled by 2^i (texport.noise.scales);
//   4. run the graph, crop, clamp to [0, 1], write.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- the noise contract (texport/noise.py): unsigned 32-bit arithmetic, wrapping modulo 2^32 ------
uint32_t hash32(uint32_t v) {  // "lowbias32", Chris Wellons, hash-prospector (public domain)
  v ^= v >> 16;
  v *= 0x7feb352du;
  v ^= v >> 15;
  v *= 0x846ca68bu;
  v ^= v >> 16;
  return v;
}

// The window [0, height) x [0, width) of the field for one seed: [channels][height][width].
std::vector<float> noise_field(uint32_t seed, int64_t channels, int64_t height, int64_t width) {
  std::vector<float> noise(static_cast<size_t>(channels * height * width));
  const uint32_t hs = hash32(seed);
  size_t i = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const uint32_t hc = hash32(static_cast<uint32_t>(c) + hs);
    for (int64_t y = 0; y < height; ++y) {
      const uint32_t hy = hash32(static_cast<uint32_t>(y) + hc);
      for (int64_t x = 0; x < width; ++x)  // (h >> 8) < 2^24, so the float and the product are exact
        noise[i++] = static_cast<float>(hash32(static_cast<uint32_t>(x) + hy) >> 8) * (1.0f / 16777216.0f);
    }
  }
  return noise;
}

// ---- sizes (texport/sizes.py) ---------------------------------------------------------------------
int64_t parse_int(const std::string& text, const std::string& what) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw Error(what + " must be an integer, got '" + text + "'");
  return v;
}

std::array<int64_t, 2> parse_size(std::string text) {  // "512" or "1024x768" -> {width, height}
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return std::tolower(ch); });
  const size_t x = text.find('x');
  const std::string bad = "size must be N or WxH (e.g. 512 or 1024x768), got '" + text + "'";
  try {
    if (x == std::string::npos) {
      const int64_t side = parse_int(text, "size");
      return {side, side};
    }
    return {parse_int(text.substr(0, x), "size"), parse_int(text.substr(x + 1), "size")};
  } catch (const Error&) {
    throw Error(bad);
  }
}

void check_size(int64_t width, int64_t height) {
  const char* env = std::getenv("TEXPORT_MAX_SIZE");
  const int64_t limit = env && *env ? parse_int(env, "TEXPORT_MAX_SIZE") : 8192;
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  if (std::min(width, height) < 16)
    throw Error("size " + size + " is too small: each side must be at least 16 pixels");
  if (std::max(width, height) > limit)
    throw Error("size " + size + " exceeds the maximum side of " + std::to_string(limit) + " pixels");
}

// The smallest side >= side that is a multiple of `multiple` and >= min_side (sizes.grid_size).
int64_t grid_side(int64_t side, int64_t multiple, int64_t min_side) {
  return std::max(min_side, (side + multiple - 1) / multiple * multiple);
}

// ---- the graph's metadata ---------------------------------------------------------------------------
std::string metadata(const Ort::ModelMetadata& meta, const char* key, const std::string& fallback = "") {
  Ort::AllocatorWithDefaultOptions allocator;
  Ort::AllocatedStringPtr value = meta.LookupCustomMetadataMapAllocated(key, allocator);
  return value ? std::string(value.get()) : fallback;
}

// ---- output files -----------------------------------------------------------------------------------
void write_file(const std::string& path, const std::string& header, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << header;
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw Error("cannot write " + path);
}

// [3][H][W] floats as little-endian float32, whatever this machine's byte order.
void write_f32(const std::string& path, const std::vector<float>& chw) {
  std::vector<unsigned char> bytes(chw.size() * 4);
  for (size_t i = 0; i < chw.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &chw[i], 4);
    for (int k = 0; k < 4; ++k) bytes[4 * i + k] = static_cast<unsigned char>(bits >> (8 * k));
  }
  write_file(path, "", bytes);
}

// [3][H][W] floats in [0, 1] as an 8-bit P6 PPM (interleaved RGB rows, top to bottom).
void write_ppm(const std::string& path, const std::vector<float>& chw, int64_t width, int64_t height) {
  std::vector<unsigned char> rgb(chw.size());
  const size_t plane = static_cast<size_t>(width * height);
  for (size_t p = 0; p < plane; ++p)
    for (size_t c = 0; c < 3; ++c) {  // a float32 product, as torch; nearbyint rounds half to even, as torch.round
      const float v = std::clamp(chw[c * plane + p], 0.0f, 1.0f) * 255.0f;
      rgb[3 * p + c] = static_cast<unsigned char>(std::nearbyint(v));
    }
  write_file(path, "P6\n" + std::to_string(width) + " " + std::to_string(height) + "\n255\n", rgb);
}

int run(int argc, char** argv) {
  if (argc < 5 || argc > 6) {
    std::cerr << "usage: texport_host MODEL.onnx SIZE SEED OUT [THREADS]   (writes OUT.f32 and OUT.ppm)\n";
    return 2;
  }
  const std::string model_path = argv[1], out = argv[4];
  const auto [width, height] = parse_size(argv[2]);
  check_size(width, height);
  const uint32_t seed = static_cast<uint32_t>(parse_int(argv[3], "SEED"));  // modulo 2^32, two's complement
  const int threads = argc == 6 ? static_cast<int>(parse_int(argv[5], "THREADS")) : 0;

  // 1. the graph and what it says about itself
  // The onnxruntime wheel (1.31 here) has a telemetry client, which also writes a device ID under
  // ~/.cache/Microsoft; this example opts out, unless the caller set ORT_DISABLE_TELEMETRY.
  setenv("ORT_DISABLE_TELEMETRY", "1", 0);
  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "texport_host");
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(threads);
  std::ifstream probe(model_path, std::ios::binary);
  if (!probe) throw Error("ONNX file not found: " + model_path);
  Ort::Session session(env, model_path.c_str(), options);
  const Ort::ModelMetadata meta = session.GetModelMetadata();
  const std::string kind = metadata(meta, "texport.kind");
  if (kind != "texnet" || !metadata(meta, "texport.graph").empty())
    throw Error(model_path + " is not a texport texture-network graph (texport.kind '" + kind +
                "'; ProPO graphs also take a texture, which this host does not)");
  if (metadata(meta, "texport.noise_distribution").rfind("texport.noise/1:", 0) != 0)
    throw Error(model_path + " expects another noise than texport.noise/1");
  const int64_t multiple = parse_int(metadata(meta, "texport.size_multiple", "16"), "texport.size_multiple");
  const int64_t min_side = parse_int(metadata(meta, "texport.min_side", std::to_string(multiple)), "texport.min_side");
  if (session.GetInputCount() != 1 || session.GetOutputCount() != 1)
    throw Error(model_path + " should have one input (noise) and one output (image)");
  const std::vector<int64_t> in_shape = session.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape();
  if (in_shape.size() != 4 || in_shape[1] <= 0) throw Error(model_path + "'s noise input is not [batch, C, H, W]");
  const int64_t channels = in_shape[1];
  Ort::AllocatorWithDefaultOptions allocator;
  const Ort::AllocatedStringPtr in_name = session.GetInputNameAllocated(0, allocator);
  const Ort::AllocatedStringPtr out_name = session.GetOutputNameAllocated(0, allocator);

  // 2. the size plan: generate on the grid, keep the top-left width x height
  const int64_t grid_w = grid_side(width, multiple, min_side), grid_h = grid_side(height, multiple, min_side);

  // 3. the noise, batch item 0 of seed SEED
  std::vector<float> noise = noise_field(seed, channels, grid_h, grid_w);
  const std::array<int64_t, 4> shape{1, channels, grid_h, grid_w};
  const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const Ort::Value input = Ort::Value::CreateTensor<float>(cpu, noise.data(), noise.size(), shape.data(), shape.size());

  // 4. run, crop, clamp
  const char* in_names[] = {in_name.get()};
  const char* out_names[] = {out_name.get()};
  std::vector<Ort::Value> outputs = session.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
  const std::vector<int64_t> got = outputs[0].GetTensorTypeAndShapeInfo().GetShape();
  if (got != std::vector<int64_t>{1, 3, grid_h, grid_w})
    throw Error("the graph returned an image of an unexpected shape");
  const float* image = outputs[0].GetTensorData<float>();
  std::vector<float> chw(static_cast<size_t>(3 * height * width));
  size_t i = 0;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) chw[i++] = std::clamp(image[(c * grid_h + y) * grid_w + x], 0.0f, 1.0f);

  write_f32(out + ".f32", chw);
  write_ppm(out + ".ppm", chw, width, height);
  std::cout << metadata(meta, "texport.model", "?") << " (texport " << metadata(meta, "texport.version", "?")
            << ", onnxruntime " << Ort::GetVersionString() << "): " << width << "x" << height << " from a " << grid_w
            << "x" << grid_h << " grid, seed " << seed << " -> " << out << ".f32 (float32 [3][" << height << "]["
            << width << "]), " << out << ".ppm\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Ort::Exception& e) {
    std::cerr << "texport_host: onnxruntime: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "texport_host: " << e.what() << "\n";
  }
  return 2;
}
