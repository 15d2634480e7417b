#pragma once

#include <chrono>

namespace payments::domain {

/// A span of time with microsecond resolution.
using Duration = std::chrono::microseconds;

/// A UTC point in time with microsecond resolution. The domain never reads a
/// clock: every decision receives `now` from its caller.
using Timestamp = std::chrono::sys_time<Duration>;

} // namespace payments::domain
