#pragma once
// The composition root: the library's use cases wired to its default adapters
// (thread pool, Asio bus and scheduler, in-memory store, simulated gateway,
// Prometheus metrics, JSON logs). Applications with their own adapters wire
// PaymentService and PaymentProcessor themselves instead.

#include <payments/application/payment_processor.hpp>
#include <payments/application/payment_service.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/observability/metrics_registry.hpp>
#include <payments/infrastructure/gateway/simulated_gateway.hpp>

#include <chrono>
#include <cstdio>
#include <memory>

namespace payments {

struct EngineOptions {
    unsigned threads = 0; ///< 0: one per core
    application::ProcessorOptions processor;
    infrastructure::SimulatedGatewayOptions gateway;
    /// Each gateway's circuit breaker.
    application::BreakerOptions breaker;
    infrastructure::BusOptions bus;
    domain::Duration idempotency_ttl = std::chrono::hours(24);
    /// Idempotency records kept at most; see InMemoryIdempotencyStore for who is evicted.
    std::size_t idempotency_max_records = 100'000;
    std::uint64_t seed = 0; ///< ids and jitter; 0: from std::random_device
    application::LogLevel log_level = application::LogLevel::info;
    std::FILE* log_output = stderr; ///< nullptr: no logs
    /// Info and debug lines are written in batches this often; warnings and errors at once.
    domain::Duration log_flush_interval = std::chrono::milliseconds(100);
};

/// What a shutdown left behind.
struct ShutdownReport {
    std::size_t scheduled_dropped = 0;    ///< scheduled events (retries) not yet due, dropped
    /// Invoices whose accepted work had not settled at exit, by kind; an
    /// invoice whose retry was dropped is among `retry_due`.
    application::UnsettledWork unsettled;
};

/// A running payments system in one process.
///
/// Example:
///     auto engine = payments::Engine::create({}).value();
///     auto amount = payments::domain::Money::positive(1999, payments::domain::Currency::usd()).value();
///     auto invoice = engine->service().create_invoice({.amount = amount}).value();
///     engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_ok"});
///     engine->wait_idle(std::chrono::seconds(5));   // invoice is now PAID
class Engine {
public:
    static Result<std::unique_ptr<Engine>> create(EngineOptions options);
    /// Calls shutdown() with a short grace period.
    ~Engine();

    application::PaymentService& service();
    infrastructure::AsioEventBus& bus();
    infrastructure::SimulatedGateway& gateway();
    /// The gateways in order of preference, with their circuits (`/health/ready` shows them).
    application::Gateways const& gateways();
    infrastructure::MetricsRegistry& metrics();
    application::Logger& logger();
    application::Clock const& clock();

    /// Waits until no event is queued or being handled and no gateway call is
    /// out. Scheduled retries that are not yet due do not count.
    bool wait_idle(std::chrono::steady_clock::duration timeout);

    /// The processor: its janitor and what it has not settled.
    application::PaymentProcessor& processor();

    /// Graceful stop. New commands are refused at once (`unavailable`, before
    /// anything is committed); work already accepted goes on for up to
    /// `grace`, retries that fall due included; then the bus stops
    /// (scheduled retries not yet due are dropped), the processor stops, and
    /// what is still unsettled is counted and logged by kind. Idempotent: a
    /// second call returns an empty report.
    ShutdownReport shutdown(std::chrono::steady_clock::duration grace);

private:
    struct Impl;
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace payments
