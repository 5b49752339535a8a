#include "adfw/train/loss.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "adfw/core/error.hpp"

namespace adfw {
namespace {

// Keys of a term table that belong to the term itself; every other key is the loss's option.
const std::vector<std::string> kTermKeys = {"type", "weight", "prediction", "target"};

std::string required_string(const toml::table& t, const toml::node& table_node, const std::string& path,
                            const char* key, const char* what) {
  const toml::node* n = t.get(key);
  if (!n) throw config_error(pos_of(table_node), path, std::string("missing key '") + key + "' (" + what + ")");
  std::string s;
  FieldIO<std::string>::read(*n, s, join_key(path, key));
  if (s.empty()) throw config_error(pos_of(*n), join_key(path, key), std::string("must not be empty (") + what + ")");
  return s;
}

std::string join_names(const std::vector<std::string>& names) {
  if (names.empty()) return "(none)";
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

template <class M>
std::vector<std::string> keys_of(const M& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

}  // namespace

LossTerm::LossTerm(std::string type, double weight, std::string prediction, std::string target)
    : loss_(std::move(type)), weight_(weight), prediction_(std::move(prediction)), target_(std::move(target)) {}

const Loss& LossTerm::loss() const {
  if (!built_) built_ = std::shared_ptr<Loss>(loss_.make());
  return *built_;
}

void LossTerm::read_toml(const toml::node& n, const std::string& path) {
  if (!n.is_table())
    throw config_error(pos_of(n), path,
                       "expected a loss term table (type, weight, prediction, target and the loss's options), got " +
                           describe_node(n));
  const toml::table& t = *n.as_table();
  const auto& reg = Registry<Loss>::instance();

  const toml::node* tn = t.get("type");
  if (!tn) throw config_error(pos_of(n), path, "missing key 'type' (which loss to use)." + suggest_from("", reg.names()));
  std::string type;
  FieldIO<std::string>::read(*tn, type, join_key(path, "type"));
  reg.at(type, pos_of(*tn), join_key(path, "type"));

  double weight = 1.0;
  if (const toml::node* wn = t.get("weight")) {
    FieldIO<double>::read(*wn, weight, join_key(path, "weight"));
    if (!std::isfinite(weight) || weight < 0)
      throw config_error(pos_of(*wn), join_key(path, "weight"), "the term's weight must be a finite number >= 0");
  }
  std::string prediction = required_string(t, n, path, "prediction", "the name of the model output to compare");
  std::string target = required_string(t, n, path, "target", "the name of the target to compare it with");

  // Unknown keys are checked here, on the original nodes, so the error keeps file:line:col.
  std::vector<std::string> known = kTermKeys;
  for (const auto& d : reg.describe(type)) known.push_back(d.name);
  for (const auto& [k, v] : t) {
    const std::string key(k.str());
    if (std::find(known.begin(), known.end(), key) == known.end())
      throw config_error(pos_of(v), join_key(path, key),
                         "unknown key '" + key + "' for a '" + type + "' loss term." + suggest_from(key, known));
  }

  // The loss's own options go to the slot. Copied TOML nodes lose their source position, so an
  // error about one of them gets the position of the original node back.
  toml::table options = t;
  for (const auto& k : kTermKeys)
    if (k != "type") options.erase(k);
  Slot<Loss> slot;
  try {
    slot.read_toml(options, path);
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    for (const auto& [k, v] : t) {
      const std::string key_path = join_key(path, std::string(k.str()));
      if (msg.rfind(key_path, 0) == 0 && msg.size() > key_path.size() &&
          std::string(":[.").find(msg[key_path.size()]) != std::string::npos) {
        const std::string where = pos_of(v).str();
        if (!where.empty()) throw ConfigError(where + ": " + msg);
      }
    }
    throw;
  }
  loss_ = std::move(slot);
  weight_ = weight;
  prediction_ = std::move(prediction);
  target_ = std::move(target);
  built_.reset();
}

toml::table LossTerm::to_toml() const {
  toml::table t;
  if (!loss_.empty()) t = loss_.to_toml();
  t.insert_or_assign("weight", weight_);
  t.insert_or_assign("prediction", prediction_);
  t.insert_or_assign("target", target_);
  return t;
}

std::string LossTerm::default_str() const {
  if (loss_.empty()) return "(required)";
  std::ostringstream os;
  os << "{ type = \"" << loss_.type() << "\", weight = " << weight_ << ", prediction = \"" << prediction_
     << "\", target = \"" << target_ << "\" }";
  return os.str();
}

LossValues evaluate_losses(const std::vector<LossTerm>& terms, const TensorMap& outputs, const TensorMap& targets,
                           const TensorMap& weights) {
  if (terms.empty()) throw Error("no loss terms to evaluate: the method's loss list is empty");
  LossValues out;
  std::vector<torch::Tensor> values;
  std::vector<std::string> labels;
  for (std::size_t i = 0; i < terms.size(); ++i) {
    const LossTerm& term = terms[i];
    std::string label = term.type() + ":" + term.prediction();
    // Two terms on the same output with the same loss stay apart in logs.
    const auto same = std::count(labels.begin(), labels.end(), label) +
                      std::count_if(labels.begin(), labels.end(), [&](const std::string& l) {
                        return l.rfind(label + "#", 0) == 0;
                      });
    if (same > 0) label += "#" + std::to_string(same + 1);
    const std::string name = "loss term " + std::to_string(i) + " ('" + label + "', target '" + term.target() + "')";

    const auto p = outputs.find(term.prediction());
    if (p == outputs.end())
      throw Error(name + ": the model output '" + term.prediction() +
                  "' does not exist; available outputs: " + join_names(keys_of(outputs)));
    const auto t = targets.find(term.target());
    if (t == targets.end())
      throw Error(name + ": the target '" + term.target() +
                  "' does not exist; available targets: " + join_names(keys_of(targets)));
    const auto w = weights.find(term.target());
    const torch::Tensor weight = w == weights.end() ? torch::Tensor() : w->second;

    torch::Tensor v;
    try {
      v = term.loss().forward(p->second, t->second, weight);
    } catch (const ConfigError&) {
      throw;
    } catch (const Error& e) {
      throw Error(name + " (prediction " + shape_str(p->second) + ", target " + shape_str(t->second) + "): " + e.what());
    } catch (const c10::Error& e) {
      throw Error(name + " (prediction " + shape_str(p->second) + ", target " + shape_str(t->second) +
                  "): " + e.what_without_backtrace());
    }
    if (v.numel() != 1) throw Error(name + ": the loss returned shape " + shape_str(v) + ", not a scalar");
    v = v.reshape({});
    out.total = out.total.defined() ? out.total + term.weight() * v : term.weight() * v;
    values.push_back(v.detach().to(torch::kFloat64));
    labels.push_back(label);
  }
  // One device-to-host copy for every term's value.
  const torch::Tensor host = torch::stack(values).to(torch::kCPU, torch::kFloat64).contiguous();
  const double* data = host.data_ptr<double>();
  for (std::size_t i = 0; i < labels.size(); ++i) out.terms.emplace_back(labels[i], data[i]);
  return out;
}

}  // namespace adfw
