// File helpers: nothing adfw writes is ever half-written.
#pragma once

#include <filesystem>
#include <string>

namespace adfw {

/// Writes `content` to `path` atomically: a temporary file in the same folder, flushed, then
/// renamed over the target. Creates parent folders. Throws Error naming the path on failure.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);

/// Whole file as a string; throws Error naming the path when it cannot be read.
std::string read_file(const std::filesystem::path& path);

}  // namespace adfw
