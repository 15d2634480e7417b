#pragma once

#include "webhooks.hpp"

#include <payments/engine.hpp>
#include <payments/infrastructure/store/postgres_store.hpp>
#include <payments/infrastructure/store/sqlite_store.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace http_server {

/// Everything the server can be told, by flag or PAYMENTS_* environment variable.
struct Options {
    std::string bind = "0.0.0.0";
    std::uint16_t port = 8080;
    unsigned threads = 0; ///< 0: one per core
    /// Threads that run the requests that may wait for the store (its reads,
    /// the operator's commands), off the I/O threads. A command (create, pay)
    /// waits for its commit on no thread: it is answered from the commit's
    /// continuation. 0: everything on the I/O threads.
    unsigned handler_threads = 64;
    std::size_t body_limit = 64 * 1024;
    std::size_t header_limit = 8 * 1024;
    std::size_t uri_limit = 4 * 1024;
    std::size_t max_connections = 1024;
    /// Past max_connections, this many more may each send one request: probes
    /// are answered, anything else gets 503.
    std::size_t overload_connections = 64;
    std::chrono::milliseconds read_timeout{30'000};         ///< a request begun must arrive within this
    std::chrono::milliseconds idle_timeout{5'000};          ///< a connection waiting for a request closes after this
    std::chrono::milliseconds overload_read_timeout{1'000}; ///< an overload connection's request must arrive within this
    std::chrono::milliseconds drain_timeout{10'000};
    std::chrono::milliseconds drain_read_timeout{500}; ///< on SIGTERM, a half-sent request has this long left
    /// Bearer token of the operator's routes (/admin/...); empty: they are off.
    std::string admin_token;
    /// Provider base URLs (`--gateway`, repeatable; order = preference); empty: the simulated gateway.
    std::vector<std::string> gateways;
    std::string gateway_key;     ///< the providers' secret key (`--gateway-key` / PAYMENTS_GATEWAY_KEY); never logged
    std::string gateway_ca_file; ///< PEM roots to trust for https providers instead of the system's
    /// POST /webhooks/psp: the provider's signing secret (empty: the route is off) and tolerance.
    WebhookOptions webhooks = {};
    /// Where the data lives: "sqlite:PATH" (durable, the default), a libpq
    /// URI "postgresql://user@host:port/db" (several processes may share it) or "memory".
    std::string store = "sqlite:payments.db";
    /// The SQLite store's settings (its path comes from `store`).
    payments::infrastructure::SqliteStoreOptions sqlite;
    /// The PostgreSQL store's settings (its URI comes from `store`).
    payments::infrastructure::PostgresStoreOptions postgres;
    /// The store open_store() opened, as both ports; null for "memory". Let go
    /// of before the Server is destroyed (after the engine): a command still in
    /// its writer's queue holds the HTTP session it answers.
    std::shared_ptr<payments::application::Store> durable;
    std::shared_ptr<payments::application::IdempotencyStore> durable_keys;
    payments::EngineOptions engine;
};

/// The parsed options, or the text to print and the exit code (help, or an error).
struct Exit {
    std::string text;
    int code;
};
std::variant<Options, Exit> parse_options(int argc, char const* const* argv);

/// Opens the store that `options.store` names into `options.durable`; the
/// error's text (a missing directory, not a database, a newer schema,
/// another process on the file) when it cannot.
payments::Result<void> open_store(Options& options);


} // namespace http_server
