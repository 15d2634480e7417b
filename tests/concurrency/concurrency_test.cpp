// Hammers the real bus on real threads. These run under ThreadSanitizer in CI;
// waits are bounded by generous deadlines that only fail a broken build.
#include "support/builders.hpp"

#include <payments/engine.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/asio_scheduler.hpp>
#include <payments/infrastructure/system/clocks.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>

#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <set>
#include <thread>

using namespace test;
using application::IdempotencyKey;
using application::PaymentRequestReply;

namespace {

constexpr auto deadline = std::chrono::seconds(60);

std::unique_ptr<Engine> a_threaded_engine() {
    EngineOptions options;
    options.threads = 8;
    options.seed = 2026;
    options.log_output = nullptr;
    options.processor.retry = {.base = 1ms, .multiplier = 2.0, .cap = 4ms, .max_attempts = 5};
    options.breaker.open_for = 20ms; // flaky cards are TRANSIENT, which the breaker counts: same scale as the retries
    return Engine::create(options).value();
}

// Counts settled invoices as the bus reports them.
class SettledCounter {
public:
    explicit SettledCounter(application::EventBus& bus)
        : paid_(bus.subscribe<InvoicePaid>("test-paid", [this](InvoicePaid const&) { bump(); })),
          failed_(bus.subscribe<InvoiceFailed>("test-failed", [this](InvoiceFailed const&) { bump(); })) {}

    bool wait_for(int n) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, deadline, [&] { return count_ >= n; });
    }

private:
    void bump() {
        std::lock_guard lock(mutex_);
        ++count_;
        cv_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    int count_ = 0;
    application::Subscription paid_, failed_;
};

template <class F>
void on_threads(int n, F body) {
    std::latch start(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            start.arrive_and_wait(); // all at once
            body(i);
        });
    for (auto& t : threads) t.join();
}

} // namespace

SCENARIO("32 threads with one idempotency key make exactly one payment") {
    auto engine = a_threaded_engine();
    auto invoice = engine->service().create_invoice({.amount = usd(4200)}).value();
    auto const key = IdempotencyKey::make("client-7", "order-42").value();
    application::RequestPayment const request{invoice.id(), "pm_card_ok", key, {}};

    std::vector<std::optional<PaymentRequestReply>> first_answers(32), final_answers(32);
    on_threads(32, [&](int i) {
        auto const slot = static_cast<std::size_t>(i);
        first_answers[slot] = engine->service().request_payment(request);
        // A client told "in use" tries again, as the error invites.
        PaymentRequestReply answer = *first_answers[slot];
        while (!answer.result && answer.result.error().code == ErrorCode::idempotency_key_in_use) {
            std::this_thread::yield();
            answer = engine->service().request_payment(request);
        }
        final_answers[slot] = answer;
    });

    REQUIRE(engine->wait_idle(deadline));
    CHECK(engine->service().payments_of(invoice.id()).value().size() == 1);
    CHECK(engine->simulated_gateway()->charges_for(invoice.id()) == 1);
    int originals = 0;
    for (std::size_t i = 0; i < 32; ++i) {
        CAPTURE(i);
        auto const& first = first_answers[i]->result;
        CHECK((first || first.error().code == ErrorCode::idempotency_key_in_use));
        REQUIRE(final_answers[i]->result);
        CHECK(final_answers[i]->result == final_answers[0]->result);
        if (!final_answers[i]->replayed) ++originals;
    }
    CHECK(originals == 1);
}

SCENARIO("32 threads paying 32 invoices all end PAID, each charged once") {
    auto engine = a_threaded_engine();
    SettledCounter settled(engine->bus());
    std::vector<InvoiceId> ids(32);
    on_threads(32, [&](int i) {
        auto invoice = engine->service().create_invoice({.amount = usd(100 + i)}).value();
        ids[static_cast<std::size_t>(i)] = invoice.id();
        // Every other one needs a retry, so the scheduler takes part too.
        std::string const method = i % 2 == 0 ? "pm_card_ok" : "pm_card_flaky_1";
        REQUIRE(engine->service().request_payment({invoice.id(), method, std::nullopt, {}}).result);
    });
    REQUIRE(settled.wait_for(32));
    REQUIRE(engine->wait_idle(deadline));
    for (auto const& id : ids) {
        CAPTURE(id.str());
        CHECK(engine->service().invoice(id).value().status() == InvoiceStatus::paid);
        CHECK(engine->simulated_gateway()->charges_for(id) == 1);
    }
    CHECK(engine->asio_bus().dead_letters().empty());
}

