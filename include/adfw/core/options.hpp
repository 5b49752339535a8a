// Options structs: every component's settings are a plain struct with defaults and a
// `fields(V&)` member that lists each field once, with its TOML key, doc string and an
// optional check. That one list drives parsing (with type checks and unknown-key errors),
// validation, writing the resolved config, and `adfw describe`.
//
//   struct PerlinOptions {
//     int min_scale = 0;         // defaults live here, once
//     double threshold = 0.5;
//     std::string mode = "fixed";
//     template <class V> void fields(V& v) {
//       v("min_scale", min_scale, "smallest lattice exponent k (scale 2^k)", Check::at_least(0));
//       v("threshold", threshold, "binarisation threshold of the noise", Check::range(0, 1));
//       v("mode", mode, "how the threshold is chosen", Check::one_of({"fixed", "drawn"}));
//     }
//   };
//
// Supported field types: bool, integers, float/double, std::string, std::vector<T> of any
// supported T, nested options structs (TOML tables), adfw::Slot<I> (a registered component,
// see registry.hpp), RawTable (free-form, e.g. [reference]).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <toml++/toml.h>

#include "adfw/core/error.hpp"

namespace adfw {

/// A constraint on a field's value, shown by `adfw describe` and enforced on parse.
struct Check {
  std::optional<double> lo, hi;
  bool lo_open = false;
  bool hi_open = false;
  bool odd = false;  ///< the value must be odd (a window centred on a position)
  std::vector<std::string> choices;

  static Check range(double lo, double hi) { Check c; c.lo = lo; c.hi = hi; return c; }
  static Check at_least(double lo) { Check c; c.lo = lo; return c; }
  static Check positive() { Check c; c.lo = 0; c.lo_open = true; return c; }
  static Check open_range(double lo, double hi) {
    Check c = range(lo, hi); c.lo_open = c.hi_open = true; return c;
  }
  static Check one_of(std::vector<std::string> c) { Check k; k.choices = std::move(c); return k; }
  static Check odd_at_least(double lo) { Check c = at_least(lo); c.odd = true; return c; }

  bool empty() const { return !lo && !hi && !odd && choices.empty(); }
  /// "in [0, 1]", "> 0", "odd, >= 1", "one of: a, b" ...
  std::string describe() const;
  /// "" when `x` satisfies the check, else what is wrong.
  std::string violation(double x) const;
  std::string violation(const std::string& s) const;
};

/// One documented option, as `adfw describe` prints it.
struct OptionDoc {
  std::string name;
  std::string type;
  std::string default_value;
  std::string doc;
  std::string constraint;
  std::vector<OptionDoc> children;  ///< nested tables and components
};

/// A free-form TOML table kept as written (for `[reference]` tables and similar).
struct RawTable {
  toml::table table;
};

/// An integer option that the code building a component may settle: `"auto"` in TOML (no value)
/// or a number. A method sets an "auto" input width from whatever feeds that part (a backbone's
/// taps, an adaptor) and checks a given number against it (Slot::settle in registry.hpp).
struct AutoInt {
  std::optional<int64_t> value;  ///< empty = "auto"

