#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <variant>

namespace payments::application {

/// How much a log record matters; a logger writes those at or above its level.
enum class LogLevel { debug, info, warn, error };

/// One structured field of a log record.
struct LogField {
    std::string_view key;
    std::variant<std::string_view, std::int64_t> value;
};

/// Structured logging. Implementations escape values, never write fields that
/// look like secrets, and are thread-safe.
class Logger {
public:
    virtual ~Logger() = default;

    virtual bool enabled(LogLevel level) const noexcept = 0;
    virtual void write(LogLevel level, std::string_view message, std::span<LogField const> fields) = 0;

    void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {}) {
        if (enabled(level)) write(level, message, {fields.begin(), fields.size()});
    }
    void debug(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::debug, m, f); }
    void info(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::info, m, f); }
    void warn(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::warn, m, f); }
    void error(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::error, m, f); }
};

} // namespace payments::application
