// Checkpoint loading: strict key/shape checking, damaged files, and a mutation fuzz of the
// safetensors path. Every failure must be an adfw::Error naming the file, never a crash or a
// partly loaded module.
#include <fstream>
#include <random>

#include "adfw/backbone/resnet.hpp"
#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "support.hpp"

using adfw::test::error_of;

namespace fs = std::filesystem;

namespace {

std::vector<char> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

struct Small : torch::nn::Module {
  Small() {
    fc = register_module("fc", torch::nn::Linear(4, 3));
    bn = register_module("bn", torch::nn::BatchNorm1d(3));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

}  // namespace

TEST_CASE("state dicts round-trip through safetensors in every float dtype", "[checkpoint]") {
  const auto dir = adfw::test::temp_dir("ckpt_roundtrip");
  adfw::StateDict s;
  s["a.f32"] = torch::tensor({1.5f, -2.25f, 3.0f});
  s["b.f16"] = torch::tensor({0.5f, 1.0f / 3.0f}).to(torch::kFloat16);
  s["c.bf16"] = torch::tensor({-7.0f, 1.0f / 3.0f}).to(torch::kBFloat16);
  s["d.i64"] = torch::tensor({int64_t{5}});
  adfw::save_state_dict(s, dir / "x.safetensors", {{"note", "test"}});
  const auto back = adfw::load_state_dict(dir / "x.safetensors");
  REQUIRE(back.size() == 4);
  for (const auto& [k, t] : s) {
    CHECK(back.at(k).scalar_type() == t.scalar_type());
    CHECK(back.at(k).equal(t));
  }
  // Loading converts half-precision values into float32 parameters exactly.
  Small m;
  adfw::StateDict half;
  for (const auto& [k, t] : adfw::state_dict_of(m)) half[k] = t.to(torch::kFloat16);
  adfw::save_state_dict(half, dir / "half.safetensors");
  Small n;
  adfw::load_checkpoint(n, dir / "half.safetensors");
  CHECK(n.fc->weight.equal(m.fc->weight.to(torch::kFloat16).to(torch::kFloat32)));
  CHECK(n.fc->weight.scalar_type() == torch::kFloat32);
}

TEST_CASE("strict loading reports missing, unexpected and mismatched keys naming the file", "[checkpoint]") {
  ADFW_REQUIRE_SHARED(pth, "fixtures/resnet/resnet18.pth");
  const auto dir = adfw::test::temp_dir("ckpt_strict");
  adfw::StateDict s = adfw::load_state_dict(pth);
  REQUIRE(s.count("layer1.0.conv1.weight"));
  s.erase("layer1.0.conv1.weight");
  s["fc.weight"] = torch::zeros({10, 512});
  s["extra.thing"] = torch::zeros({1});
  const auto bad = dir / "bad.safetensors";
  adfw::save_state_dict(s, bad);

  auto net = adfw::ResNet(adfw::ResNetConfig::for_arch("resnet18"));
  const torch::Tensor before = net->named_parameters()["conv1.weight"].clone();
  const std::string msg = error_of<adfw::Error>([&] { adfw::load_checkpoint(*net, bad); });
  CHECK_THAT(msg, Catch::Contains(bad.string()));
  CHECK_THAT(msg, Catch::Contains("1 missing key"));
  CHECK_THAT(msg, Catch::Contains("layer1.0.conv1.weight"));
  CHECK_THAT(msg, Catch::Contains("1 unexpected key"));
  CHECK_THAT(msg, Catch::Contains("extra.thing"));
  CHECK_THAT(msg, Catch::Contains("fc.weight: file (10, 512) vs model (1000, 512)"));
  // Nothing was copied.
  CHECK(net->named_parameters()["conv1.weight"].equal(before));

  // Non-strict loading still refuses shape mismatches but accepts missing/unexpected keys.
  CHECK_THROWS_WITH(adfw::load_checkpoint(*net, bad, false), Catch::Contains("fc.weight"));
  s["fc.weight"] = torch::ones({1000, 512});
  adfw::save_state_dict(s, bad);
  adfw::load_checkpoint(*net, bad, false);
  CHECK(net->named_parameters()["fc.weight"].equal(torch::ones({1000, 512})));

  // The backbone surfaces the same report.
  adfw::ResNetOptions o;
  o.arch = "resnet18";
  o.weights = bad.string();
  CHECK_THROWS_WITH(adfw::ResNetBackbone(o), Catch::Contains("layer1.0.conv1.weight"));
  // A checkpoint of another depth names the blocks it lacks.
  o.arch = "resnet34";
  o.weights = pth.string();
  CHECK_THROWS_WITH(adfw::ResNetBackbone(o), Catch::Contains("layer3.5.conv1.weight"));
}

TEST_CASE("truncated and corrupted checkpoint files fail with the file named", "[checkpoint]") {
  ADFW_REQUIRE_SHARED(pth, "fixtures/resnet/resnet18.pth");
  ADFW_REQUIRE_SHARED(st, "fixtures/dinov2/dinov2_vits14_depth2.safetensors");
  const auto dir = adfw::test::temp_dir("ckpt_damaged");
  const std::vector<char> pth_bytes = slurp(pth), st_bytes = slurp(st);

  for (const std::size_t keep : {std::size_t{0}, std::size_t{1}, std::size_t{100}, pth_bytes.size() / 2, pth_bytes.size() - 10}) {
    const auto p = dir / ("trunc_" + std::to_string(keep) + ".pth");
    spit(p, std::vector<char>(pth_bytes.begin(), pth_bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    CHECK_THAT(error_of<adfw::Error>([&] { adfw::load_state_dict(p); }), Catch::Contains(p.string()));
  }
  for (const std::size_t keep : {std::size_t{4}, std::size_t{8}, std::size_t{200}, st_bytes.size() - 1}) {
    const auto p = dir / ("trunc_" + std::to_string(keep) + ".safetensors");
    spit(p, std::vector<char>(st_bytes.begin(), st_bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    CHECK_THAT(error_of<adfw::Error>([&] { adfw::load_state_dict(p); }), Catch::Contains(p.string()));
  }
  // Corrupted JSON header.
  std::vector<char> broken = st_bytes;
  broken[8] = 'X';
  broken[20] = '\x01';
  const auto p = dir / "header.safetensors";
  spit(p, broken);
  CHECK_THAT(error_of<adfw::Error>([&] { adfw::load_state_dict(p); }), Catch::Contains(p.string()));
  // A header length larger than the file.
  broken = st_bytes;
  broken[5] = '\x7f';
  spit(p, broken);
  CHECK_THAT(error_of<adfw::Error>([&] { adfw::load_state_dict(p); }), Catch::Contains(p.string()));
  CHECK_THAT(error_of<adfw::Error>([&] { adfw::load_state_dict(dir / "absent.pth"); }), Catch::Contains("not found"));
}

TEST_CASE("random mutations of a checkpoint never crash the loader", "[checkpoint]") {
  const auto dir = adfw::test::temp_dir("ckpt_fuzz");
  Small m;
  adfw::save_checkpoint(m, dir / "ok.safetensors");
  const std::vector<char> good = slurp(dir / "ok.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(good[i]);
  REQUIRE(header_len + 8 < good.size());
  std::mt19937 rng(12345);
  int rejected = 0, loaded = 0, data_only = 0;
  const auto p = dir / "mut.safetensors";
  for (int iter = 0; iter < 400; ++iter) {
    std::vector<char> bytes = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      // Mostly the header (8-byte length + JSON), where the parser has to defend itself.
      const std::size_t span = (rng() % 5 == 0) ? bytes.size() : std::min<std::size_t>(bytes.size(), 8 + header_len);
      const std::size_t at = rng() % span;
      switch (rng() % 4) {
        case 0: bytes[at] = static_cast<char>(rng() & 0xff); break;
        case 1: bytes[at] ^= static_cast<char>(1u << (rng() % 8)); break;
        case 2: bytes.resize(at); break;
        default: bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<char>("{}[]\":,0-9e"[rng() % 11])); break;
      }
      if (bytes.empty()) break;
    }
    // A mutation that left the size and the header alone changed tensor values only: any bytes are
    // valid float32 values, so such a file must load.
    const bool header_intact = bytes.size() == good.size() &&
                               std::equal(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(8 + header_len), bytes.begin());
    data_only += header_intact;
    spit(p, bytes);
    try {
      Small target;
      adfw::load_checkpoint(target, p);
      ++loaded;
    } catch (const adfw::Error& e) {
      ++rejected;
      INFO("iteration " << iter);
      CHECK_FALSE(header_intact);
      CHECK_THAT(std::string(e.what()), Catch::Contains(p.string()));
    }
  }
  // Both outcomes occur: a loader that refused everything, or accepted everything, fails here.
  CHECK(rejected > 300);
  CHECK(data_only > 0);
  CHECK(loaded >= data_only);
}
