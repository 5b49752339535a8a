#include "adfw/core/options.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace adfw {

namespace {
std::string num(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}
}  // namespace

std::string Check::describe() const {
  if (!choices.empty()) {
    std::string s = "one of: ";
    for (std::size_t i = 0; i < choices.size(); ++i) s += (i ? ", " : "") + choices[i];
    return s;
  }
  std::string s = odd ? "odd" : "";
  const auto add = [&s](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (lo && hi) add(std::string(lo_open ? "(" : "[") + num(*lo) + ", " + num(*hi) + (hi_open ? ")" : "]"));
  else if (lo) add(std::string(lo_open ? "> " : ">= ") + num(*lo));
  else if (hi) add(std::string(hi_open ? "< " : "<= ") + num(*hi));
  return s;
}

int64_t AutoInt::get(const std::string& key) const {
  if (!value)
    throw ConfigError(key + " = \"auto\" is settled by the method that feeds this part from its inputs; give a "
                      "number to build the part on its own");
  return *value;
}

std::string Check::violation(double x) const {
  if (std::isnan(x)) return "value is NaN; expected a number " + describe();
  const bool below = lo && (lo_open ? x <= *lo : x < *lo);
  const bool above = hi && (hi_open ? x >= *hi : x > *hi);
  if (below || above) return "value " + num(x) + " is out of range; expected " + describe();
  if (odd && std::fmod(x, 2.0) == 0.0) return "value " + num(x) + " is even; expected " + describe();
  return {};
}

std::string Check::violation(const std::string& s) const {
  if (choices.empty()) return {};
  if (std::find(choices.begin(), choices.end(), s) != choices.end()) return {};
  return "'" + s + "' is not allowed." + suggest_from(s, choices);
}

SourcePos pos_of(const toml::node& n) {
  SourcePos p;
  const auto& src = n.source();
  if (src.path) p.file = *src.path;
  p.line = static_cast<int>(src.begin.line);
  p.column = static_cast<int>(src.begin.column);
  return p;
}

std::string describe_node(const toml::node& n) {
  std::ostringstream os;
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "string \"" + std::string(n.as_string()->get()) + "\"";
    case toml::node_type::integer: return "integer " + std::to_string(n.as_integer()->get());
    case toml::node_type::floating_point: os << "float " << n.as_floating_point()->get(); return os.str();
    case toml::node_type::boolean: return std::string("bool ") + (n.as_boolean()->get() ? "true" : "false");
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

namespace detail {

void Reader::reject_unknown(const std::vector<std::string>& also_allowed) const {
  for (const auto& [k, v] : table) {
    const std::string key(k.str());
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    if (std::find(also_allowed.begin(), also_allowed.end(), key) != also_allowed.end()) continue;
    throw config_error(pos_of(v), join_key(path, key), "unknown key '" + key + "'." + suggest_from(key, known));
  }
}

std::string format_default(const toml::table& holder) {
  std::ostringstream os;
  os << toml::toml_formatter(holder, (toml::toml_formatter::default_flags & ~toml::format_flags::indentation) |
                                         toml::format_flags::relaxed_float_precision);
  std::string s = os.str();
  const std::string prefix = "v = ";
  if (s.rfind(prefix, 0) == 0) s = s.substr(prefix.size());
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace detail
}  // namespace adfw
