#include <payments/engine.hpp>

#include <payments/infrastructure/bus/asio_scheduler.hpp>
#include <payments/infrastructure/system/clocks.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/store/memory_store.hpp>
#include <payments/infrastructure/observability/prometheus_metrics.hpp>
#include <payments/infrastructure/system/seeded_random.hpp>

#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

namespace payments {

using namespace infrastructure;

namespace {

unsigned thread_count(EngineOptions const& o) {
    return o.threads != 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
}

// As many delivery tasks as the pool has threads.
BusOptions bus_options(EngineOptions const& o) {
    BusOptions bus = o.bus;
    bus.delivery_tasks = thread_count(o);
    return bus;
}

} // namespace

// Members in dependency order: each is built from those above it and
// destroyed before them.
struct Engine::Impl {
    explicit Impl(EngineOptions const& o)
        : options(o), random(o.seed != 0 ? o.seed : SeededRandom::entropy_seed()),
          logger(o.log_output, o.log_level, clock, o.log_flush_interval), metrics(registry),
          pool(thread_count(o)),
          scheduler(pool.get_executor(), clock), bus(pool.get_executor(), scheduler, clock, logger, bus_options(o)),
          idempotency(o.idempotency_ttl, o.idempotency_max_records), gateway(scheduler, clock, o.gateway),
          gateways(gateway, o.breaker, "simulated"),
          ports{clock, random, store, idempotency, bus, scheduler, gateways, metrics, logger}, service(ports) {
        register_bus_metrics(registry, bus);
        register_store_metrics(registry, store, idempotency);
    }

    EngineOptions options;
    SystemClock clock;
    SeededRandom random;
    JsonLogger logger;
    MetricsRegistry registry;
    PrometheusMetrics metrics;
    boost::asio::thread_pool pool;
    AsioScheduler scheduler;
    AsioEventBus bus;
    InMemoryStore store;
    InMemoryIdempotencyStore idempotency;
    SimulatedGateway gateway;
    application::Gateways gateways;
    application::Ports ports;
    application::PaymentService service;
    std::shared_ptr<application::PaymentProcessor> processor;
    std::atomic<bool> stopped{false}; // shutdown() from a signal thread and the destructor
};

Result<std::unique_ptr<Engine>> Engine::create(EngineOptions options) {
    if (auto valid = options.breaker.validate(); !valid) return valid.error();
    auto impl = std::make_unique<Impl>(options);
    auto processor = application::PaymentProcessor::start(impl->ports, options.processor);
    if (!processor) return processor.error();
    impl->processor = std::move(*processor);
    return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() { shutdown(std::chrono::seconds(5)); }

application::PaymentService& Engine::service() { return impl_->service; }
AsioEventBus& Engine::bus() { return impl_->bus; }
SimulatedGateway& Engine::gateway() { return impl_->gateway; }
application::Gateways const& Engine::gateways() { return impl_->gateways; }
MetricsRegistry& Engine::metrics() { return impl_->registry; }
application::Logger& Engine::logger() { return impl_->logger; }
application::Clock const& Engine::clock() { return impl_->clock; }
application::PaymentProcessor& Engine::processor() { return *impl_->processor; }

bool Engine::wait_idle(std::chrono::steady_clock::duration timeout) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    // A settling gateway call publishes onto the bus and a delivery may start
    // a gateway call, so idle means both at once. The processor is read first:
    // a settlement publishes before it releases its claim, and a delivery
    // claims before it leaves the queue, so "processor idle, then bus empty"
    // cannot miss work moving between the two.
    for (;;) {
        if (!impl_->bus.wait_idle(deadline) || !impl_->processor->wait_idle(deadline)) return false;
        if (impl_->processor->in_flight() == 0 && impl_->bus.stats().queue_depth == 0) return true;
    }
}

ShutdownReport Engine::shutdown(std::chrono::steady_clock::duration grace) {
    if (impl_->stopped.exchange(true)) return {};
    impl_->service.stop_accepting();
    // The processor stays subscribed through the grace period, so a retry
    // that falls due meanwhile is still charged.
    if (!wait_idle(grace)) impl_->logger.warn("shutdown grace period ended with work in flight");
    ShutdownReport report;
    report.scheduled_dropped = impl_->bus.stop().size();
    impl_->processor->stop();
    report.unsettled = impl_->processor->unsettled();
    auto count = [](std::size_t n) { return static_cast<std::int64_t>(n); };
    if (report.scheduled_dropped != 0 || report.unsettled.total() != 0)
        impl_->logger.warn("unsettled work at shutdown", {{"scheduled_dropped", count(report.scheduled_dropped)},
                                                          {"at_gateway", count(report.unsettled.at_gateway)},
                                                          {"retry_due", count(report.unsettled.retry_due)},
                                                          {"unknown", count(report.unsettled.unknown)},
                                                          {"needs_review", count(report.unsettled.needs_review)}});
    impl_->scheduler.shutdown();
    impl_->pool.join();
    return report;
}

} // namespace payments