  AutoInt() = default;
  AutoInt(int64_t v) : value(v) {}  // NOLINT: `o.in_channels = 24` reads naturally
  static AutoInt automatic() { return {}; }
  bool is_auto() const { return !value.has_value(); }
  /// The number; ConfigError naming `key` while it is still "auto" (a part built on its own,
  /// outside the method that would settle it).
  int64_t get(const std::string& key) const;
  /// "auto" or the number, as written in TOML.
  std::string str() const { return value ? std::to_string(*value) : std::string("\"auto\""); }
  bool operator==(const AutoInt& o) const { return value == o.value; }
};

/// Position of a TOML node (file:line:col), for error messages.
SourcePos pos_of(const toml::node& n);
/// "integer 3", "string \"abc\"", "table" ... for type errors.
std::string describe_node(const toml::node& n);
/// Joins dotted key paths ("" + "a" = "a", "a" + "b" = "a.b").
inline std::string join_key(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

namespace detail {

struct ProbeVisitor {
  template <class... A>
  void operator()(A&&...) {}
};
template <class T, class = void>
struct has_fields : std::false_type {};
template <class T>
struct has_fields<T, std::void_t<decltype(std::declval<T&>().fields(std::declval<ProbeVisitor&>()))>>
    : std::true_type {};

template <class T, class = void>
struct is_custom_field : std::false_type {};
template <class T>
struct is_custom_field<T, std::void_t<typename T::adfw_custom_field>> : std::true_type {};

template <class T>
struct is_vector : std::false_type {};
template <class E, class A>
struct is_vector<std::vector<E, A>> : std::true_type {};

}  // namespace detail

template <class O>
void read_options(O& o, const toml::table& t, const std::string& path);
template <class O>
toml::table write_options(const O& o);
template <class O>
std::vector<OptionDoc> describe_options(const O& o = O{});

/// How a field type is read from, written to and described in TOML.
template <class T, class = void>
struct FieldIO;

template <>
struct FieldIO<bool> {
  static std::string type_name() { return "bool"; }
  static void read(const toml::node& n, bool& out, const std::string& path) {
    if (!n.is_boolean()) throw config_error(pos_of(n), path, "expected bool (true/false), got " + describe_node(n));
    out = n.as_boolean()->get();
  }
  static bool write(bool v) { return v; }
};

template <class T>
struct FieldIO<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static std::string type_name() { return "integer"; }
  static void read(const toml::node& n, T& out, const std::string& path) {
    if (!n.is_integer()) throw config_error(pos_of(n), path, "expected integer, got " + describe_node(n));
    const int64_t v = n.as_integer()->get();
    if constexpr (std::is_unsigned_v<T>) {
      if (v < 0) throw config_error(pos_of(n), path, "expected a non-negative integer, got " + std::to_string(v));
    } else {
      if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          v > static_cast<int64_t>(std::numeric_limits<T>::max()))
        throw config_error(pos_of(n), path, "integer " + std::to_string(v) + " is out of range");
    }
    out = static_cast<T>(v);
  }
  static int64_t write(T v) { return static_cast<int64_t>(v); }
};

template <class T>
struct FieldIO<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  static std::string type_name() { return "float"; }
  static void read(const toml::node& n, T& out, const std::string& path) {
    if (n.is_floating_point()) out = static_cast<T>(n.as_floating_point()->get());
    else if (n.is_integer()) out = static_cast<T>(n.as_integer()->get());
    else throw config_error(pos_of(n), path, "expected float, got " + describe_node(n));
  }
  static double write(T v) { return static_cast<double>(v); }
};

template <>
struct FieldIO<std::string> {
  static std::string type_name() { return "string"; }
  static void read(const toml::node& n, std::string& out, const std::string& path) {
    if (!n.is_string()) throw config_error(pos_of(n), path, "expected string, got " + describe_node(n));
    out = n.as_string()->get();
  }
  static std::string write(const std::string& v) { return v; }
};

template <>
struct FieldIO<RawTable> {
  static std::string type_name() { return "table (free-form)"; }
  static void read(const toml::node& n, RawTable& out, const std::string& path) {
    if (!n.is_table()) throw config_error(pos_of(n), path, "expected a table, got " + describe_node(n));
    out.table = *n.as_table();
  }
  static toml::table write(const RawTable& v) { return v.table; }
};

template <class E, class A>
struct FieldIO<std::vector<E, A>> {
  static std::string type_name() { return "array of " + FieldIO<E>::type_name(); }
  static void read(const toml::node& n, std::vector<E, A>& out, const std::string& path) {
    if (!n.is_array()) throw config_error(pos_of(n), path, "expected " + type_name() + ", got " + describe_node(n));
    std::vector<E, A> result;
    const auto& arr = *n.as_array();
    for (std::size_t i = 0; i < arr.size(); ++i) {
      E e{};
      FieldIO<E>::read(arr[i], e, path + "[" + std::to_string(i) + "]");
      result.push_back(std::move(e));
    }
    out = std::move(result);
  }
  static toml::array write(const std::vector<E, A>& v) {
    toml::array arr;
    for (const auto& e : v) arr.push_back(FieldIO<E>::write(e));
    return arr;
  }
};

template <class T>
struct FieldIO<T, std::enable_if_t<detail::has_fields<T>::value>> {
  static std::string type_name() { return "table"; }
  static void read(const toml::node& n, T& out, const std::string& path) {
    if (!n.is_table()) throw config_error(pos_of(n), path, "expected a table, got " + describe_node(n));
    read_options(out, *n.as_table(), path);
  }
  static toml::table write(const T& v) { return write_options(v); }
};

template <>
struct FieldIO<AutoInt> {
  static std::string type_name() { return "integer or \"auto\""; }
  static void read(const toml::node& n, AutoInt& out, const std::string& path) {
    if (n.is_string() && n.as_string()->get() == "auto") {
      out = AutoInt::automatic();
      return;
    }
    if (!n.is_integer())
      throw config_error(pos_of(n), path, "expected an integer or \"auto\", got " + describe_node(n));
    out = AutoInt(n.as_integer()->get());
  }
};

