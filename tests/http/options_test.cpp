#include "options.hpp"

#include <payments/version.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <initializer_list>
#include <vector>

using namespace http_server;

namespace {

std::variant<Options, Exit> parse(std::initializer_list<char const*> args) {
    std::vector<char const*> argv{"payments-server"};
    argv.insert(argv.end(), args.begin(), args.end());
    return parse_options(static_cast<int>(argv.size()), argv.data());
}

Options parsed(std::initializer_list<char const*> args) {
    auto result = parse(args);
    if (auto* exit = std::get_if<Exit>(&result)) FAIL(exit->text);
    return std::get<Options>(result);
}

// Sets an environment variable for one scope.
struct ScopedEnv {
    char const* name;
    ScopedEnv(char const* n, char const* value) : name(n) { ::setenv(n, value, 1); }
    ~ScopedEnv() { ::unsetenv(name); }
};

} // namespace

SCENARIO("server flags take --flag=value and --flag value, and PAYMENTS_* variables") {
    CHECK(parsed({"--port=9090"}).port == 9090);
    CHECK(parsed({"--port", "9090"}).port == 9090);
    CHECK(parsed({}).port == Options{}.port);
    auto const o = parsed({"--threads=3", "--read-timeout-ms", "250", "--retry-cap-ms=2000", "--seed=7"});
    CHECK(o.threads == 3);
    CHECK(o.engine.threads == 3);
    CHECK(o.read_timeout == std::chrono::milliseconds(250));
    CHECK(o.engine.processor.retry.cap == std::chrono::seconds(2));
    CHECK(o.engine.seed == 7);
    CHECK(o.engine.gateway.seed == 7);
    GIVEN("PAYMENTS_PORT and PAYMENTS_LOG_LEVEL in the environment") {
        ScopedEnv port("PAYMENTS_PORT", "7070");
        ScopedEnv level("PAYMENTS_LOG_LEVEL", "warn");
        THEN("they apply, and the command line wins over them") {
            CHECK(parsed({}).port == 7070);
            CHECK(parsed({}).engine.log_level == payments::application::LogLevel::warn);
            CHECK(parsed({"--port=9090"}).port == 9090);
        }
    }
}

SCENARIO("server flags out of range or malformed are refused with exit code 2") {
    for (auto args : {std::vector<char const*>{"--port=65536"}, {"--port=-1"}, {"--port=abc"},
                      {"--decline-rate=1.5"}, {"--retry-max-attempts=0"}, {"--log-level=verbose"},
                      {"--admin-token=short"}, {"--idempotency-max-records=0"}, {"--no-such-flag=1"},
                      {"--read-timeout-ms=-5"}}) {
        CAPTURE(args[0]);
        std::vector<char const*> argv{"payments-server"};
        argv.insert(argv.end(), args.begin(), args.end());
        auto result = parse_options(static_cast<int>(argv.size()), argv.data());
        REQUIRE(std::holds_alternative<Exit>(result));
        CHECK(std::get<Exit>(result).code == 2);
    }
    GIVEN("a malformed PAYMENTS_PORT") {
        ScopedEnv port("PAYMENTS_PORT", "eighty");
        CHECK(std::holds_alternative<Exit>(parse({})));
    }
}

SCENARIO("--version and --help answer and exit 0; help shows the defaults of the option structs") {
    auto version = parse({"--version"});
    REQUIRE(std::holds_alternative<Exit>(version));
    CHECK(std::get<Exit>(version).code == 0);
    CHECK(std::get<Exit>(version).text == std::string("payments-server ") + PAYMENTS_VERSION + "\n");
    auto help = parse({"--help"});
    REQUIRE(std::holds_alternative<Exit>(help));
    CHECK(std::get<Exit>(help).code == 0);
    std::string const& text = std::get<Exit>(help).text;
    CHECK(text.find("=" + std::to_string(Options{}.port)) != std::string::npos);
    CHECK(text.find("PAYMENTS_READ_TIMEOUT_MS") != std::string::npos);
    CHECK(text.find("=" + std::to_string(Options{}.read_timeout.count())) != std::string::npos);
    CHECK(text.find("--verification-limit-ms") != std::string::npos);
}
