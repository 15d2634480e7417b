// Figure 4: the whole payment flow in process: create an invoice, request a
// payment with an idempotency key, the gateway charges at once, the invoice is PAID.
#include "figures.hpp"
#include "instant_gateway.hpp"
#include "report.hpp"

#include <payments/application/payment_processor.hpp>
#include <payments/application/payment_service.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/asio_scheduler.hpp>
#include <payments/infrastructure/system/clocks.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/store/memory_store.hpp>
#include <payments/infrastructure/observability/metrics_registry.hpp>
#include <payments/infrastructure/observability/prometheus_metrics.hpp>
#include <payments/infrastructure/system/seeded_random.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <future>
#include <latch>
#include <thread>

namespace bench {

using namespace payments;
using namespace payments::domain;
namespace asio = boost::asio;

namespace {

// The library wired as an application would wire it, with the instant gateway.
struct System {
    System()
        : random(1), logger(stderr, application::LogLevel::warn, clock), metrics(registry),
          pool(std::max(1u, std::thread::hardware_concurrency())), scheduler(pool.get_executor(), clock),
          bus(pool.get_executor(), scheduler, clock, logger),
          ports{clock, random, store, idempotency, bus, scheduler, gateways, metrics, logger}, service(ports),
          processor(application::PaymentProcessor::start(ports, {}).value()) {}

    ~System() {
        processor->stop();
        bus.stop();
        scheduler.shutdown();
        pool.join();
    }

    infrastructure::SystemClock clock;
    infrastructure::SeededRandom random;
    infrastructure::JsonLogger logger;
    infrastructure::MetricsRegistry registry;
    infrastructure::PrometheusMetrics metrics;
    asio::thread_pool pool;
    infrastructure::AsioScheduler scheduler;
    infrastructure::AsioEventBus bus;
    infrastructure::InMemoryStore store;
    infrastructure::InMemoryIdempotencyStore idempotency;
    InstantGateway gateway;
    application::Gateways gateways{gateway};
    application::Ports ports;
    application::PaymentService service;
    std::shared_ptr<application::PaymentProcessor> processor;
};

// Runs `count` flows on the pool (clients share the pool's threads with the
// bus) and returns when every invoice is PAID.
void run_flows(System& system, std::size_t count) {
    std::atomic<std::size_t> paid{0};
    std::promise<void> all_paid;
    auto subscription = system.bus.subscribe<InvoicePaid>("bench", [&](InvoicePaid const&) {
        if (paid.fetch_add(1, std::memory_order_relaxed) + 1 == count) all_paid.set_value();
    });
    Money const amount = Money::positive(1999, Currency::usd()).value();
    std::atomic<std::size_t> next{0};
    constexpr std::size_t chunk = 64;
    unsigned const clients = std::max(1u, std::thread::hardware_concurrency());
    std::latch clients_done(clients);
    // One client per thread; each posts its next chunk when done, so that
    // clients and deliveries interleave as they would under live traffic.
    std::function<void()> client = [&] {
        std::size_t const from = next.fetch_add(chunk);
        if (from >= count) {
            clients_done.count_down();
            return;
        }
        for (std::size_t n = from; n < std::min(count, from + chunk); ++n) {
            auto invoice = system.service.create_invoice({.amount = amount});
            if (!invoice) throw std::runtime_error("create_invoice failed");
            auto key = application::IdempotencyKey::make("", "key-" + std::to_string(n)).value();
            auto outcome = system.service.request_payment(
                {.invoice_id = invoice->id(), .payment_method = "pm_card_ok", .idempotency_key = std::move(key)});
            if (!outcome.result) throw std::runtime_error("request_payment failed");
        }
        asio::post(system.pool, client);
    };
    for (unsigned i = 0; i < clients; ++i) asio::post(system.pool, client);
    all_paid.get_future().wait();
    clients_done.wait(); // the clients refer to this frame
}

long settled_bytes(std::size_t count) {
    long const before = resident_bytes();
    System system;
    run_flows(system, count);
    system.bus.wait_idle(std::chrono::steady_clock::now() + std::chrono::minutes(1));
    return resident_bytes() - before;
}


} // namespace

void figure_flow(Options const& options) {
    // The memory figure first, in a child, before this process starts threads.
    std::size_t const settled = options.quick ? 50'000 : 1'000'000;
    double const bytes = per(static_cast<double>(in_child(settled_bytes, settled)), settled);

    std::size_t const count = options.quick ? 20'000 : 200'000;
    double const ns = median_ns(3, [&] {
        System system;
        run_flows(system, count);
    });
    double const per_second = 1e9 / per(ns, count);
    print({"payment flows/s, " + std::to_string(std::thread::hardware_concurrency()) + " threads", per_second, 0,
           "flows/s", Goal::at_least, 500'000});
    print({"resident per settled invoice at " + std::to_string(settled / 1000) + "k", bytes, 0, "B",
           Goal::at_most, 512});
}

} // namespace bench