SCENARIO("every PaymentRequested delivered twice, and again late from other threads: no double charge") {
    auto engine = a_threaded_engine();
    SettledCounter settled(engine->bus());
    std::mutex mutex;
    std::set<std::string> duplicated;
    std::vector<PaymentRequested> seen;
    // An at-least-once transport: each first delivery is echoed straight back.
    auto echo = engine->bus().subscribe<PaymentRequested>("echo", [&](PaymentRequested const& e) {
        {
            std::lock_guard lock(mutex);
            if (!duplicated.insert(std::string(e.envelope.id.str())).second) return;
            seen.push_back(e);
        }
        engine->bus().publish(e);
    });

    constexpr int invoices = 24;
    std::vector<InvoiceId> ids;
    for (int i = 0; i < invoices; ++i) {
        auto invoice = engine->service().create_invoice({.amount = usd(1000)}).value();
        ids.push_back(invoice.id());
        std::string const method = i % 3 == 0 ? "pm_card_flaky_2" : "pm_card_ok";
        REQUIRE(engine->service().request_payment({invoice.id(), method, std::nullopt, {}}).result);
    }
    REQUIRE(settled.wait_for(invoices));
    REQUIRE(engine->wait_idle(deadline));

    std::vector<PaymentRequested> late;
    {
        std::lock_guard lock(mutex);
        late = seen;
    }
    on_threads(4, [&](int t) {
        for (std::size_t i = static_cast<std::size_t>(t); i < late.size(); i += 4) engine->bus().publish(late[i]);
    });
    REQUIRE(engine->wait_idle(deadline));

    std::size_t attempts = 0;
    for (auto const& id : ids) {
        CAPTURE(id.str());
        CHECK(engine->service().invoice(id).value().status() == InvoiceStatus::paid);
        CHECK(engine->simulated_gateway()->charges_for(id) == 1);
        attempts += engine->service().payments_of(id).value().size();
    }
    CHECK(engine->simulated_gateway()->calls() == attempts); // one gateway call per attempt, however often delivered
    CHECK(late.size() == attempts);
}

SCENARIO("events of one invoice are handled in publication order, one at a time, while invoices run in parallel") {
    boost::asio::thread_pool pool(8);
    infrastructure::SystemClock clock;
    infrastructure::NullLogger logger;
    infrastructure::AsioScheduler scheduler(pool.get_executor(), clock);
    infrastructure::AsioEventBus bus(pool.get_executor(), scheduler, clock, logger, {.lanes = 16});

    constexpr int invoices = 16, per_invoice = 400;
    struct Track {
        std::atomic<bool> active{false};
        int last = 0; // only touched by the handler that holds `active`
    };
    std::vector<Track> tracks(invoices);
    std::atomic<int> overlaps{0}, out_of_order{0}, handled{0}, max_parallel{0}, running{0};
    auto sub = bus.subscribe<PaymentFailed>("order-check", [&](PaymentFailed const& e) {
        int const now_running = running.fetch_add(1) + 1;
        int seen_max = max_parallel.load();
        while (now_running > seen_max && !max_parallel.compare_exchange_weak(seen_max, now_running)) {
        }
        Track& track = tracks[static_cast<std::size_t>(std::stoi(std::string(e.envelope.invoice_id.str().substr(4))))];
        if (track.active.exchange(true)) ++overlaps;
        if (e.envelope.attempt != track.last + 1) ++out_of_order;
        track.last = e.envelope.attempt;
        track.active.store(false);
        running.fetch_sub(1);
        handled.fetch_add(1);
    });
    on_threads(invoices, [&](int i) {
        auto const invoice = iid("inv_" + std::to_string(i));
        for (int n = 1; n <= per_invoice; ++n)
            bus.publish(PaymentFailed{{EventId::parse("evt_" + std::to_string(n)).value(), t0(), {}, invoice, pid(n), n},
                                      {FailureKind::transient, "x"}});
    });
    REQUIRE(bus.wait_idle(std::chrono::steady_clock::now() + deadline));
    CHECK(handled.load() == invoices * per_invoice);
    CHECK(overlaps.load() == 0);
    CHECK(out_of_order.load() == 0);
    for (auto const& track : tracks) CHECK(track.last == per_invoice);
    INFO("most handlers seen running at once: " << max_parallel.load());
    bus.stop();
    scheduler.shutdown();
    pool.join();
}

