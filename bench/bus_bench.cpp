// Figures 1-3: the bus against the raw ingredients it is built from.
#include "figures.hpp"
#include "report.hpp"

#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/asio_scheduler.hpp>
#include <payments/infrastructure/system/clocks.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/system/seeded_random.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/signals2/signal.hpp>

#include <atomic>
#include <future>
#include <memory>

namespace bench {

using namespace payments;
using namespace payments::domain;
namespace asio = boost::asio;

namespace {

constexpr std::size_t invoices = 1024; // distinct invoices the events belong to

// A PaymentRequested as the processor sees it: ids of production length.
Event sample_event(std::size_t n, Random& random) {
    EventEnvelope envelope{EventId::generate(random), Timestamp{},
                           CorrelationId::generate(random),
                           InvoiceId::parse("inv_bench_" + std::to_string(n % invoices)).value(),
                           PaymentId::generate(random), 1};
    std::string gateway_key(envelope.payment_id.str());
    return PaymentRequested{std::move(envelope), Money::positive(1999, Currency::usd()).value(), "pm_card_ok",
                            std::move(gateway_key), Timestamp{}};
}

std::vector<Event> sample_events(std::size_t count) {
    infrastructure::SeededRandom random(42);
    std::vector<Event> events;
    events.reserve(count);
    for (std::size_t i = 0; i < count; ++i) events.push_back(sample_event(i, random));
    return events;
}

// The raw composite: a Signals2 signal, emitted by an asio::post handler per event.
struct RawFanOut {
    boost::signals2::signal<void(Event const&)> signal;
    std::atomic<std::size_t> handled{0};

    RawFanOut() {
        signal.connect([this](Event const& e) {
            if (std::holds_alternative<PaymentRequested>(e)) handled.fetch_add(1, std::memory_order_relaxed);
        });
    }
};

// The bus and what it needs, on the given executor.
struct BusFixture {
    explicit BusFixture(asio::any_io_executor ex)
        : scheduler(ex, clock), bus(ex, scheduler, clock, logger),
          subscription(bus.subscribe<PaymentRequested>("bench", [this](PaymentRequested const&) {
              handled.fetch_add(1, std::memory_order_relaxed);
          })) {}

    infrastructure::SystemClock clock;
    infrastructure::NullLogger logger;
    infrastructure::AsioScheduler scheduler;
    infrastructure::AsioEventBus bus;
    std::atomic<std::size_t> handled{0};
    application::Subscription subscription;
};

constexpr int repetitions = 9;

} // namespace

// 1. Publish → handler on one thread, in batches of 1,000 between polls.
void figure_bus(Options const& options) {
    std::size_t const count = options.quick ? 20'000 : 200'000;
    std::size_t const batch = 1000;
    std::vector<Event> const events = sample_events(count);
    std::vector<Event> copy;

    Trial const raw{[&] { copy = events; }, [&] {
        asio::io_context io;
        RawFanOut fan_out;
        for (std::size_t i = 0; i < count; i += batch) {
            for (std::size_t j = i; j < i + batch; ++j)
                asio::post(io, [&fan_out, e = std::move(copy[j])] { fan_out.signal(e); });
            io.restart();
            io.poll();
        }
        if (fan_out.handled != count) throw std::runtime_error("raw fan-out lost events");
    }};
    Trial const bus{[&] { copy = events; }, [&] {
        asio::io_context io;
        BusFixture fixture(io.get_executor());
        for (std::size_t i = 0; i < count; i += batch) {
            for (std::size_t j = i; j < i + batch; ++j) fixture.bus.publish(std::move(copy[j]));
            io.restart();
            io.poll();
        }
        if (fixture.handled != count) throw std::runtime_error("bus lost events");
    }};
    auto const [bus_ns, raw_ns] = paired_median_ns(repetitions, bus, raw);
    print({"bus publish->handler, 1 thread", per(bus_ns, count), per(raw_ns, count), "ns/event", Goal::at_most, 1.5});
}

// 2. Publish on one thread, handle on a pool of two.
void figure_handoff(Options const& options) {
    std::size_t const count = options.quick ? 20'000 : 200'000;
    std::vector<Event> const events = sample_events(count);
    std::vector<Event> copy;

    Trial const raw{[&] { copy = events; }, [&] {
        asio::thread_pool pool(2);
        RawFanOut fan_out;
        for (Event& e : copy) asio::post(pool, [&fan_out, e = std::move(e)] { fan_out.signal(e); });
        pool.join();
        if (fan_out.handled != count) throw std::runtime_error("raw handoff lost events");
    }};
    Trial const bus{[&] { copy = events; }, [&] {
        asio::thread_pool pool(2);
        BusFixture fixture(pool.get_executor());
        for (Event& e : copy) fixture.bus.publish(std::move(e));
        if (!fixture.bus.wait_idle(std::chrono::steady_clock::now() + std::chrono::minutes(1)))
            throw std::runtime_error("bus did not drain");
        pool.join();
        if (fixture.handled != count) throw std::runtime_error("bus handoff lost events");
    }};
    auto const [bus_ns, raw_ns] = paired_median_ns(repetitions, bus, raw);
    print({"cross-thread handoff, pool of 2", per(bus_ns, count), per(raw_ns, count), "ns/event", Goal::at_most, 0.5});
}

namespace {


// Resident bytes of `count` retries pending an hour from now, each its own event.
long bus_pending_bytes(std::size_t count) {
    asio::io_context io;
    BusFixture fixture(io.get_executor());
    infrastructure::SeededRandom random(7);
    auto const later = fixture.clock.now() + std::chrono::hours(1);
    long const before = resident_bytes();
    for (std::size_t i = 0; i < count; ++i)
        fixture.bus.schedule(sample_event(i, random), later + std::chrono::microseconds(random.next_u64() % 60'000'000));
    return resident_bytes() - before;
}

long raw_pending_bytes(std::size_t count) {
    asio::io_context io;
    RawFanOut fan_out;
    infrastructure::SeededRandom random(7);
    std::vector<std::unique_ptr<asio::steady_timer>> timers;
    long const before = resident_bytes();
    timers.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        auto& timer = timers.emplace_back(std::make_unique<asio::steady_timer>(
            io, std::chrono::hours(1) + std::chrono::microseconds(random.next_u64() % 60'000'000)));
        timer->async_wait([&fan_out, e = sample_event(i, random)](boost::system::error_code ec) {
            if (!ec) fan_out.signal(e);
        });
    }
    return resident_bytes() - before;
}

} // namespace

