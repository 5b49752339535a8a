// Wall-clock timestamps as adfw records them (status files, sweep ledgers, logs, run ids).
#pragma once

#include <string>

namespace adfw {

/// The current time formatted with strftime's `format`, in UTC or in the machine's local time.
std::string format_now(const char* format, bool utc);

/// The current time in UTC as ISO 8601 to the second, e.g. "2026-12-05T04:57:12Z": sortable as
/// text and free of the machine's time zone, so runs from a cluster and a laptop compare.
inline std::string utc_now_iso() { return format_now("%Y-%m-%dT%H:%M:%SZ", true); }

}  // namespace adfw
