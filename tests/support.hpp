// Test helpers shared by every test file.
#pragma once

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <utility>

#include "catch_compat.hpp"

namespace adfw::test {

/// The project's source folder (absolute; __FILE__ may be relative under ccache's base_dir).
std::filesystem::path source_root();
/// ../shared from the project root, or $ADFW_SHARED.
std::filesystem::path shared_root();
/// True under CI=true, where missing shared material is a failure, not a skip.
bool in_ci();
/// A fresh, empty temporary directory (removed at process exit).
std::filesystem::path temp_dir(const std::string& tag);
/// The built plugin folder (build/lib/adfw/plugins) and the adfw executable.
std::filesystem::path plugin_dir();
std::filesystem::path cli_path();
/// Loads the built-in plugins once (for tests that use the registries).
void load_builtin_plugins();

/// The message of the E that `f` throws, or "(no error)" when it returns normally. Exceptions of
/// other types propagate, so a test that expects a ConfigError fails on any other kind of error.
template <class E = std::exception, class F>
std::string error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace adfw::test

/// Declares `var` = shared_root()/rel. When it is missing: FAIL under CI=true, otherwise
/// WARN("skipped: ...") and return from the test case.
#define ADFW_REQUIRE_SHARED(var, rel)                                                      \
  const std::filesystem::path var = ::adfw::test::shared_root() / (rel);                   \
  if (!std::filesystem::exists(var)) {                                                     \
    if (::adfw::test::in_ci()) FAIL("shared material missing under CI: " << var.string());  \
    WARN("skipped: shared material not found: " << var.string() << " (set ADFW_SHARED)");  \
    return;                                                                                \
  }
