#include "options.hpp"

#include <payments/version.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>
#include <sstream>
#include <string_view>

namespace http_server {

namespace {

using namespace std::chrono;
using payments::domain::Duration;

// A libpq connection URI names the PostgreSQL store.
bool is_postgres_uri(std::string_view v) {
    return (v.starts_with("postgresql://") || v.starts_with("postgres://")) && v.find("://") + 3 < v.size() + 1;
}

// "PAYMENTS_" and the flag's name in upper case, '-' as '_': PAYMENTS_READ_TIMEOUT_MS.
std::string env_name(std::string_view flag) {
    std::string name = "PAYMENTS_";
    for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
}

// Declares --name: its help, its PAYMENTS_* variable, and the default read
// from `target` as it is before parsing. `--name=v` and `--name v` both work;
// the command line wins over the environment.
template <class T>
CLI::Option* flag(CLI::App& app, std::string_view name, T& target, std::string help) {
    return app.add_option("--" + std::string(name), target, std::move(help))
        ->envname(env_name(name))
        ->capture_default_str();
}

// A duration given in milliseconds; the default shown is the field's.
template <class Rep, class Period>
CLI::Option* millis(CLI::App& app, std::string_view name, std::chrono::duration<Rep, Period>& target, std::string help) {
    return app
        .add_option_function<std::int64_t>(
            "--" + std::string(name),
            [&target](std::int64_t ms) { target = duration_cast<std::chrono::duration<Rep, Period>>(milliseconds(ms)); },
            std::move(help))
        ->envname(env_name(name))
        ->default_str(std::to_string(duration_cast<milliseconds>(target).count()))
        ->check(CLI::Range(std::int64_t{0}, std::numeric_limits<std::int64_t>::max() / 1000));
}

// The one table of flags: a new flag is one more line here.
void add_flags(CLI::App& app, Options& o) {
    auto& e = o.engine;
    auto& p = e.processor;
    flag(app, "port", o.port, "TCP port to listen on; 0: any free port")->check(CLI::Range(0, 65535));
    flag(app, "bind", o.bind, "address to bind")->check([](std::string const& v) {
        return v.empty() ? std::string("must not be empty") : std::string();
    });
    app.add_option_function<unsigned>(
           "--threads", [&o](unsigned n) { o.threads = o.engine.threads = n; },
           "worker threads for HTTP and for the engine; 0: one per core")
        ->envname(env_name("threads"))
        ->default_str(std::to_string(o.threads))
        ->check(CLI::Range(0u, 1024u));
    flag(app, "handler-threads", o.handler_threads,
         "threads that run requests and wait for their commit (0: the I/O threads)")
        ->check(CLI::Range(0u, 4096u));
    flag(app, "max-connections", o.max_connections,
         "open connections at most; at the limit the longest idle one is closed")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
    flag(app, "overload-connections", o.overload_connections,
         "past max-connections, this many more get one answer: probes, else 503")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1'000'000}));
    flag(app, "body-limit", o.body_limit, "request body limit in bytes")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
    flag(app, "header-limit", o.header_limit, "request header block limit in bytes")
        ->check(CLI::Range(std::size_t{256}, std::size_t{1} << 20));
    flag(app, "uri-limit", o.uri_limit, "request target limit in bytes; longer is 414")
        ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 20));
    millis(app, "read-timeout-ms", o.read_timeout, "a request begun must arrive within this");
    millis(app, "idle-timeout-ms", o.idle_timeout, "close a connection waiting this long for a request");
    millis(app, "overload-read-timeout-ms", o.overload_read_timeout,
           "an overload connection's request must arrive within this");
    millis(app, "drain-timeout-ms", o.drain_timeout, "on SIGINT/SIGTERM, time allowed to finish in-flight work");
    millis(app, "drain-read-timeout-ms", o.drain_read_timeout, "on SIGINT/SIGTERM, time left to a half-sent request");
    flag(app, "idempotency-max-records", e.idempotency_max_records,
         "idempotency records kept at most; past it the oldest of the client with the most are evicted")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100'000'000}));
    millis(app, "retry-base-ms", p.retry.base, "retry backoff base");
    millis(app, "retry-cap-ms", p.retry.cap, "retry backoff cap");
    flag(app, "retry-max-attempts", p.retry.max_attempts, "attempts per cycle")->check(CLI::Range(1, 100));
    millis(app, "gateway-timeout-ms", p.gateway_timeout, "an unanswered gateway call is an unknown outcome after");
    millis(app, "settle-window-ms", p.settle_window,
           "a look-up's \"no such charge\" is final only this long after the answer became unknown");
    millis(app, "verification-limit-ms", p.verification_limit,
           "an answer unknown this long puts the invoice in NEEDS_REVIEW");
    millis(app, "provider-key-retention-ms", p.provider_key_retention,
           "how long the provider surely remembers an idempotency key (default 23 h: under Stripe's 24 h, "
           "for clock skew); an older key is never sent again");
    millis(app, "janitor-interval-ms", p.janitor_interval, "how often stalled attempts are looked for; 0: never");
    flag(app, "store", o.store,
         "where the data lives: sqlite:PATH (durable), postgresql://user@host:port/db (durable, shared by several "
         "servers; the password from PGPASSWORD or ~/.pgpass) or memory (lost at exit)")
        ->check([](std::string const& v) {
            return v == "memory" || (v.starts_with("sqlite:") && v.size() > 7) || is_postgres_uri(v)
                       ? std::string()
                       : std::string("must be sqlite:PATH, postgresql://... or memory");
        });
    flag(app, "pg-pool", o.postgres.pool_size, "PostgreSQL: connections per server (one writer, the rest read)")
        ->check(CLI::Range(std::size_t{2}, std::size_t{1000}));
    millis(app, "pg-statement-timeout-ms", o.postgres.statement_timeout,
           "PostgreSQL: a statement (or a lock wait) is cancelled after this, the command answers 503");
    millis(app, "pg-lease-ms", o.postgres.lease_timeout,
           "PostgreSQL: a server silent twice this long (killed, stalled) loses its invoices to the others, which take its attempts over");
    static std::map<std::string, bool> const switches = {{"on", true}, {"off", false}};
    flag(app, "group-commit", o.sqlite.group_commit,
         "on: concurrent commits share one transaction and fsync; off: one each")
        ->transform(CLI::CheckedTransformer(switches))
        ->default_str(o.sqlite.group_commit ? "on" : "off");
    static std::map<std::string, bool> const synchronous = {{"full", true}, {"normal", false}};
    flag(app, "synchronous", o.sqlite.fsync_every_commit,
         "full: every commit on disk before it is answered; normal: a power loss may lose the last answered commits")
        ->transform(CLI::CheckedTransformer(synchronous))
        ->default_str(o.sqlite.fsync_every_commit ? "full" : "normal");
    app.add_option_function<std::uint32_t>(
           "--event-retention-days",
           [&o](std::uint32_t days) {
               if (days == 0) o.sqlite.event_retention.reset();
               else o.sqlite.event_retention = std::chrono::hours(24) * days;
           },
           "delivered events are kept as invoice history this long; 0: for ever")
        ->envname(env_name("event-retention-days"))
        ->default_str("0")
        ->check(CLI::Range(0u, 36'500u));
    flag(app, "gateway-ledger", e.gateway_ledger,
         "simulated gateway: a file its charges are appended to (fsynced) and read back from at start, so that "
         "they outlive the process")
        ->default_str("");
    flag(app, "gateway", o.gateways,
         "'simulated' (in-process) or a provider's base URL http(s)://host[:port]; repeatable (or comma-separated) "
         "in preference order; a new attempt goes to the first whose circuit is usable")
        ->delimiter(',')
        ->check([](std::string const& v) {
            return v == "simulated" || v.starts_with("http://") || v.starts_with("https://")
                       ? std::string()
                       : std::string("must be 'simulated' or an http(s):// URL");
        })
        ->default_str("simulated");
    flag(app, "gateway-key", o.gateway_key, "the providers' secret key, sent as a bearer token and never logged")
        ->check([](std::string const& v) { return v.empty() ? std::string("must not be empty") : std::string(); })
        ->default_str("");
    flag(app, "gateway-ca-file", o.gateway_ca_file, "PEM roots to trust for https providers; default: the system's")
        ->check(CLI::ExistingFile)
        ->default_str("");
    flag(app, "admin-token", o.admin_token, "bearer token of the operator routes /admin/...; unset: they answer 404")
        ->check([](std::string const& v) {
            return v.size() >= 16 ? std::string() : std::string("must be at least 16 characters");
        })
        ->default_str("");
    flag(app, "webhook-secret", o.webhooks.secret,
         "the provider's webhook signing secret for POST /webhooks/psp; unset: it answers 404")
        ->check([](std::string const& v) {
            return v.size() >= 16 ? std::string() : std::string("must be at least 16 characters");
        })
        ->default_str("");
    app.add_option_function<std::int64_t>(
           "--webhook-tolerance-s", [&o](std::int64_t s) { o.webhooks.tolerance = std::chrono::seconds(s); },
           "a webhook signature's timestamp may be this far from now, in seconds")
        ->envname(env_name("webhook-tolerance-s"))
        ->default_str(std::to_string(o.webhooks.tolerance.count()))
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{86'400}));
    flag(app, "breaker-window", e.breaker.window, "a gateway's circuit counts its last this many charges")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000}));
    flag(app, "breaker-minimum-calls", e.breaker.minimum_calls, "a circuit never opens on fewer charges than this")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000}));
    flag(app, "breaker-failure-ratio", e.breaker.failure_ratio,
         "a circuit opens when this share of its window failed at the provider")
        ->check(CLI::Range(0.01, 1.0));
    millis(app, "breaker-open-ms", e.breaker.open_for, "an open circuit half-opens after this");
    flag(app, "decline-rate", e.gateway.decline_rate, "simulated gateway: share of declines, 0-1")
        ->check(CLI::Range(0.0, 1.0));
    flag(app, "transient-rate", e.gateway.transient_rate, "simulated gateway: share of transient errors, 0-1")
        ->check(CLI::Range(0.0, 1.0));
    flag(app, "timeout-rate", e.gateway.timeout_rate, "simulated gateway: share of calls never answered, 0-1")
        ->check(CLI::Range(0.0, 1.0));
    millis(app, "latency-ms", e.gateway.latency_max, "simulated gateway: latency up to this");
    flag(app, "seed", e.seed, "seed of ids, jitter and the simulated gateway; 0: random. Reproducible ids only with --store memory: "
         "with a durable or shared store each run mixes in entropy, so ids never repeat across runs or servers");
    static std::map<std::string, payments::application::LogLevel> const levels = {
        {"debug", payments::application::LogLevel::debug},
        {"info", payments::application::LogLevel::info},
        {"warn", payments::application::LogLevel::warn},
        {"error", payments::application::LogLevel::error}};
    flag(app, "log-level", e.log_level, "debug, info, warn or error")
        ->transform(CLI::CheckedTransformer(levels))
        ->default_str("info");
}

} // namespace

