#pragma once

#include <payments/domain/time.hpp>

#include <string>

namespace payments::infrastructure {

/// RFC 3339 in UTC with milliseconds: "2026-01-01T12:00:00.250Z".
std::string format_rfc3339(domain::Timestamp at);

} // namespace payments::infrastructure