// 3. A million retries: schedule and fire, against a steady_timer each; and
// the memory each pending retry holds.
void figure_timers(Options const& options) {
    // Memory first, in children, while this process's heap is still small.
    std::size_t const pending = options.quick ? 100'000 : 1'000'000;
    double const bus_bytes = per(static_cast<double>(in_child(bus_pending_bytes, pending)), pending);
    double const raw_bytes = per(static_cast<double>(in_child(raw_pending_bytes, pending)), pending);
    std::size_t const count = options.quick ? 50'000 : 1'000'000;
    std::vector<Event> const events = sample_events(count);
    std::vector<Event> copy;
    // Due times spread over the last second, in random order: everything is
    // due at once, so the figure is the cost of ordering and firing, not waiting.
    std::vector<std::chrono::microseconds> offsets(count);
    infrastructure::SeededRandom random(3);
    for (auto& offset : offsets) offset = std::chrono::microseconds(random.next_u64() % 1'000'000);

    int const reps = options.quick ? 3 : 3;
    Trial const raw{[&] { copy = events; }, [&] {
        asio::io_context io;
        RawFanOut fan_out;
        auto const now = asio::steady_timer::clock_type::now();
        std::vector<std::unique_ptr<asio::steady_timer>> timers;
        timers.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
            auto& timer = timers.emplace_back(std::make_unique<asio::steady_timer>(io, now - offsets[i]));
            timer->async_wait([&fan_out, e = std::move(copy[i])](boost::system::error_code ec) {
                if (!ec) fan_out.signal(e);
            });
        }
        io.run();
        if (fan_out.handled != count) throw std::runtime_error("raw timers lost retries");
    }};
    Trial const bus{[&] { copy = events; }, [&] {
        asio::io_context io;
        BusFixture fixture(io.get_executor());
        auto const now = fixture.clock.now();
        for (std::size_t i = 0; i < count; ++i) fixture.bus.schedule(std::move(copy[i]), now - offsets[i]);
        while (fixture.handled < count) io.run_one();
        if (fixture.handled != count) throw std::runtime_error("bus lost retries");
    }};
    auto const [bus_ns, raw_ns] = paired_median_ns(reps, bus, raw);
    print({"1M retries scheduled and fired", per(bus_ns, count), per(raw_ns, count), "ns/retry", Goal::at_most, 1.0});

    std::printf("INFO\traw steady_timer per pending retry (event included): %.0f B\n", raw_bytes);
    print({"memory per pending retry", bus_bytes, 0, "B", Goal::at_most, 200});
}

} // namespace bench
