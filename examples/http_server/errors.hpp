#pragma once

#include "reply.hpp"

#include <payments/error.hpp>

#include <string_view>

namespace http_server {

/// An application/problem+json answer (RFC 9457) with a stable `code`.
Reply problem_reply(http::status status, std::string_view code, std::string_view detail);

/// The one ErrorCode → HTTP status table.
Reply from_error(payments::Error const& error);

} // namespace http_server
