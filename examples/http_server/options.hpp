#pragma once

#include <payments/engine.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

namespace http_server {

/// Everything the server can be told, by flag or PAYMENTS_* environment variable.
struct Options {
    std::string bind = "0.0.0.0";
    std::uint16_t port = 8080;
    unsigned threads = 0; ///< 0: one per core
    std::size_t body_limit = 64 * 1024;
    std::size_t header_limit = 8 * 1024;
    std::size_t max_connections = 1024;
    std::chrono::milliseconds read_timeout{30'000};
    std::chrono::milliseconds drain_timeout{10'000};
    payments::EngineOptions engine;
};

/// The parsed options, or the text to print and the exit code (help, or an error).
struct Exit {
    std::string text;
    int code;
};
std::variant<Options, Exit> parse_options(int argc, char const* const* argv);

} // namespace http_server
