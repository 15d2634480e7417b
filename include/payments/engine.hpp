#pragma once
// The composition root: the library's use cases wired to the application's
// adapters, or to the defaults for those it does not give (a thread pool, the
// Asio bus and scheduler, in-memory stores, the simulated gateway, Prometheus
// metrics, JSON logs). No Asio header is included here.

#include <payments/fwd.hpp>
#include <payments/application/payment_processor.hpp>
#include <payments/application/payment_service.hpp>
#include <payments/infrastructure/bus/bus_options.hpp>
#include <payments/infrastructure/gateway/simulated_gateway.hpp>
#include <payments/infrastructure/observability/metrics_registry.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace payments {

/// The engine's settings: threads, retries and timeouts, the default adapters'
/// settings, logs. Every field has a working default.
struct EngineOptions {
    unsigned threads = 0; ///< the engine's own pool; 0: one per core. Ignored with EngineBuilder::run_on().
    application::ProcessorOptions processor;       ///< retries, timeouts, verification, janitor
    infrastructure::SimulatedGatewayOptions gateway; ///< the default gateway's behaviour (no gateway given)
    /// Each gateway's circuit breaker.
    application::BreakerOptions breaker;
    /// The default gateway's ledger file (see SimulatedGateway); empty: in memory.
    std::string gateway_ledger = {};
    infrastructure::BusOptions bus;                ///< lanes and delivery attempts; delivery tasks follow `threads`
    /// How long the default idempotency store replays a key.
    domain::Duration idempotency_ttl = std::chrono::hours(24);
    /// Idempotency records the default store keeps at most; see InMemoryIdempotencyStore for who is evicted.
    std::size_t idempotency_max_records = 100'000;
    /// Ids and jitter; 0: from std::random_device. A fixed seed makes a run
    /// reproducible only on the in-memory store: with a durable or shared
    /// store (SQLite, PostgreSQL, any store given to the builder) entropy of
    /// the run is mixed in, so that ids never repeat across runs or across
    /// servers sharing a database.
    std::uint64_t seed = 0;
    /// A store shared by several processes (PostgreSQL): how often the outbox
    /// relay looks for events and retries a process that is gone left, in
    /// case the store's wake-up (LISTEN/NOTIFY) was lost. The wake-up itself
    /// comes within the store's lease timeout of the process going.
    domain::Duration takeover_poll_interval = std::chrono::seconds(60);
    application::LogLevel log_level = application::LogLevel::info; ///< the default logger's level
    std::FILE* log_output = stderr; ///< the default logger's output; nullptr: no logs
    /// The default logger writes info and debug lines in batches this often; warnings and errors at once.
    domain::Duration log_flush_interval = std::chrono::milliseconds(100);
};

/// What a shutdown left behind.
struct ShutdownReport {
    std::size_t scheduled_dropped = 0;    ///< scheduled events (retries) not yet due, dropped
    /// Invoices whose accepted work had not settled at exit, by kind; an
    /// invoice whose retry was dropped is among `retry_due`.
    application::UnsettledWork unsettled;
};

/// A running payments system in one process: PaymentService for commands and
/// queries, PaymentProcessor charging in the background, an event bus for
/// subscribers.
///
/// Ownership: the engine shares ownership of every adapter given to its
/// builder (std::shared_ptr) and keeps them alive until it is destroyed. An
/// io_context given to run_on() is borrowed: it must outlive the engine.
///
/// Threads:
/// - Bus handlers, scheduled retries and timeouts run on the engine's
///   executor: its own pool, or the application's io_context (which the
///   application runs, on as many threads as it likes). Events of one invoice
///   reach a handler in order, one at a time; handlers must not block.
/// - Gateway callbacks may come on any thread, inline inside charge() or
///   lookup() included. One that comes after the engine is destroyed is
///   ignored; the destructor waits for one that is running.
/// - service() is thread-safe and may be called from anywhere, handlers included.
/// - wait_idle(), wait_settled() and shutdown() block: call them from a thread
///   that is not running the executor (never from a handler), or they wait
///   for work that cannot run.
///
/// Example:
///     auto engine = payments::Engine::builder()
///                       .gateway("acme", std::make_shared<AcmeGateway>())
///                       .logger(std::make_shared<MyLogger>())
///                       .build()
///                       .value();
///     auto amount = payments::domain::Money::positive(1999, payments::domain::Currency::usd()).value();
///     auto invoice = engine->service().create_invoice({.amount = amount}).value();
///     engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_ok"});
///     engine->wait_settled(std::chrono::seconds(30));   // PAID, FAILED or NEEDS_REVIEW
class Engine {
public:
    /// A builder that takes the application's adapters; see EngineBuilder.
    static EngineBuilder builder(EngineOptions options = {});
    /// Every adapter by default: the same as builder(options).build().
    static Result<std::unique_ptr<Engine>> create(EngineOptions options);
    /// Calls shutdown() with a short grace period.
    ~Engine();
    Engine(Engine const&) = delete;
    Engine& operator=(Engine const&) = delete;

