#include "adfw/core/registry.hpp"

#include <mutex>

namespace adfw {
namespace {
struct Tables {
  std::mutex mu;
  std::map<std::string, std::unique_ptr<RegistryBase>> registries;
  std::vector<std::string> errors;
  std::string origin = "adfw";
};
Tables& tables() {
  static Tables* t = new Tables();  // never destroyed: plugins may register during exit paths
  return *t;
}
}  // namespace

namespace detail {
RegistryBase& registry_for(const std::string& family, const std::function<RegistryBase*()>& create) {
  auto& t = tables();
  std::lock_guard<std::mutex> lock(t.mu);
  auto& slot = t.registries[family];
  if (!slot) slot.reset(create());
  return *slot;
}
void record_registration_error(const std::string& message) {
  auto& t = tables();
  std::lock_guard<std::mutex> lock(t.mu);
  t.errors.push_back(message);
}
void IntSettler::check(int64_t given) const {
  if (given != value)
    throw ConfigError(path + " = " + std::to_string(given) + ", but " + value_source + " " + std::to_string(value) +
                      " (set it to " + std::to_string(value) + ", or to \"auto\" to follow what feeds it)");
}
}  // namespace detail

std::vector<RegistryBase*> all_registries() {
  auto& t = tables();
  std::lock_guard<std::mutex> lock(t.mu);
  std::vector<RegistryBase*> out;
  for (auto& [f, r] : t.registries) out.push_back(r.get());
  return out;
}

std::vector<std::string> registration_errors() {
  auto& t = tables();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.errors;
}

std::string current_origin() {
  auto& t = tables();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.origin;
}
void set_current_origin(const std::string& origin) {
  auto& t = tables();
  std::lock_guard<std::mutex> lock(t.mu);
  t.origin = origin;
}

}  // namespace adfw
