// Keys an options struct no longer accepts. A config that still has one fails with what to write
// instead, where the config reader would otherwise only say "unknown key". Call it in fields():
//
//   template <class V> void fields(V& v) {
//     v("postprocess", postprocess, "...");
//     retired_key(v, "smoothing", "write [[method.postprocess]] parts instead");
//   }
//
// Only reading looks at it: resolved configs and `adfw describe` never show a retired key.
#pragma once

#include <string>
#include <type_traits>

#include "adfw/core/options.hpp"

namespace adfw {

template <class V>
void retired_key(V& v, const char* name, const std::string& instead) {
  if constexpr (std::is_same_v<V, detail::Reader>) {
    if (const toml::node* n = v.table.get(name))
      throw config_error(pos_of(*n), join_key(v.path, name),
                         "'" + std::string(name) + "' is no longer accepted: " + instead);
  }
}

}  // namespace adfw