    /// The use cases: commands and queries. Thread-safe.
    application::PaymentService& service();
    /// The event bus: subscribe(), subscribe_all(), publish().
    application::EventBus& bus();
    /// The bus as its adapter (stats, dead letters and their replay); include
    /// <payments/infrastructure/bus/asio_event_bus.hpp> to use it.
    infrastructure::AsioEventBus& asio_bus();
    /// The gateways in preference order, as given to the builder (or the one
    /// simulated gateway). A new attempt goes to the first whose circuit is usable.
    std::span<application::NamedGateway const> gateways() const;
    /// Each gateway's circuit breaker, in preference order (`/health/ready` shows them).
    std::vector<application::GatewayHealth> gateway_health() const;
    /// The default gateway, or nullptr when the application gave its own;
    /// include <payments/infrastructure/gateway/simulated_gateway.hpp> to use it.
    infrastructure::SimulatedGateway* simulated_gateway();
    /// The engine's Prometheus registry: the bus's and the default stores'
    /// figures, and the use cases' counters unless the application gave its own Metrics.
    infrastructure::MetricsRegistry& metrics();
    /// The logger in use (the application's, or the JSON logger).
    application::Logger& logger();
    /// The clock in use.
    application::Clock const& clock();
    /// False while the store refuses every write until it has decided an
    /// earlier commit (SQLite: one whose fsync failed, until its seal is
    /// durable); the server's `/health/ready` answers 503 meanwhile.
    bool store_writable() const;
    /// The processor: its janitor and what it has not settled.
    application::PaymentProcessor& processor();
    /// What the build found from an earlier run (a durable store) and started
    /// again: events published again, scheduled events re-armed, attempts re-driven.
    struct Recovery {
        std::size_t republished = 0;
        std::size_t rearmed = 0;
        std::size_t redriven = 0;
    };
    Recovery const& recovery() const;
    /// True while the outbox relay still has an earlier run's undelivered
    /// events to hand the bus (it pages them in while the bus has room;
    /// recovery() counts only what the build handed over); the server's
    /// `/health/ready` answers 503 meanwhile. Retries not yet due are re-armed
    /// after, as the bus has room, and do not count (review 21 F1: one due in
    /// days kept a replica unready). False once shutdown() began.
    bool recovering() const;

    /// Waits until nothing is queued on the bus, no handler is running and no
    /// gateway call is out: "nothing is happening now". A retry scheduled for
    /// later does not count, so an invoice may still be PROCESSING. False at
    /// the timeout.
    bool wait_idle(std::chrono::steady_clock::duration timeout);

    /// Waits until every invoice with accepted work is settled (PAID or
    /// FAILED) or waiting on an operator (NEEDS_REVIEW): scheduled retries,
    /// calls at the gateway and unknown answers being verified all count as
    /// unsettled. Then waits for the bus to deliver what is queued, so every
    /// subscriber has seen the settling events. False at the timeout.
    bool wait_settled(std::chrono::steady_clock::duration timeout);

    /// Graceful stop. New commands are refused at once (`unavailable`, before
    /// anything is committed); work already accepted goes on for up to
    /// `grace`, retries that fall due included; then the bus stops
    /// (scheduled retries not yet due are dropped), the processor stops, and
    /// what is still unsettled is counted and logged by kind. Idempotent: a
    /// second call returns an empty report.
    ShutdownReport shutdown(std::chrono::steady_clock::duration grace);

private:
    friend class EngineBuilder;
    struct Impl;
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// Assembles an Engine from the application's adapters; each is optional and
/// defaults to the library's own. Setters return the builder, so calls chain.
/// Adapters are shared: the engine keeps them alive while it lives. Each must
/// be thread-safe, as its port says.
class EngineBuilder {
public:
    explicit EngineBuilder(EngineOptions options = {});

    /// Replaces the options (threads, retries, timeouts, defaults' settings).
    EngineBuilder& options(EngineOptions options);
    /// The engine's own pool of `count` threads (0: one per core). The default.
    EngineBuilder& threads(unsigned count);
    /// Runs on the application's io_context instead of a pool of its own. The
    /// application runs it (on any number of threads) until shutdown() has
    /// returned, and it must outlive the engine.
    EngineBuilder& run_on(boost::asio::io_context& io);
    /// Where invoices and payments live. Default: in memory.
    EngineBuilder& store(std::shared_ptr<application::Store> store);
    /// Where idempotency records live. Default: in memory, bounded
    /// (EngineOptions::idempotency_ttl, idempotency_max_records).
    EngineBuilder& idempotency_store(std::shared_ptr<application::IdempotencyStore> store);
    /// Adds a gateway; call again for more, in preference order. The name is
    /// 1-64 characters of A-Z a-z 0-9 _ - and unique. Default: one simulated gateway, "simulated".
    EngineBuilder& gateway(std::string name, std::shared_ptr<application::PaymentGateway> gateway);
    /// Where logs go. Default: JSON lines to EngineOptions::log_output.
    EngineBuilder& logger(std::shared_ptr<application::Logger> logger);
    /// What the use cases count. Default: Prometheus families in Engine::metrics().
    EngineBuilder& metrics(std::shared_ptr<application::Metrics> metrics);
    /// Where "now" comes from. Default: the system clock.
    EngineBuilder& clock(std::shared_ptr<application::Clock const> clock);

    /// The running engine; `invalid_argument` for invalid options, a null
    /// adapter or a gateway name that is empty, too long or given twice.
    Result<std::unique_ptr<Engine>> build();

private:
    friend class Engine;
    EngineOptions options_;
    boost::asio::io_context* io_ = nullptr;
    std::shared_ptr<application::Store> store_;
    std::shared_ptr<application::IdempotencyStore> idempotency_;
    std::vector<application::NamedGateway> gateways_;
    std::shared_ptr<application::Logger> logger_;
    std::shared_ptr<application::Metrics> metrics_;
    std::shared_ptr<application::Clock const> clock_;
    std::string invalid_; // the first invalid argument given, reported by build()
};

} // namespace payments
