#pragma once
// The whole library on simulated time and one thread: the real bus on an
// io_context the test drives, a ManualClock and a ManualScheduler. Nothing
// sleeps; run() advances time from one due timer to the next.

#include "builders.hpp"

#include <payments/application/payment_processor.hpp>
#include <payments/application/payment_service.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>
#include <payments/infrastructure/store/memory_store.hpp>
#include <payments/infrastructure/observability/prometheus_metrics.hpp>
#include <payments/infrastructure/system/seeded_random.hpp>
#include <payments/infrastructure/gateway/simulated_gateway.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace test {

struct WorldOptions {
    application::ProcessorOptions processor{};
    infrastructure::SimulatedGatewayOptions gateway{};
    application::BreakerOptions breaker{};
    bool two_gateways = false; ///< "a" (`gateway`) then "b" (`gateway_b`), in that order of preference
    std::uint64_t seed = 42;
    std::string instance_id = "test";
    /// Another store (a PostgresStore shared with a second World: two processes).
    application::Store* store = nullptr;
    application::IdempotencyStore* idempotency = nullptr;
    /// Other providers behind "a" and "b" (shared by two Worlds: one provider).
    application::PaymentGateway* provider_a = nullptr;
    application::PaymentGateway* provider_b = nullptr;
    /// The scheduler the processor and the service see, made around the
    /// World's ManualScheduler (the bus and the simulated gateways keep it).
    std::function<std::unique_ptr<application::Scheduler>(infrastructure::ManualScheduler&)> wrap_scheduler = {};
};

// The simulated gateway, with look-ups that can be made to go unanswered and
// a provider that can be made to fail as a whole.
class TestGateway final : public application::PaymentGateway {
public:
    enum class Mode {
        working,
        failing, ///< every charge answers TRANSIENT (a 503), nothing is taken
        silent,  ///< no charge is answered, nothing is taken
    };
    explicit TestGateway(infrastructure::SimulatedGateway& inner) : inner_(inner) {}
    void charge(application::ChargeRequest request,
                std::function<void(application::ChargeAnswer)> on_answer) override {
        ++charges;
        if (refuse_over_limit > 0) {
            --refuse_over_limit;
            return on_answer(application::ChargeAnswer::refused_over_limit("too many calls in flight; not sent"));
        }
        if (mode == Mode::failing)
            return on_answer(application::ChargeAnswer::failed(FailureKind::transient, "provider answered 503"));
        if (mode == Mode::silent) return;
        inner_.charge(std::move(request), std::move(on_answer));
    }
    void lookup(std::string key, std::function<void(application::ChargeStatus)> on_answer) override {
        ++lookups;
        if (throwing_lookups) throw std::runtime_error("the adapter failed");
        if (unanswered_lookups > 0) {
            --unanswered_lookups;
            return;
        }
        inner_.lookup(std::move(key), std::move(on_answer));
    }
    int unanswered_lookups = 0;
    bool throwing_lookups = false; ///< lookup() throws, as an adapter with a bug may
    int refuse_over_limit = 0; ///< the next this many charges are refused unsent, as an adapter at its limit does
    int lookups = 0;
    int charges = 0; ///< charge calls, answered or not
    Mode mode = Mode::working;

private:
    infrastructure::SimulatedGateway& inner_;
};

struct World {
    explicit World(WorldOptions options = {})
        : random(options.seed), scheduler(clock), bus(io.get_executor(), scheduler, clock, logger),
          gateway(scheduler, clock, options.gateway), gateway_port(gateway), gateway_b(scheduler, clock, options.gateway), gateway_b_port(gateway_b),
          gateways(options.two_gateways ? two(options)
                                        : application::Gateways(options.provider_a ? *options.provider_a : gateway_port,
                                                                options.breaker, "a")),
          metrics(registry),
          instance_id(options.instance_id),
          wrapped_scheduler(options.wrap_scheduler ? options.wrap_scheduler(scheduler) : nullptr),
          ports{clock, random, options.store ? *options.store : store,
                options.idempotency ? *options.idempotency : idempotency, bus,
                wrapped_scheduler ? *wrapped_scheduler : static_cast<application::Scheduler&>(scheduler), gateways,
                metrics, logger, instance_id},
          service(ports),
          processor(application::PaymentProcessor::start(ports, options.processor).value()) {
        for (std::size_t kind = 0; kind < event_kinds; ++kind)
            recordings.push_back(bus.subscribe_kind(kind, "recorder", [this](Event const& e) { events.push_back(e); }));
    }