SCENARIO("subscribing and unsubscribing while other threads publish is safe") {
    boost::asio::thread_pool pool(4);
    infrastructure::SystemClock clock;
    infrastructure::NullLogger logger;
    infrastructure::AsioScheduler scheduler(pool.get_executor(), clock);
    infrastructure::AsioEventBus bus(pool.get_executor(), scheduler, clock, logger);
    std::atomic<int> calls{0};
    auto steady = bus.subscribe<InvoicePaid>("steady", [&](InvoicePaid const&) { ++calls; });
    std::atomic<bool> publishing{true};
    std::thread churn([&] {
        while (publishing.load()) {
            auto s = bus.subscribe<InvoicePaid>("churn", [&](InvoicePaid const&) {});
            std::this_thread::yield();
        }
    });
    on_threads(4, [&](int t) {
        for (int n = 0; n < 500; ++n)
            bus.publish(InvoicePaid{{EventId::parse("evt_x").value(), t0(), {}, iid("inv_" + std::to_string(t * 1000 + n)),
                                     pid(1), 1},
                                    usd(1)});
    });
    REQUIRE(bus.wait_idle(std::chrono::steady_clock::now() + deadline));
    publishing.store(false);
    churn.join();
    CHECK(calls.load() == 2000);
    bus.stop();
    scheduler.shutdown();
    pool.join();
}

SCENARIO("late, lost and late-booked answers on 4 threads: every invoice settles, charged exactly once or not at all") {
    GIVEN("an engine whose provider answers after the timeout, loses answers and books late") {
        EngineOptions options;
        options.threads = 4;
        options.seed = 77;
        options.log_output = nullptr;
        options.processor.retry = {.base = 1ms, .multiplier = 2.0, .cap = 4ms, .max_attempts = 2};
        options.processor.gateway_timeout = 20ms;
        options.breaker.open_for = 50ms; // on the same scale as the other durations
        options.processor.settle_window = 150ms;
        options.gateway.late_answer_delay = 40ms;
        options.gateway.booking_delay = 60ms;
        auto engine = Engine::create(options).value();
        SettledCounter settled(engine->bus());
        std::vector<std::string> const methods = {"pm_card_ok", "pm_card_lost_response", "pm_card_late_answer",
                                                  "pm_card_late_booking", "pm_card_timeout", "pm_card_declined"};
        constexpr int per_method = 8;
        std::vector<std::pair<InvoiceId, std::string>> invoices;
        for (int i = 0; i < per_method; ++i)
            for (auto const& method : methods)
                invoices.emplace_back(engine->service().create_invoice({.amount = usd(100 + i)}).value().id(), method);
        WHEN("they are all paid from 4 threads at once") {
            std::latch start(4);
            std::vector<std::thread> clients;
            for (int t = 0; t < 4; ++t)
                clients.emplace_back([&, t] {
                    start.arrive_and_wait();
                    for (std::size_t i = static_cast<std::size_t>(t); i < invoices.size(); i += 4)
                        REQUIRE(engine->service().request_payment({invoices[i].first, invoices[i].second}).result);
                });
            for (auto& client : clients) client.join();
            REQUIRE(settled.wait_for(static_cast<int>(invoices.size())));
            REQUIRE(engine->wait_idle(deadline));
            THEN("PAID means one charge of its amount, FAILED means none") {
                for (auto const& [id, method] : invoices) {
                    CAPTURE(method);
                    Invoice const invoice = engine->service().invoice(id).value();
                    std::size_t const charges = engine->simulated_gateway()->charges_for(id);
                    bool const charged = method != "pm_card_timeout" && method != "pm_card_declined";
                    CHECK(invoice.status() == (charged ? InvoiceStatus::paid : InvoiceStatus::failed));
                    CHECK(charges == (charged ? 1u : 0u));
                }
                CHECK(engine->shutdown(5s).unsettled.total() == 0);
            }
        }
    }
}
