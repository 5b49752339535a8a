// Helpers for parity tests against ../shared/fixtures/methods: tensors computed by the original
// Python code of each method. Tolerance convention of the fixtures' README: per tensor,
// max|port - ref| <= tol * max|ref| (1e-4 for forward values, maps, scores and losses; 1e-3 for
// gradients); integer tensors and thresholded masks exactly.
#pragma once

#include <string>

#include <torch/torch.h>

#include "adfw/core/checkpoint.hpp"
#include "adfw/train/loss.hpp"
#include "support.hpp"

namespace adfw::test {

/// Tolerances of ../shared/fixtures/README.md, section methods/.
constexpr double kForwardTol = 1e-4;
constexpr double kGradTol = 1e-3;

/// The fixture tensor `name`; FAILs (naming the file's tensor) when it is absent.
torch::Tensor fixture(const StateDict& io, const std::string& name);

/// The tensors whose names start with `prefix`, with the prefix removed (one sub-network's
/// state_dict out of a weights file that holds several).
StateDict strip_prefix(const StateDict& state, const std::string& prefix);

/// Copies `prefix`-ed tensors of `state` into `module` strictly (every key must match).
void load_prefixed(torch::nn::Module& module, const StateDict& state, const std::string& prefix);

/// max|got - want| / max|want| (0 when both are zero; infinite for a shape mismatch).
double relative_error(const torch::Tensor& got, const torch::Tensor& want);

/// CHECKs shapes and max|got - want| <= tol * max|want|; the message names `what` and the error.
void check_parity(const torch::Tensor& got, const torch::Tensor& want, const std::string& what,
                  double tol = kForwardTol);

/// The value of loss term `label` in `v`; FAILs naming it when absent.
double loss_term_value(const LossValues& v, const std::string& label);

/// A 0-dim float64 tensor (loss values against the fixtures' 0-dim tensors).
torch::Tensor scalar(double v);

/// Parameter `name` of `module` (its state_dict name); FAILs naming it when absent.
torch::Tensor parameter(const torch::nn::Module& module, const std::string& name);

/// CHECKs exact equality (integer tensors, binary masks).
void check_equal(const torch::Tensor& got, const torch::Tensor& want, const std::string& what);

}  // namespace adfw::test
