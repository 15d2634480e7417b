#include "support/builders.hpp"

#include <payments/infrastructure/observability/json_logger.hpp>

#include <boost/json/parse.hpp>

#include <cstdio>

using namespace test;
using application::LogField;
using application::LogLevel;
using infrastructure::JsonLogger;

namespace {

std::string escaped(std::string_view s) {
    std::string out;
    JsonLogger::append_json_string(out, s);
    return out;
}

} // namespace

TEST_CASE("values are escaped into valid JSON strings") {
    CHECK(escaped("plain") == "\"plain\"");
    CHECK(escaped("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(escaped("line\nbreak\ttab\r") == "\"line\\nbreak\\ttab\\r\"");
    CHECK(escaped(std::string_view("nul\0bell\x07" "esc\x1b", 13)) == "\"nul\\u0000bell\\u0007esc\\u001b\"");
    CHECK(escaped("caf\xc3\xa9 \xe2\x82\xac") == "\"caf\xc3\xa9 \xe2\x82\xac\""); // valid UTF-8 kept
    CHECK(escaped("bad\xff\xc3") == "\"bad\\ufffd\\ufffd\"");                    // invalid bytes replaced
    CHECK(escaped("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");               // a surrogate is not UTF-8
}

TEST_CASE("a log line is one JSON object with level, time, message and ids, with secrets redacted") {
    infrastructure::ManualClock clock;
    JsonLogger logger(stdout, LogLevel::info, clock);
    LogField const fields[] = {{"invoice_id", std::string_view("inv_1")},
                               {"attempt", std::int64_t{3}},
                               {"card_number", std::string_view("4242424242424242")},
                               {"Authorization", std::string_view("Bearer sk_live")},
                               {"note", std::string_view("evil\n{\"level\":\"error\"}")}};
    std::string const line = logger.format(LogLevel::warn, "payment failed", fields);
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.find("4242") == std::string::npos);
    CHECK(line.find("sk_live") == std::string::npos);
    auto const json = boost::json::parse(line).as_object();
    CHECK(json.at("ts").as_string() == "2026-01-01T00:00:00.000Z");
    CHECK(json.at("level").as_string() == "warn");
    CHECK(json.at("msg").as_string() == "payment failed");
    CHECK(json.at("invoice_id").as_string() == "inv_1");
    CHECK(json.at("attempt").as_int64() == 3);
    CHECK(json.at("card_number").as_string() == "[REDACTED]");
    CHECK(json.at("Authorization").as_string() == "[REDACTED]");
    CHECK(json.at("note").as_string() == "evil\n{\"level\":\"error\"}");
}

TEST_CASE("records below the level are not written") {
    infrastructure::ManualClock clock;
    std::FILE* sink = std::tmpfile();
    REQUIRE(sink != nullptr);
    JsonLogger logger(sink, LogLevel::warn, clock);
    logger.info("hidden");
    logger.error("shown", {{"k", std::string_view("v")}});
    std::rewind(sink);
    char buffer[512] = {};
    std::size_t const n = std::fread(buffer, 1, sizeof buffer - 1, sink);
    std::fclose(sink);
    std::string const written(buffer, n);
    CHECK(written.find("hidden") == std::string::npos);
    CHECK(written.find("\"msg\":\"shown\"") != std::string::npos);
    CHECK(written.back() == '\n');
    CHECK_FALSE(JsonLogger(nullptr, LogLevel::debug, clock).enabled(LogLevel::error));
}

TEST_CASE("a buffered logger writes info lines in batches and warnings at once, in order") {
    infrastructure::ManualClock clock;
    std::FILE* sink = std::tmpfile();
    REQUIRE(sink != nullptr);
    auto written = [&] {
        std::fflush(sink);
        std::rewind(sink);
        char buffer[1024] = {};
        std::size_t const n = std::fread(buffer, 1, sizeof buffer - 1, sink);
        return std::string(buffer, n);
    };
    {
        JsonLogger logger(sink, LogLevel::info, clock, std::chrono::hours(1)); // the interval never passes here
        logger.info("first");
        CHECK(written().empty());
        logger.warn("second");
        std::string const both = written();
        CHECK(both.find("first") < both.find("second"));
        logger.info("third");
        CHECK(written().find("third") == std::string::npos);
        logger.flush();
        CHECK(written().find("third") != std::string::npos);
        logger.info("fourth");
    }
    CHECK(written().find("fourth") != std::string::npos); // destruction writes the rest
    std::fclose(sink);
}
