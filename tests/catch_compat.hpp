// Catch2 v2 (one header, Debian 12) and v3 (split headers and a compiled library, Debian 13)
// behind one include, so that every test file reads the same on both. tests/CMakeLists.txt
// defines ADFW_CATCH2_V3=1 when it found v3.
#pragma once

#if ADFW_CATCH2_V3
#include <string>

#include <catch2/catch_approx.hpp>
#include <catch2/catch_session.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

// v2 put Approx in the global namespace; v3 keeps it in Catch.
using Catch::Approx;

namespace Catch {
// v2's string matchers were reachable as Catch::Contains / Catch::StartsWith. v3's
// Matchers::Contains matches an element of a range, so a string's substring is
// ContainsSubstring there; Catch::Contains keeps v2's meaning on both.
inline Matchers::StringContainsMatcher Contains(const std::string& text,
                                                CaseSensitive cs = CaseSensitive::Yes) {
  return Matchers::ContainsSubstring(text, cs);
}
using Matchers::StartsWith;
}  // namespace Catch
#else
#include <catch2/catch.hpp>
#endif
