// The component factory: one Registry<Interface> per family, filled by one-line
// registrations in plugin translation units:
//
//   ADFW_REGISTER(adfw::Backbone, adfw::ResNet, "resnet", "torchvision ResNet / WideResNet family");
//
// The interface names its family (`static constexpr const char* family = "backbone";`);
// the class has `using Options = ...;` (see options.hpp) and a constructor taking `const Options&`.
// Registries live in libadfw (not in each shared object), so plugins loaded with dlopen
// add to the same tables the CLI reads.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "adfw/core/options.hpp"

namespace adfw {

/// A registered component as `adfw list` shows it.
struct EntryInfo {
  std::string name;
  std::string summary;
  std::string origin;  ///< plugin file that registered it ("adfw" when built in to the library)
};

/// Family-independent view of a registry, for listing and describing.
class RegistryBase {
 public:
  virtual ~RegistryBase() = default;
  virtual std::string family() const = 0;
  virtual std::vector<EntryInfo> entries() const = 0;
  virtual bool contains(const std::string& name) const = 0;
  /// Options of one entry with types, defaults and docs. Throws ConfigError for unknown names.
  virtual std::vector<OptionDoc> describe(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
};

namespace detail {

/// Visits an options struct and settles its integer option `key` to `value` (see Slot::settle).
struct IntSettler {
  std::string key, value_source, path;
  int64_t value = 0;
  bool found = false;

  template <class T>
  void operator()(const char* name, T& field, const char* /*doc*/, const Check& = {}) {
    if (key != name) return;
    if constexpr (std::is_same_v<T, AutoInt>) {
      found = true;
      if (field.is_auto()) field = AutoInt(value);
      else check(*field.value);
    } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      found = true;
      check(static_cast<int64_t>(field));
    }
  }
  void check(int64_t given) const;
};

/// The single table of registries, owned by libadfw. Returns the registry for `family`,
/// creating it with `create` on first use.
RegistryBase& registry_for(const std::string& family, const std::function<RegistryBase*()>& create);
/// Records a problem found during static registration (reported after plugins load).
void record_registration_error(const std::string& message);
}  // namespace detail

/// Every registry, sorted by family name.
std::vector<RegistryBase*> all_registries();
/// Registration problems (duplicate names ...) seen so far; the CLI turns them into errors.
std::vector<std::string> registration_errors();
/// Name of the plugin being loaded right now ("adfw" outside plugin loading).
std::string current_origin();
void set_current_origin(const std::string& origin);

template <class I>
class Registry final : public RegistryBase {
 public:
  /// A parsed, validated options object of some entry, type-erased.
  using OptionsPtr = std::shared_ptr<void>;

  struct Entry {
    EntryInfo info;
    std::function<OptionsPtr()> default_options;
    std::function<OptionsPtr(const toml::table&, const std::string& path)> parse;
    std::function<toml::table(const void*)> write;
    std::function<std::vector<OptionDoc>()> describe;
    std::function<std::unique_ptr<I>(const void*)> make;
    /// A copy of the options with integer option `key` settled (detail::IntSettler); null when
    /// the entry has no such option.
    std::function<OptionsPtr(const void*, detail::IntSettler&)> settle;
  };

  static Registry& instance() {
    static Registry* self = static_cast<Registry*>(
        &detail::registry_for(I::family, [] { return static_cast<RegistryBase*>(new Registry()); }));
    return *self;
  }

  /// Registers class C under `name`. Duplicate names are recorded as errors (not thrown:
  /// this runs during static initialisation of a plugin).
  template <class C>
  bool add(const std::string& name, const std::string& summary) {
    using O = typename C::Options;
    if (entries_.count(name)) {
      detail::record_registration_error(std::string(I::family) + " '" + name + "' is registered twice: by " +
                                        entries_.at(name).info.origin + " and by " + current_origin() +
                                        ". Rename one of them.");
      return false;
    }
    Entry e;
    e.info = {name, summary, current_origin()};
    e.default_options = [] { return std::static_pointer_cast<void>(std::make_shared<O>()); };
    e.parse = [](const toml::table& t, const std::string& path) {
      auto o = std::make_shared<O>();
      read_options_allowing(*o, t, path, {"type"});
      return std::static_pointer_cast<void>(o);
    };
    e.write = [](const void* p) { return write_options(*static_cast<const O*>(p)); };
    e.describe = [] { return describe_options(O{}); };
    e.make = [](const void* p) -> std::unique_ptr<I> { return std::make_unique<C>(*static_cast<const O*>(p)); };
    e.settle = [](const void* p, detail::IntSettler& s) -> OptionsPtr {
      auto o = std::make_shared<O>(*static_cast<const O*>(p));
      o->fields(s);
      return s.found ? std::static_pointer_cast<void>(o) : nullptr;
    };
    entries_.emplace(name, std::move(e));
    return true;
  }

  const Entry& at(const std::string& name, const SourcePos& pos = {}, const std::string& path = {}) const {
    auto it = entries_.find(name);
    if (it == entries_.end())
      throw config_error(pos, path, "unknown " + family() + " '" + name + "'." + suggest_from(name, names()));
    return it->second;
  }

