#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

#include "adfw/core/error.hpp"
#include "adfw/core/safetensors.hpp"
#include "support.hpp"

namespace st = adfw::safetensors;
namespace fs = std::filesystem;

namespace {

std::vector<unsigned char> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A hand-built file: header text chosen by the test, data bytes appended.
std::vector<unsigned char> raw_file(const std::string& header, const std::vector<unsigned char>& data) {
  std::vector<unsigned char> out(8);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(n >> (8 * i));
  for (char c : header) out.push_back(static_cast<unsigned char>(c));  // (GCC 12 misreads an insert here)
  if (!data.empty()) out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// What reading `bytes` as a safetensors file reports.
std::string parse_error(const std::vector<unsigned char>& bytes) {
  return adfw::test::error_of<adfw::Error>([&] { st::File::from_bytes(bytes, "probe.safetensors"); });
}

}  // namespace

TEST_CASE("safetensors reads the metrics fixture", "[safetensors]") {
  ADFW_REQUIRE_SHARED(file, "fixtures/metrics/case_a.safetensors");
  const auto f = st::File::open(file);
  CHECK(f.names() == std::vector<std::string>{"anomaly_maps", "masks", "labels", "image_scores"});
  const auto& maps = f.at("anomaly_maps");
  CHECK(maps.dtype == st::DType::F32);
  CHECK(maps.shape == std::vector<int64_t>{48, 96, 112});
  CHECK(f.at("masks").dtype == st::DType::U8);
  CHECK(f.at("labels").dtype == st::DType::I64);
  // The fixture's README: image_scores = max of each map, masks are 0/1, labels 0/1.
  const auto m = f.to_float("anomaly_maps");
  const auto s = f.to_float("image_scores");
  REQUIRE(s.size() == 48);
  for (int i = 0; i < 48; ++i) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < 96 * 112; ++j) mx = std::max(mx, m[static_cast<std::size_t>(i) * 96 * 112 + j]);
    CHECK(s[i] == mx);
  }
  const auto labels = f.to_int64("labels");
  for (auto l : labels) CHECK((l == 0 || l == 1));
  const auto masks = f.to_int64("masks");
  for (std::size_t i = 0; i < masks.size(); i += 97) CHECK((masks[i] == 0 || masks[i] == 1));
  CHECK_THROWS_AS(f.to_int64("anomaly_maps"), adfw::Error);
  try {
    f.at("anomaly_map");
    FAIL("expected an error");
  } catch (const adfw::Error& e) {
    const std::string w = e.what();
    CHECK(w.find("did you mean 'anomaly_maps'") != std::string::npos);
    CHECK(w.find("image_scores") != std::string::npos);
  }
}

TEST_CASE("safetensors round-trips through write()", "[safetensors]") {
  ADFW_REQUIRE_SHARED(file, "fixtures/metrics/case_a.safetensors");
  const auto f = st::File::open(file);
  std::vector<st::TensorData> tensors;
  for (const auto& name : f.names()) {
    const auto& v = f.at(name);
    tensors.push_back({name, v.dtype, v.shape, std::vector<unsigned char>(v.data, v.data + v.nbytes)});
  }
  const fs::path out = adfw::test::temp_dir("st_roundtrip") / "copy.safetensors";
  st::write(out, tensors, {{"source", "case_a"}, {"note", "copy"}});
  const auto bytes = read_bytes(out);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  CHECK((8 + n) % 8 == 0);
  const auto g = st::File::open(out);
  CHECK(g.names() == f.names());
  CHECK(g.metadata().at("source") == "case_a");
  for (const auto& name : f.names()) {
    const auto& a = f.at(name);
    const auto& b = g.at(name);
    CHECK(a.shape == b.shape);
    CHECK(a.dtype == b.dtype);
    REQUIRE(a.nbytes == b.nbytes);
    CHECK(std::memcmp(a.data, b.data, a.nbytes) == 0);
  }
  // No temporary file is left next to the output.
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(out.parent_path())) ++files;
  CHECK(files == 1);
}