payments::Result<void> open_store(Options& options) {
    if (options.store == "memory") return {};
    if (is_postgres_uri(options.store)) {
        options.postgres.uri = options.store;
        options.postgres.idempotency_ttl = options.engine.idempotency_ttl;
        options.postgres.group_commit = options.sqlite.group_commit;
        options.postgres.event_retention = options.sqlite.event_retention;
        options.postgres.application_name = "payments-server";
        // Other servers' work may need taking over at any time, not only while this one is busy.
        options.engine.processor.janitor_when_idle = true;
        auto store = payments::infrastructure::PostgresStore::open(options.postgres);
        if (!store) return store.error();
        std::shared_ptr<payments::infrastructure::PostgresStore> shared = std::move(*store);
        options.durable = shared;
        options.durable_keys = shared;
        return {};
    }
    options.sqlite.path = options.store.substr(std::string_view("sqlite:").size());
    options.sqlite.idempotency_ttl = options.engine.idempotency_ttl;
    auto store = payments::infrastructure::SqliteStore::open(options.sqlite);
    if (!store) return store.error();
    std::shared_ptr<payments::infrastructure::SqliteStore> shared = std::move(*store);
    options.durable = shared;
    options.durable_keys = shared;
    return {};
}

std::variant<Options, Exit> parse_options(int argc, char const* const* argv) {
    Options options;
    CLI::App app("payments-server: the payments library over HTTP (JSON).\n"
                 "Every flag can also be set as an environment variable PAYMENTS_<FLAG> (e.g. PAYMENTS_PORT);\n"
                 "the command line wins.",
                 "payments-server");
    app.set_version_flag("--version", std::string("payments-server ") + PAYMENTS_VERSION);
    app.get_formatter()->column_width(40);
    add_flags(app, options);
    try {
        app.parse(argc, argv);
    } catch (CLI::ParseError const& e) {
        std::ostringstream out;
        std::ostringstream err;
        int const code = app.exit(e, out, err);
        return Exit{code == 0 ? out.str() : "payments-server: " + err.str(), code == 0 ? 0 : 2};
    }
    // 'simulated' is the default and stands alone; URLs are providers.
    if (std::find(options.gateways.begin(), options.gateways.end(), "simulated") != options.gateways.end()) {
        if (options.gateways.size() > 1)
            return Exit{"payments-server: --gateway simulated cannot be combined with provider URLs\n", 2};
        options.gateways.clear();
    }
    // The simulated gateway draws from the same seed unless it has its own.
    options.engine.gateway.seed = options.engine.seed != 0 ? options.engine.seed : 1;
    return options;
}

} // namespace http_server
