#include "parity.hpp"

namespace adfw::test {

torch::Tensor fixture(const StateDict& io, const std::string& name) {
  const auto it = io.find(name);
  if (it == io.end()) FAIL("fixture tensor missing: " << name);
  return it->second;
}

StateDict strip_prefix(const StateDict& state, const std::string& prefix) {
  StateDict out;
  for (const auto& [k, v] : state)
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

void load_prefixed(torch::nn::Module& module, const StateDict& state, const std::string& prefix) {
  load_into(module, strip_prefix(state, prefix), "fixture weights '" + prefix + "*'", true);
}

double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  if (got.sizes() != want.sizes()) return std::numeric_limits<double>::infinity();
  const torch::Tensor g = got.detach().to(torch::kCPU).to(torch::kFloat64);
  const torch::Tensor w = want.detach().to(torch::kCPU).to(torch::kFloat64);
  if (w.numel() == 0) return 0.0;
  const double err = (g - w).abs().max().item<double>();
  const double scale = w.abs().max().item<double>();
  if (scale == 0.0) return err == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return err / scale;
}

double loss_term_value(const LossValues& v, const std::string& label) {
  for (const auto& [name, value] : v.terms)
    if (name == label) return value;
  FAIL("loss term missing: " << label);
  return 0;
}

torch::Tensor scalar(double v) { return torch::tensor(v, torch::kFloat64); }

torch::Tensor parameter(const torch::nn::Module& module, const std::string& name) {
  for (const auto& p : module.named_parameters())
    if (p.key() == name) return p.value();
  FAIL("no parameter " << name);
  return {};
}

void check_parity(const torch::Tensor& got, const torch::Tensor& want, const std::string& what, double tol) {
  INFO(what << ": got " << got.sizes() << ", reference " << want.sizes());
  REQUIRE(got.sizes() == want.sizes());
  const double rel = relative_error(got, want);
  INFO(what << ": max|port - ref| / max|ref| = " << rel << " (tolerance " << tol << ")");
  CHECK(torch::isfinite(got.detach().to(torch::kFloat64)).all().item<bool>());
  CHECK(rel <= tol);
}

void check_equal(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  INFO(what << ": got " << got.sizes() << ", reference " << want.sizes());
  REQUIRE(got.sizes() == want.sizes());
  const auto mismatches = (got.detach().to(torch::kCPU).to(torch::kFloat64) !=
                           want.detach().to(torch::kCPU).to(torch::kFloat64)).sum().item<int64_t>();
  INFO(what << ": " << mismatches << " of " << want.numel() << " elements differ");
  CHECK(mismatches == 0);
}

}  // namespace adfw::test