  /// Builds a component from a TOML table holding its options (without "type").
  std::unique_ptr<I> make(const std::string& name, const toml::table& options = {},
                          const std::string& path = {}) const {
    const Entry& e = at(name, {}, path);
    auto o = e.parse(options, path);
    return e.make(o.get());
  }

  std::string family() const override { return I::family; }
  std::vector<EntryInfo> entries() const override {
    std::vector<EntryInfo> out;
    for (const auto& [n, e] : entries_) out.push_back(e.info);
    return out;
  }
  bool contains(const std::string& name) const override { return entries_.count(name) > 0; }
  std::vector<OptionDoc> describe(const std::string& name) const override { return at(name).describe(); }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [n, e] : entries_) out.push_back(n);
    return out;
  }

 private:
  Registry() = default;
  std::map<std::string, Entry> entries_;
};

/// A component slot in an options struct: which registered type, with which options.
/// In TOML a slot is a table with a `type` key and the component's own options:
///
///   [method.backbone]
///   type = "resnet"
///   arch = "wide_resnet50_2"
///
/// Parsing validates the name (did-you-mean on typos) and the options at once, so a
/// config error surfaces before any work starts.
template <class I>
class Slot {
 public:
  using adfw_custom_field = void;

  Slot() = default;
  /// A slot defaulting to component `type` with its default options ("" = must be given).
  explicit Slot(std::string type) : type_(std::move(type)) {}

  const std::string& type() const { return type_; }
  bool empty() const { return type_.empty(); }

  /// The options object of the chosen component (default options if none were read).
  template <class O>
  const O& options() const {
    ensure_options();
    return *static_cast<const O*>(options_.get());
  }

  std::unique_ptr<I> make() const {
    if (type_.empty()) throw ConfigError(std::string("no ") + I::family + " type was given");
    ensure_options();
    return Registry<I>::instance().at(type_).make(options_.get());
  }

  /// The dotted key path this slot was read from ("" for a slot left at its default).
  const std::string& path() const { return path_; }

  /// Settles the chosen component's integer option `key` to `value`, which `source` decides (the
  /// part feeding it, e.g. "the backbone's taps layer2 + layer3"): "auto" takes the value; a number
  /// must equal it, else a ConfigError names the key path (`fallback_path` when the slot was not
  /// read from TOML) and both numbers. The slot then holds a settled copy of its options (copies
  /// of the slot made before keep theirs). Returns false when the component has no option `key`.
  bool settle(const std::string& key, int64_t value, const std::string& source, const std::string& fallback_path) {
    if (type_.empty()) return false;
    ensure_options();
    detail::IntSettler s{key, source, join_key(path_.empty() ? fallback_path : path_, key), value};
    auto settled = Registry<I>::instance().at(type_).settle(options_.get(), s);
    if (!settled) return false;
    options_ = std::move(settled);
    return true;
  }

  // --- options.hpp custom-field protocol ---
  static std::string type_name() { return std::string(I::family) + " component"; }
  void read_toml(const toml::node& n, const std::string& path) {
    path_ = path;
    if (!n.is_table()) throw config_error(pos_of(n), path, "expected a table with a 'type' key, got " + describe_node(n));
    const auto& t = *n.as_table();
    const auto& reg = Registry<I>::instance();
    if (const toml::node* tn = t.get("type")) {
      if (!tn->is_string())
        throw config_error(pos_of(*tn), join_key(path, "type"), "expected string, got " + describe_node(*tn));
      type_ = tn->as_string()->get();
      reg.at(type_, pos_of(*tn), join_key(path, "type"));
    } else if (type_.empty()) {
      throw config_error(pos_of(n), path, std::string("missing key 'type' (which ") + I::family +
                                              " to use)." + suggest_from("", reg.names()));
    }
    options_ = reg.at(type_).parse(t, path);
  }
  toml::table to_toml() const {
    ensure_options();
    toml::table t = Registry<I>::instance().at(type_).write(options_.get());
    t.insert_or_assign("type", type_);
    return t;
  }
  std::string default_str() const { return type_.empty() ? "(required)" : "\"" + type_ + "\""; }
  std::vector<OptionDoc> docs() const { return {}; }

 private:
  void ensure_options() const {
    if (!options_ && !type_.empty()) options_ = Registry<I>::instance().at(type_).default_options();
  }
  std::string type_;
  std::string path_;
  mutable std::shared_ptr<void> options_;
};

}  // namespace adfw

#define ADFW_CONCAT_INNER(a, b) a##b
#define ADFW_CONCAT(a, b) ADFW_CONCAT_INNER(a, b)
/// Registers `Class` (implementing `Interface`) as `Name`. One line in a plugin TU.
#define ADFW_REGISTER(Interface, Class, Name, Summary)                                      \
  [[maybe_unused]] static const bool ADFW_CONCAT(adfw_registered_, __COUNTER__) =          \
      ::adfw::Registry<Interface>::instance().template add<Class>(Name, Summary)
