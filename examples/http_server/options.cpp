#include "options.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <functional>
#include <string_view>
#include <vector>

namespace http_server {

namespace {

using namespace std::chrono;

template <class T>
bool parse_number(std::string_view text, T& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

bool parse_rate(std::string_view text, double& out) {
    char* end = nullptr;
    std::string const copy(text);
    out = std::strtod(copy.c_str(), &end);
    return end == copy.c_str() + copy.size() && out >= 0.0 && out <= 1.0;
}

// One flag: its name, what it means, and how it sets the options.
struct Flag {
    std::string_view name;
    std::string_view help;
    std::function<bool(Options&, std::string_view)> set;
};

template <class Rep, class Period>
auto millis(std::chrono::duration<Rep, Period> Options::*field) {
    return [field](Options& o, std::string_view v) {
        long ms = 0;
        if (!parse_number(v, ms) || ms < 0) return false;
        o.*field = duration_cast<duration<Rep, Period>>(milliseconds(ms));
        return true;
    };
}

template <class Setter>
auto engine_millis(Setter setter) {
    return [setter](Options& o, std::string_view v) {
        long ms = 0;
        if (!parse_number(v, ms) || ms < 0) return false;
        setter(o.engine, duration_cast<payments::domain::Duration>(milliseconds(ms)));
        return true;
    };
}

template <class T>
auto number(T Options::*field) {
    return [field](Options& o, std::string_view v) { return parse_number(v, o.*field); };
}

std::vector<Flag> const& flags() {
    using payments::EngineOptions;
    using payments::domain::Duration;
    static std::vector<Flag> const table = {
        {"port", "TCP port to listen on (8080)", number(&Options::port)},
        {"bind", "address to bind (0.0.0.0)", [](Options& o, std::string_view v) { o.bind = v; return !v.empty(); }},
        {"threads", "worker threads for HTTP and for the engine (one per core)",
         [](Options& o, std::string_view v) {
             if (!parse_number(v, o.threads)) return false;
             o.engine.threads = o.threads;
             return true;
         }},
        {"max-connections", "open connections at most; at the limit the longest idle one is closed (1024)",
         number(&Options::max_connections)},
        {"overload-connections", "past max-connections, this many more get one answer: probes, else 503 (64)",
         number(&Options::overload_connections)},
        {"body-limit", "request body limit in bytes (65536)", number(&Options::body_limit)},
        {"header-limit", "request header block limit in bytes (8192)", number(&Options::header_limit)},
        {"uri-limit", "request target limit in bytes; longer is 414 (4096)", number(&Options::uri_limit)},
        {"read-timeout-ms", "a request begun must arrive within this (30000)", millis(&Options::read_timeout)},
        {"idle-timeout-ms", "close a connection waiting this long for a request (5000)", millis(&Options::idle_timeout)},
        {"overload-read-timeout-ms", "an overload connection's request must arrive within this (1000)",
         millis(&Options::overload_read_timeout)},
        {"drain-timeout-ms", "on SIGINT/SIGTERM, time allowed to finish in-flight work (10000)",
         millis(&Options::drain_timeout)},
        {"drain-read-timeout-ms", "on SIGINT/SIGTERM, time left to a half-sent request (500)",
         millis(&Options::drain_read_timeout)},
        {"idempotency-max-records", "idempotency records kept at most; past it the oldest of the client "
                                    "with the most are evicted (100000)",
         [](Options& o, std::string_view v) { return parse_number(v, o.engine.idempotency_max_records) && o.engine.idempotency_max_records > 0; }},
        {"retry-base-ms", "retry backoff base (1000)",
         engine_millis([](EngineOptions& e, Duration d) { e.processor.retry.base = d; })},
        {"retry-cap-ms", "retry backoff cap (30000)",
         engine_millis([](EngineOptions& e, Duration d) { e.processor.retry.cap = d; })},
        {"retry-max-attempts", "attempts per cycle (5)",
         [](Options& o, std::string_view v) { return parse_number(v, o.engine.processor.retry.max_attempts); }},
        {"gateway-timeout-ms", "an unanswered gateway call is an unknown outcome after (10000)",
         engine_millis([](EngineOptions& e, Duration d) { e.processor.gateway_timeout = d; })},
        {"settle-window-ms", "a look-up's \"no such charge\" is final only this long after the answer became unknown (300000)",
         engine_millis([](EngineOptions& e, Duration d) { e.processor.settle_window = d; })},
        {"verification-limit-ms", "an answer unknown this long puts the invoice in NEEDS_REVIEW (86400000)",
         engine_millis([](EngineOptions& e, Duration d) { e.processor.verification_limit = d; })},
        {"janitor-interval-ms", "how often stalled attempts are looked for; 0: never (60000)",
         engine_millis([](EngineOptions& e, Duration d) { e.processor.janitor_interval = d; })},
        {"admin-token", "bearer token of the operator routes /admin/...; unset: they answer 404",
         [](Options& o, std::string_view v) { o.admin_token = v; return v.size() >= 16; }},
        {"webhook-secret", "the provider's webhook signing secret for POST /webhooks/psp; unset: it answers 404",
         [](Options& o, std::string_view v) { o.webhooks.secret = v; return v.size() >= 16; }},
        {"webhook-tolerance-s", "a webhook signature's timestamp may be this far from now (300)",
         [](Options& o, std::string_view v) {
             long long seconds = 0;
             if (!parse_number(v, seconds) || seconds < 1 || seconds > 86'400) return false;
             o.webhooks.tolerance = std::chrono::seconds(seconds);
             return true;
         }},
        {"breaker-window", "a gateway's circuit counts its last this many charges (10)",
         [](Options& o, std::string_view v) { return parse_number(v, o.engine.breaker.window); }},
        {"breaker-minimum-calls", "a circuit never opens on fewer charges than this (10)",
         [](Options& o, std::string_view v) { return parse_number(v, o.engine.breaker.minimum_calls); }},
        {"breaker-failure-ratio", "a circuit opens when this share of its window failed at the provider (0.6)",
         [](Options& o, std::string_view v) { return parse_rate(v, o.engine.breaker.failure_ratio); }},
        {"breaker-open-ms", "an open circuit half-opens after this (30000)",
         engine_millis([](EngineOptions& e, Duration d) { e.breaker.open_for = d; })},
        {"decline-rate", "simulated gateway: share of declines, 0-1 (0)",
         [](Options& o, std::string_view v) { return parse_rate(v, o.engine.gateway.decline_rate); }},
        {"transient-rate", "simulated gateway: share of transient errors, 0-1 (0)",
         [](Options& o, std::string_view v) { return parse_rate(v, o.engine.gateway.transient_rate); }},
        {"timeout-rate", "simulated gateway: share of calls never answered, 0-1 (0)",
         [](Options& o, std::string_view v) { return parse_rate(v, o.engine.gateway.timeout_rate); }},
        {"latency-ms", "simulated gateway: latency up to this (0)",
         engine_millis([](EngineOptions& e, Duration d) { e.gateway.latency_max = d; })},
        {"seed", "seed of ids, jitter and the simulated gateway (random)",
         [](Options& o, std::string_view v) {
             if (!parse_number(v, o.engine.seed)) return false;
             o.engine.gateway.seed = o.engine.seed;
             return true;
         }},
        {"log-level", "debug, info, warn or error (info)",
         [](Options& o, std::string_view v) {
             using payments::application::LogLevel;
             for (auto [name, level] : {std::pair{"debug", LogLevel::debug}, std::pair{"info", LogLevel::info},
                                        std::pair{"warn", LogLevel::warn}, std::pair{"error", LogLevel::error}})
                 if (v == name) return o.engine.log_level = level, true;
             return false;
         }},
    };
    return table;
}

std::string help() {
    std::string text = "payments-server: the payments library over HTTP (JSON).\n\nUsage: payments-server [--flag value]...\n"
                       "Every flag can also be set as an environment variable PAYMENTS_<FLAG> (e.g. PAYMENTS_PORT).\n\n";
    for (Flag const& f : flags()) {
        std::string name = "  --" + std::string(f.name);
        name.resize(std::max<std::size_t>(30, name.size() + 2), ' ');
        text += name + std::string(f.help) + "\n";
    }
    return text + "  --help                        this text\n";
}

std::string env_name(std::string_view flag) {
    std::string name = "PAYMENTS_";
    for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
}

} // namespace

std::variant<Options, Exit> parse_options(int argc, char const* const* argv) {
    Options options;
    options.engine.gateway.seed = 0;
    auto apply = [&](Flag const& f, std::string_view value, std::string const& source) -> std::optional<Exit> {
        if (!f.set(options, value))
            return Exit{"payments-server: invalid value '" + std::string(value) + "' for " + source + "\n", 2};
        return std::nullopt;
    };
    for (Flag const& f : flags())
        if (char const* value = std::getenv(env_name(f.name).c_str()))
            if (auto bad = apply(f, value, env_name(f.name))) return *bad;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") return Exit{help(), 0};
        Flag const* found = nullptr;
        for (Flag const& f : flags())
            if (arg.size() > 2 && arg.substr(0, 2) == "--" && arg.substr(2) == f.name) found = &f;
        if (found == nullptr || i + 1 >= argc)
            return Exit{"payments-server: unknown or incomplete option '" + std::string(arg) + "'\n\n" + help(), 2};
        if (auto bad = apply(*found, argv[++i], "--" + std::string(found->name))) return *bad;
    }
    if (options.engine.gateway.seed == 0) options.engine.gateway.seed = options.engine.seed != 0 ? options.engine.seed : 1;
    return options;
}

} // namespace http_server
