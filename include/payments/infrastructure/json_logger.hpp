#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/logger.hpp>

#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace payments::infrastructure {

/// One JSON object per line: ts, level, msg, then the fields. Values are JSON
/// escaped (control characters as \u00XX, invalid UTF-8 as U+FFFD), and a
/// field whose key names a secret (card, cvc, password, token, secret,
/// authorization, api_key) is written as "[REDACTED]".
class JsonLogger final : public application::Logger {
public:
    JsonLogger(std::FILE* out, application::LogLevel min_level, application::Clock const& clock);

    bool enabled(application::LogLevel level) const noexcept override;
    void write(application::LogLevel level, std::string_view message,
               std::span<application::LogField const> fields) override;

    /// Appends `value` as a quoted JSON string.
    static void append_json_string(std::string& out, std::string_view value);
    static bool is_secret_key(std::string_view key) noexcept;
    /// The record as write() would print it, without the newline.
    std::string format(application::LogLevel level, std::string_view message,
                       std::span<application::LogField const> fields) const;

private:
    std::FILE* out_;
    application::LogLevel min_level_;
    application::Clock const& clock_;
    std::mutex mutex_; // serialises whole lines
};

/// Discards everything.
class NullLogger final : public application::Logger {
public:
    bool enabled(application::LogLevel) const noexcept override { return false; }
    void write(application::LogLevel, std::string_view, std::span<application::LogField const>) override {}
};

/// "debug", "info", "warn", "error".
std::string_view to_string(application::LogLevel level) noexcept;

} // namespace payments::infrastructure
