// Small CSV helpers (RFC 4180 quoting), shared by the data set readers, the tools and the reports.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace adfw::csv {
/// Splits a file into rows of fields. Throws Error naming the file on unterminated quotes.
std::vector<std::vector<std::string>> read(const std::filesystem::path& file);
/// One field, quoted when it holds a comma, quote or line break.
std::string quote(const std::string& field);
}  // namespace adfw::csv