    World(World const&) = delete;
    World& operator=(World const&) = delete;

    // A store's writer may still hold the processor for a moment (answering a
    // commit): the rest of the World goes only once it has let go, as in ~Engine.
    ~World() {
        std::weak_ptr<application::PaymentProcessor> const gone = processor;
        processor.reset();
        while (!gone.expired()) std::this_thread::yield();
    }

    // "a" then "b", neither owned.
    application::Gateways two(WorldOptions const& options) {
        auto unowned = [](application::PaymentGateway& g) {
            return std::shared_ptr<application::PaymentGateway>(std::shared_ptr<application::PaymentGateway>(), &g);
        };
        return application::Gateways::make(
                   {{"a", unowned(options.provider_a ? *options.provider_a : gateway_port)},
                    {"b", unowned(options.provider_b ? *options.provider_b : gateway_b_port)}},
                   options.breaker)
            .value();
    }

    // Runs everything that is due now, until nothing is.
    std::size_t settle() {
        std::size_t total = 0;
        for (;;) {
            std::size_t const n = io.poll() + scheduler.run_due();
            io.restart();
            if (n == 0) {
                // A durable store answers a settlement's commit on its writer
                // thread, which posts the rest to the scheduler: part of this step.
                if (!processor->wait_commits(std::chrono::steady_clock::now() + std::chrono::seconds(30)))
                    throw std::runtime_error("a settlement's commit was not answered within 30 s");
                std::size_t const late = io.poll() + scheduler.run_due();
                io.restart();
                if (late == 0) return total;
                total += late;
                continue;
            }
            total += n;
        }
    }

    // Runs to quiescence, jumping the clock from one due timer to the next.
    void run() {
        settle();
        while (scheduler.advance_to_next()) settle();
    }

    Invoice create(Money amount = usd(1000)) {
        return service.create_invoice({.amount = amount}).value();
    }

    Payment pay(Invoice const& invoice, std::string method) {
        return service.request_payment({.invoice_id = invoice.id(), .payment_method = std::move(method)}).result.value();
    }

    Invoice invoice(InvoiceId const& id) { return service.invoice(id).value(); }

    template <class E>
    std::vector<E> events_of() const {
        std::vector<E> found;
        for (auto const& e : events)
            if (auto const* typed = std::get_if<E>(&e)) found.push_back(*typed);
        return found;
    }

    double counter(std::string const& line_prefix) const {
        std::string const text = registry.render();
        auto pos = text.find("\n" + line_prefix + " ");
        REQUIRE_MESSAGE(pos != std::string::npos, "no metric " << line_prefix);
        return std::stod(text.substr(pos + line_prefix.size() + 2));
    }

    boost::asio::io_context io;
    infrastructure::ManualClock clock;
    infrastructure::SeededRandom random;
    infrastructure::NullLogger logger;
    infrastructure::ManualScheduler scheduler;
    infrastructure::AsioEventBus bus;
    infrastructure::InMemoryStore store;
    infrastructure::InMemoryIdempotencyStore idempotency;
    infrastructure::SimulatedGateway gateway;
    TestGateway gateway_port;
    infrastructure::SimulatedGateway gateway_b;
    TestGateway gateway_b_port;
    application::Gateways gateways;
    infrastructure::MetricsRegistry registry;
    infrastructure::PrometheusMetrics metrics;
    std::string instance_id;
    std::unique_ptr<application::Scheduler> wrapped_scheduler;
    application::Ports ports;
    application::PaymentService service;
    std::shared_ptr<application::PaymentProcessor> processor;
    std::vector<application::Subscription> recordings;
    std::vector<Event> events;
};

} // namespace test