TEST_CASE("safetensors converts half, bfloat16 and integer types", "[safetensors]") {
  // IEEE binary16 bit patterns and their exact values.
  const std::vector<uint16_t> half = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x8000, 0x3555};
  const std::vector<float> half_expected = {1.f, -2.f, 65504.f, std::ldexp(1.f, -24), std::ldexp(1.f, -14),
                                            std::numeric_limits<float>::infinity(),
                                            -std::numeric_limits<float>::infinity(), -0.f,
                                            0.333251953125f};
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc040, 0x0000};
  std::vector<st::TensorData> t;
  t.push_back({"h", st::DType::F16, {9}, {}});
  t.back().bytes.resize(18);
  std::memcpy(t.back().bytes.data(), half.data(), 18);
  t.push_back({"b", st::DType::BF16, {3}, {}});
  t.back().bytes.resize(6);
  std::memcpy(t.back().bytes.data(), bf16.data(), 6);
  const std::vector<int16_t> i16 = {-7, 300};
  t.push_back(st::make_tensor<int16_t>("i", {2}, i16.data(), 2));
  const bool flags[3] = {true, false, true};
  t.push_back(st::make_tensor<bool>("flags", {3}, flags, 3));
  const double d[2] = {0.5, -1e10};
  t.push_back(st::make_tensor<double>("d", {1, 2}, d, 2));
  t.push_back({"empty", st::DType::F32, {0, 4}, {}});
  const fs::path out = adfw::test::temp_dir("st_types") / "types.safetensors";
  st::write(out, t);
  const auto f = st::File::open(out);
  const auto h = f.to_float("h");
  REQUIRE(h.size() == half_expected.size());
  for (std::size_t i = 0; i < h.size(); ++i) CHECK(h[i] == half_expected[i]);
  CHECK(std::signbit(h[7]));
  CHECK(f.to_float("b") == std::vector<float>{1.f, -3.f, 0.f});
  CHECK(f.to_int64("i") == std::vector<int64_t>{-7, 300});
  CHECK(f.to_float("i") == std::vector<float>{-7.f, 300.f});
  CHECK(f.to_int64("flags") == std::vector<int64_t>{1, 0, 1});
  CHECK(f.to_float("d") == std::vector<float>{0.5f, -1e10f});
  CHECK(f.at("empty").numel() == 0);
  CHECK(f.to_float("empty").empty());
  CHECK(f.names() == std::vector<std::string>{"h", "b", "i", "flags", "d", "empty"});
}

TEST_CASE("safetensors rejects malformed files with located errors", "[safetensors]") {
  const std::vector<unsigned char> four(16, 0);
  CHECK(parse_error({1, 2, 3}).find("shorter than the 8-byte") != std::string::npos);
  {
    auto b = raw_file("{}", {});
    b[0] = 200;
    CHECK(parse_error(b).find("exceeds") != std::string::npos);
  }
  CHECK(parse_error(raw_file("{\"a\": {\"dtype\": \"F32\", ", {})).find("invalid JSON header at byte offset") !=
        std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"F31","shape":[4],"data_offsets":[0,16]}})", four))
            .find("unknown safetensors dtype 'F31'") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", four))
            .find("tensor 'a': 16 data bytes but shape [3]") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                          four))
            .find("overlaps") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", four))
            .find("beyond the end of the file") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four))
            .find("unaccounted") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", four))
            .find("hole") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", four))
            .find("negative") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", four))
            .find("data bytes but shape") != std::string::npos);
  CHECK(parse_error(raw_file(R"({"__metadata__":{"k":1}})", {})).find("__metadata__.k") != std::string::npos);
  CHECK(parse_error(raw_file("[1,2]", {})).find("must be an object") != std::string::npos);
  // Errors from open() name the file.
  const fs::path bad = adfw::test::temp_dir("st_bad") / "bad.safetensors";
  { std::ofstream(bad, std::ios::binary) << "abc"; }
  try {
    st::File::open(bad);
    FAIL("expected an error");
  } catch (const adfw::Error& e) {
    CHECK(std::string(e.what()).find(bad.string()) != std::string::npos);
  }
  CHECK_THROWS_AS(st::File::open(bad.parent_path() / "missing.safetensors"), adfw::Error);
  // The writer refuses inconsistent input.
  CHECK_THROWS_AS(st::write(bad, {{"x", st::DType::F32, {3}, std::vector<unsigned char>(8)}}), adfw::Error);
  CHECK_THROWS_AS(st::write(bad, {{"x", st::DType::U8, {1}, {1}}, {"x", st::DType::U8, {1}, {2}}}), adfw::Error);
}

TEST_CASE("safetensors survives random corruption (fuzz)", "[safetensors]") {
  std::vector<st::TensorData> t;
  const std::vector<float> a = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  t.push_back(st::make_tensor<float>("alpha", {2, 3}, a.data(), a.size()));
  const std::vector<int64_t> b = {7, -8};
  t.push_back(st::make_tensor<int64_t>("beta", {2}, b.data(), b.size()));
  const std::vector<uint8_t> c = {1, 0, 1, 1, 0};
  t.push_back(st::make_tensor<uint8_t>("gamma", {5}, c.data(), c.size()));
  const fs::path file = adfw::test::temp_dir("st_fuzz") / "valid.safetensors";
  st::write(file, t, {{"k", "v"}});
  const auto valid = read_bytes(file);
  std::mt19937 rng(12345);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto bytes = valid;
    const int kind = iter % 4;
    if (kind == 0) {
      bytes.resize(rng() % bytes.size());
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) {
        // Bias mutations towards the header, where the structure lives.
        const std::size_t limit = (kind == 3) ? bytes.size() : std::min<std::size_t>(bytes.size(), 8 + 200);
        bytes[rng() % limit] = static_cast<unsigned char>(kind == 2 ? "0123456789,:[]{}\"-e"[rng() % 19] : rng());
      }
    }
    try {
      const auto f = st::File::from_bytes(std::move(bytes), "fuzz");
      for (const auto& n : f.names()) {
        const auto& v = f.at(n);
        CHECK(v.nbytes == static_cast<std::size_t>(v.numel()) * st::dtype_size(v.dtype));
        (void)f.to_float(n);
      }
      ++loaded;
    } catch (const adfw::Error&) {
      ++rejected;
    }
  }
  CHECK(rejected > 1000);
  CHECK(loaded > 0);
}
