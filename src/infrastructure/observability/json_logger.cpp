#include <payments/infrastructure/observability/json_logger.hpp>

#include <payments/infrastructure/observability/time_format.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace payments::infrastructure {

using application::LogField;
using application::LogLevel;

std::string_view to_string(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    }
    return "info";
}

namespace {

// Length of the valid UTF-8 sequence at the start of `s`, or 0.
std::size_t utf8_sequence(std::string_view s) {
    auto const b0 = static_cast<unsigned char>(s[0]);
    std::size_t len = b0 >= 0xF0 && b0 <= 0xF4 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC2 && b0 <= 0xDF ? 2 : 0;
    if (len == 0 || s.size() < len) return 0;
    for (std::size_t i = 1; i < len; ++i)
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) return 0;
    auto const b1 = static_cast<unsigned char>(s[1]);
    // Overlong forms, surrogates and code points past U+10FFFF.
    if ((b0 == 0xE0 && b1 < 0xA0) || (b0 == 0xED && b1 > 0x9F) || (b0 == 0xF0 && b1 < 0x90) || (b0 == 0xF4 && b1 > 0x8F))
        return 0;
    return len;
}

} // namespace

void JsonLogger::append_json_string(std::string& out, std::string_view value) {
    out += '"';
    while (!value.empty()) {
        auto const c = static_cast<unsigned char>(value[0]);
        std::size_t used = 1;
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
        else if (c < 0x80) out += static_cast<char>(c);
        else if ((used = utf8_sequence(value)) != 0) out.append(value.substr(0, used));
        else {
            out += "\\ufffd";
            used = 1;
        }
        value.remove_prefix(used);
    }
    out += '"';
}

bool JsonLogger::is_secret_key(std::string_view key) noexcept {
    static constexpr std::array<std::string_view, 8> secret_words = {"card", "cvc", "cvv", "password", "token",
                                                                     "secret", "authorization", "api_key"};
    std::string lower(key);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    return std::any_of(secret_words.begin(), secret_words.end(),
                       [&](std::string_view word) { return lower.find(word) != std::string::npos; });
}

namespace {

constexpr std::size_t flush_at_bytes = 64 * 1024;

} // namespace

JsonLogger::JsonLogger(std::FILE* out, LogLevel min_level, application::Clock const& clock, domain::Duration flush_every)
    : out_(out), min_level_(min_level), clock_(clock), flush_every_(flush_every) {
    if (out_ == nullptr || flush_every_ <= domain::Duration::zero()) return;
    flusher_ = std::jthread([this](std::stop_token stop) {
        std::unique_lock lock(mutex_);
        while (!stop.stop_requested()) {
            wake_.wait_for(lock, stop, flush_every_, [] { return false; });
            flush_locked();
        }
    });
}

JsonLogger::~JsonLogger() {
    if (flusher_.joinable()) {
        flusher_.request_stop();
        flusher_.join();
    }
    flush();
}

void JsonLogger::flush() {
    std::lock_guard lock(mutex_);
    flush_locked();
}

void JsonLogger::flush_locked() {
    if (buffer_.empty() || out_ == nullptr) return;
    std::fwrite(buffer_.data(), 1, buffer_.size(), out_);
    std::fflush(out_);
    buffer_.clear();
}

bool JsonLogger::enabled(LogLevel level) const noexcept { return out_ != nullptr && level >= min_level_; }

std::string JsonLogger::format(LogLevel level, std::string_view message, std::span<LogField const> fields) const {
    std::string line;
    line.reserve(160);
    line += "{\"ts\":\"" + format_rfc3339(clock_.now()) + "\",\"level\":\"";
    line += to_string(level);
    line += "\",\"msg\":";
    append_json_string(line, message);
    for (LogField const& field : fields) {
        line += ',';
        append_json_string(line, field.key);
        line += ':';
        if (is_secret_key(field.key)) {
            line += "\"[REDACTED]\"";
        } else if (auto const* number = std::get_if<std::int64_t>(&field.value)) {
            line += std::to_string(*number);
        } else {
            append_json_string(line, std::get<std::string_view>(field.value));
        }
    }
    line += '}';
    return line;
}

void JsonLogger::write(LogLevel level, std::string_view message, std::span<LogField const> fields) {
    if (!enabled(level)) return;
    std::string line = format(level, message, fields);
    line += '\n';
    std::lock_guard lock(mutex_);
    buffer_ += line;
    if (!flusher_.joinable() || level >= LogLevel::warn || buffer_.size() >= flush_at_bytes) flush_locked();
}

} // namespace payments::infrastructure
