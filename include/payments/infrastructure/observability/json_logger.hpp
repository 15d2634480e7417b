#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/logger.hpp>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace payments::infrastructure {

/// One JSON object per line: ts, level, msg, then the fields. Values are JSON
/// escaped (control characters as \u00XX, invalid UTF-8 as U+FFFD), and a
/// field whose key names a secret (card, cvc, password, token, secret,
/// authorization, api_key) is written as "[REDACTED]".
///
/// With a `flush_every` interval, lines are gathered in memory and written in
/// one call at that interval (and at once for warnings, errors, a full buffer
/// and destruction): a busy server then spends one write per interval on its
/// logs instead of one per line. Without one, every line is written and flushed.
class JsonLogger final : public application::Logger {
public:
    JsonLogger(std::FILE* out, application::LogLevel min_level, application::Clock const& clock,
               domain::Duration flush_every = domain::Duration::zero());
    /// Writes what is buffered.
    ~JsonLogger() override;

    bool enabled(application::LogLevel level) const noexcept override;
    void write(application::LogLevel level, std::string_view message,
               std::span<application::LogField const> fields) override;

    /// Appends `value` as a quoted JSON string.
    static void append_json_string(std::string& out, std::string_view value);
    static bool is_secret_key(std::string_view key) noexcept;
    /// The record as write() would print it, without the newline.
    std::string format(application::LogLevel level, std::string_view message,
                       std::span<application::LogField const> fields) const;

    /// Writes what is buffered now.
    void flush();

private:
    void flush_locked();

    std::FILE* out_;
    application::LogLevel min_level_;
    application::Clock const& clock_;
    domain::Duration flush_every_;
    std::mutex mutex_;                  // serialises whole lines
    std::string buffer_;                // Owned by: mutex_
    std::condition_variable_any wake_;  // the flusher's interval, cut short by stop
    std::jthread flusher_;              // only with flush_every
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
