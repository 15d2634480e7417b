#pragma once
// HTTP/1.1 framing rules the server enforces before a request reaches a
// route (RFC 9112), shared by the socket session and the fuzzer.

#include "api.hpp"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace http_server {

using RequestParser = http::request_parser<http::string_body>;

/// A request refused before routing: its status, stable code and reason.
struct Refusal {
    http::status status;
    std::string_view code;
    std::string detail;
};

/// What the framing checks need to know about the server's limits.
struct Limits {
    std::size_t body = 64 * 1024;
    std::size_t header = 8 * 1024;
    std::size_t uri = 4 * 1024;
};

/// Checks a parsed header block: one Host on HTTP/1.1, no Transfer-Encoding
/// with Content-Length, chunked as the only and final transfer coding, a
/// target within the URI limit, singleton headers sent once, a known Expect.
std::optional<Refusal> check_header(http::request_header<> const& header, Limits const& limits);

/// The refusal for a parse error. `partial` is what was parsed of the header:
/// without a target, the request line itself was over the limit (414, not 431).
Refusal refusal_for(boost::beast::error_code ec, http::request_header<> const& partial, Limits const& limits);

/// True if the client asked to be told to send its body (Expect: 100-continue).
bool expects_continue(http::request_header<> const& header);

/// The number of empty lines (CRLF or LF) at the start of `received`, which a
/// server ignores before a request line (RFC 9112 §2.2).
std::size_t leading_empty_lines(std::string_view received);

/// Serves `input` as the bytes of one connection without a socket: each
/// request is parsed, checked and answered as a session would, until the
/// input ends or the connection would close. Returns the bytes written.
/// The fuzzer's entry point.
std::string serve_bytes(Api& api, std::string_view input, Limits const& limits);

} // namespace http_server