/// Custom field types (Slot<I>) declare `using adfw_custom_field = void;` and implement
/// `read_toml(node, path)`, `to_toml()`, `static type_name()` and `docs()`.
template <class T>
struct FieldIO<T, std::enable_if_t<detail::is_custom_field<T>::value>> {
  static std::string type_name() { return T::type_name(); }
  static void read(const toml::node& n, T& out, const std::string& path) { out.read_toml(n, path); }
  static auto write(const T& v) { return v.to_toml(); }
};

namespace detail {

template <class T>
std::string violation_of(const T& v, const Check& c) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return c.violation(static_cast<double>(v));
  } else if constexpr (std::is_same_v<T, std::string>) {
    return c.violation(v);
  } else if constexpr (std::is_same_v<T, AutoInt>) {
    return v.is_auto() ? std::string() : c.violation(static_cast<double>(*v.value));
  } else if constexpr (is_vector<T>::value) {
    for (const auto& e : v) {
      std::string w = violation_of(e, c);
      if (!w.empty()) return w;
    }
    return {};
  } else {
    return {};
  }
}

/// Reads fields from a table; remembers which keys it knows so the rest can be rejected.
struct Reader {
  const toml::table& table;
  std::string path;
  std::vector<std::string> known;

  template <class T>
  void operator()(const char* name, T& field, const char* /*doc*/, const Check& check = {}) {
    known.emplace_back(name);
    const toml::node* n = table.get(name);
    if (!n) return;  // keep the default
    const std::string key = join_key(path, name);
    FieldIO<T>::read(*n, field, key);
    if (!check.empty()) {
      const std::string bad = violation_of(field, check);
      if (!bad.empty()) throw config_error(pos_of(*n), key, bad);
    }
  }
  void reject_unknown(const std::vector<std::string>& also_allowed = {}) const;
};

struct Writer {
  toml::table out;
  template <class T>
  void operator()(const char* name, const T& field, const char* /*doc*/, const Check& = {}) {
    if constexpr (std::is_same_v<T, AutoInt>) {
      if (field.is_auto()) out.insert_or_assign(name, "auto");
      else out.insert_or_assign(name, *field.value);
    } else {
      out.insert_or_assign(name, FieldIO<T>::write(field));
    }
  }
};

std::string format_default(const toml::table& holder);

struct Describer {
  std::vector<OptionDoc> docs;
  template <class T>
  void operator()(const char* name, const T& field, const char* doc, const Check& check = {}) {
    OptionDoc d;
    d.name = name;
    d.type = FieldIO<T>::type_name();
    d.doc = doc;
    d.constraint = check.describe();
    if constexpr (has_fields<T>::value) {
      d.default_value = "(table)";
      d.children = describe_options(field);
    } else if constexpr (is_custom_field<T>::value) {
      d.default_value = field.default_str();
      d.children = field.docs();
    } else if constexpr (std::is_same_v<T, AutoInt>) {
      d.default_value = field.str();
    } else {
      toml::table holder;
      holder.insert_or_assign("v", FieldIO<T>::write(field));
      d.default_value = format_default(holder);
    }
    docs.push_back(std::move(d));
  }
};

}  // namespace detail

/// Fills `o` from `t`; unknown keys and wrong types are errors naming `path`.
template <class O>
void read_options(O& o, const toml::table& t, const std::string& path) {
  detail::Reader r{t, path, {}};
  o.fields(r);
  r.reject_unknown();
}

/// Like read_options, but tolerates the listed extra keys (e.g. a slot's "type").
template <class O>
void read_options_allowing(O& o, const toml::table& t, const std::string& path,
                           const std::vector<std::string>& allowed) {
  detail::Reader r{t, path, {}};
  o.fields(r);
  r.reject_unknown(allowed);
}

/// Every field of `o`, defaults included, as a TOML table.
template <class O>
toml::table write_options(const O& o) {
  detail::Writer w;
  const_cast<O&>(o).fields(w);  // fields() is shared with the mutable visitors
  return std::move(w.out);
}

template <class O>
std::vector<OptionDoc> describe_options(const O& o) {
  detail::Describer d;
  const_cast<O&>(o).fields(d);
  return std::move(d.docs);
}

/// An options struct with no fields.
struct NoOptions {
  template <class V>
  void fields(V&) {}
};

}  // namespace adfw
