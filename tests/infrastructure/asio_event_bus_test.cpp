#include "support/builders.hpp"

#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <stdexcept>
#include <thread>

using namespace test;
using infrastructure::AsioEventBus;

namespace {

// The bus on one thread and simulated time.
struct BusFixture {
    boost::asio::io_context io;
    infrastructure::ManualClock clock;
    infrastructure::ManualScheduler scheduler{clock};
    infrastructure::NullLogger logger;
    AsioEventBus bus{io.get_executor(), scheduler, clock, logger, {.lanes = 8, .delivery_attempts = 3}};

    void settle() {
        while (io.poll() + scheduler.run_due() > 0) io.restart();
        io.restart();
    }
};

Event failed_event(std::string const& invoice, int attempt) {
    return PaymentFailed{{EventId::parse("evt_" + std::to_string(attempt)).value(), t0(), {}, iid(invoice), pid(attempt),
                          attempt},
                         {FailureKind::transient, "x"}};
}

Event paid_event(std::string const& invoice) {
    return InvoicePaid{{EventId::parse("evt_p").value(), t0(), {}, iid(invoice), pid(1), 1}, usd(1)};
}

} // namespace

SCENARIO("subscribers get the events of their type, later, not inside publish()") {
    BusFixture f;
    std::vector<int> failed_attempts;
    int paid = 0;
    auto s1 = f.bus.subscribe<PaymentFailed>("failed", [&](PaymentFailed const& e) {
        failed_attempts.push_back(e.envelope.attempt);
    });
    auto s2 = f.bus.subscribe<InvoicePaid>("paid", [&](InvoicePaid const&) { ++paid; });
    CHECK(f.bus.publish(failed_event("inv_1", 1)));
    CHECK(f.bus.publish(paid_event("inv_1")));
    CHECK(f.bus.publish(failed_event("inv_1", 2)));
    CHECK(failed_attempts.empty());
    f.settle();
    CHECK(failed_attempts == std::vector<int>{1, 2});
    CHECK(paid == 1);
    CHECK(f.bus.stats().published == 3);
    CHECK(f.bus.stats().delivered == 3);
    CHECK(f.bus.stats().queue_depth == 0);
}

SCENARIO("subscribe_all gets every kind of event in publication order, until the subscription goes") {
    GIVEN("one subscriber to everything") {
        BusFixture f;
        std::vector<std::string> names;
        auto all = f.bus.subscribe_all("all", [&](Event const& e) { names.emplace_back(event_name(e)); });
        WHEN("events of four kinds, the first and the last kind included, are published for one invoice") {
            EventEnvelope const env{EventId::parse("evt_x").value(), t0(), {}, iid("inv_1"), {}, 0};
            f.bus.publish(InvoiceCreated{env, usd(1), ""});
            f.bus.publish(failed_event("inv_1", 1));
            f.bus.publish(paid_event("inv_1"));
            f.bus.publish(InvoiceNeedsReview{env, "why"});
            f.settle();
            THEN("it gets them all, in order") {
                CHECK(names == std::vector<std::string>{"InvoiceCreated", "PaymentFailed", "InvoicePaid",
                                                        "InvoiceNeedsReview"});
            }
        }
        WHEN("its subscription is reset") {
            all.reset();
            f.bus.publish(paid_event("inv_1"));
            f.settle();
            THEN("it gets nothing") { CHECK(names.empty()); }
        }
    }
}

SCENARIO("destroying a subscription unsubscribes") {
    BusFixture f;
    int calls = 0;
    {
        auto s = f.bus.subscribe<InvoicePaid>("paid", [&](InvoicePaid const&) { ++calls; });
        f.bus.publish(paid_event("inv_1"));
        f.settle();
    }
    f.bus.publish(paid_event("inv_1"));
    f.settle();
    CHECK(calls == 1);
}

SCENARIO("scheduled events wait for their time on the injected clock") {
    BusFixture f;
    std::vector<int> seen;
    auto s = f.bus.subscribe<PaymentFailed>("failed", [&](PaymentFailed const& e) { seen.push_back(e.envelope.attempt); });
    f.bus.schedule(failed_event("inv_1", 3), t0() + 30s);
    f.bus.schedule(failed_event("inv_2", 1), t0() + 10s);
    f.bus.schedule(failed_event("inv_2", 2), t0() + 10s);
    f.settle();
    CHECK(seen.empty());
    CHECK(f.bus.stats().scheduled_pending == 3);
    CHECK(f.scheduler.pending() == 1); // one wake-up, not one timer per event

    f.clock.advance(10s);
    f.settle();
    CHECK(seen == std::vector<int>{1, 2});
    f.clock.advance(19s);
    f.settle();
    CHECK(seen.size() == 2);
    f.clock.advance(1s);
    f.settle();
    CHECK(seen == std::vector<int>{1, 2, 3});
    CHECK(f.bus.stats().scheduled_pending == 0);
}

SCENARIO("an event scheduled earlier than the pending wake-up moves the wake-up forward") {
    BusFixture f;
    int seen = 0;
    auto s = f.bus.subscribe<PaymentFailed>("failed", [&](PaymentFailed const&) { ++seen; });
    f.bus.schedule(failed_event("inv_1", 1), t0() + 60s);
    f.bus.schedule(failed_event("inv_1", 2), t0() + 5s);
    CHECK(f.scheduler.next_due() == t0() + 5s);
    f.clock.advance(5s);
    f.settle();
    CHECK(seen == 1);
    CHECK(f.scheduler.next_due() == t0() + 60s);
}

SCENARIO("a handler that throws is retried, then dead-lettered, and the others are unaffected") {
    BusFixture f;
    int good_calls = 0, bad_calls = 0;
    bool heal = false;
    auto good = f.bus.subscribe<InvoicePaid>("good", [&](InvoicePaid const&) { ++good_calls; });
    auto bad = f.bus.subscribe<InvoicePaid>("bad", [&](InvoicePaid const&) {
        ++bad_calls;
        if (!heal) throw std::runtime_error("database down");
    });
    f.bus.publish(paid_event("inv_1"));
    f.settle();
    CHECK(good_calls == 1);
    CHECK(bad_calls == 3);
    auto letters = f.bus.dead_letters();
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].subscriber == "bad");
    CHECK(letters[0].error == "database down");
    CHECK(letters[0].attempts == 3);
    CHECK(std::holds_alternative<InvoicePaid>(letters[0].event));
    CHECK(f.bus.stats().handler_failures == 3);
    CHECK(f.bus.stats().dead_lettered == 1);

    WHEN("the cause is fixed and the dead letters are replayed") {
        heal = true;
        CHECK(f.bus.replay_dead_letters() == 1);
        f.settle();
        THEN("only the failing subscriber receives the event again") {
            CHECK(bad_calls == 4);
            CHECK(good_calls == 1);
            CHECK(f.bus.dead_letters().empty());
        }
    }
}

SCENARIO("a handler that throws something that is not an exception is contained too") {
    BusFixture f;
    auto bad = f.bus.subscribe<InvoicePaid>("odd", [](InvoicePaid const&) { throw 42; });
    f.bus.publish(paid_event("inv_1"));
    f.settle();
    REQUIRE(f.bus.dead_letters().size() == 1);
    CHECK(f.bus.dead_letters()[0].error == "unknown exception");
}

SCENARIO("stopping the bus hands back scheduled events and refuses new ones") {
    BusFixture f;
    int seen = 0;
    auto s = f.bus.subscribe<PaymentFailed>("failed", [&](PaymentFailed const&) { ++seen; });
    f.bus.publish(failed_event("inv_1", 1));
    f.bus.schedule(failed_event("inv_1", 2), t0() + 1h);
    auto dropped = f.bus.stop();
    REQUIRE(dropped.size() == 1);
    CHECK(dropped[0].at == t0() + 1h);
    CHECK_FALSE(f.bus.publish(failed_event("inv_1", 3)));
    CHECK_FALSE(f.bus.schedule(failed_event("inv_1", 4), t0()));
    f.clock.advance(2h);
    f.settle();
    CHECK(seen == 1); // queued before stop(): still delivered
    auto stats = f.bus.stats();
    CHECK(stats.rejected == 2);
    CHECK(stats.scheduled_discarded == 1);
    CHECK(stats.scheduled_pending == 0);
    CHECK(f.scheduler.pending() == 0);
}

SCENARIO("a burst of scheduled events due at once is released in batches, in order") {
    BusFixture f;
    std::vector<int> seen;
    auto s = f.bus.subscribe<PaymentFailed>("failed", [&](PaymentFailed const& e) { seen.push_back(e.envelope.attempt); });
    constexpr int burst = 3000; // three wake-up batches
    for (int attempt = 1; attempt <= burst; ++attempt) f.bus.schedule(failed_event("inv_1", attempt), t0() + 1s);
    CHECK(f.bus.stats().scheduled_pending == burst);
    f.clock.advance(1s);
    f.settle();
    REQUIRE(seen.size() == burst);
    for (int i = 0; i < burst; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == i + 1);
    CHECK(f.bus.stats().scheduled_pending == 0);
}

SCENARIO("a subscriber unsubscribed while a batch is being delivered gets nothing more of it") {
    BusFixture f;
    int late_calls = 0;
    application::Subscription late;
    auto first = f.bus.subscribe<InvoicePaid>("first", [&](InvoicePaid const&) { late.reset(); });
    late = f.bus.subscribe<InvoicePaid>("late", [&](InvoicePaid const&) { ++late_calls; });
    // One invoice, so both events are in one lane's batch, whose roster lists both subscribers.
    f.bus.publish(paid_event("inv_1"));
    f.bus.publish(paid_event("inv_1"));
    f.settle();
    CHECK(late_calls == 0);
    CHECK(f.bus.stats().delivered == 2);
}

SCENARIO("subscribe_delivered runs after every subscriber handled an event, and never for a dead letter") {
    BusFixture f;
    std::vector<std::string> calls;
    bool heal = false;
    // Subscribed first on purpose: it still runs after the others.
    auto hook = f.bus.subscribe_delivered("outbox", [&](Event const& e) {
        calls.push_back("delivered:" + std::string(domain::event_name(e)));
    });
    auto good = f.bus.subscribe<InvoicePaid>("good", [&](InvoicePaid const&) { calls.push_back("good"); });
    auto bad = f.bus.subscribe<PaymentFailed>("bad", [&](PaymentFailed const&) {
        calls.push_back("bad");
        if (!heal) throw std::runtime_error("database down");
    });
    GIVEN("an event every subscriber handles") {
        f.bus.publish(paid_event("inv_1"));
        f.settle();
        THEN("the hook sees it once, after them") {
            CHECK(calls == std::vector<std::string>{"good", "delivered:InvoicePaid"});
        }
    }
    GIVEN("an event a subscriber dead-letters") {
        f.bus.publish(failed_event("inv_1", 1));
        f.settle();
        THEN("the hook never sees it") { CHECK(calls == std::vector<std::string>{"bad", "bad", "bad"}); }
        WHEN("the dead letter is replayed and handled") {
            heal = true;
            calls.clear();
            REQUIRE(f.bus.replay_dead_letters() == 1);
            f.settle();
            THEN("the hook sees it then") {
                CHECK(calls == std::vector<std::string>{"bad", "delivered:PaymentFailed"});
            }
        }
    }
}

SCENARIO("a delivery filter that answers later parks the event and those behind it, in order, and is asked again") {
    GIVEN("a filter that answers later while the test says so, and three events of one invoice and one of another") {
        BusFixture f;
        bool doubtful = true;
        int asked = 0;
        auto filter = f.bus.add_delivery_filter([&](Event const&) {
            ++asked;
            return doubtful ? application::Delivery::later : application::Delivery::deliver;
        });
        std::vector<std::pair<std::string, int>> seen;
        auto all = f.bus.subscribe<PaymentFailed>("seen", [&](PaymentFailed const& e) {
            seen.emplace_back(e.envelope.invoice_id.str(), e.envelope.attempt);
        });
        for (int attempt = 1; attempt <= 3; ++attempt) f.bus.publish(failed_event("inv_1", attempt));
        f.bus.publish(failed_event("inv_2", 4));
        f.settle();
        WHEN("the filter keeps answering later") {
            int const before = asked;
            f.clock.advance(infrastructure::BusOptions{}.later_retry);
            f.settle();
            THEN("nothing is delivered or dropped, every event is kept, and the filter was asked again") {
                CHECK(seen.empty());
                CHECK(asked > before);
                CHECK(f.bus.stats().queue_depth == 4);
                CHECK(f.bus.stats().held_back >= 2);
                CHECK(f.bus.stats().filtered == 0);
                CHECK_FALSE(f.bus.wait_idle(std::chrono::steady_clock::now()));
            }
        }
        WHEN("it answers deliver, one more event of the first invoice came meanwhile, and the bus looks again") {
            f.bus.publish(failed_event("inv_1", 5));
            f.settle();
            doubtful = false;
            f.clock.advance(infrastructure::BusOptions{}.later_retry);
            f.settle();
            THEN("every event is delivered, each invoice's in publication order") {
                std::vector<int> first;
                for (auto const& [invoice, attempt] : seen)
                    if (invoice == "inv_1") first.push_back(attempt);
                CHECK(first == std::vector<int>{1, 2, 3, 5});
                CHECK(seen.size() == 5);
                CHECK(f.bus.stats().delivered == 5);
                CHECK(f.bus.stats().queue_depth == 0);
                CHECK(f.bus.wait_idle(std::chrono::steady_clock::now()));
            }
        }
    }
}

SCENARIO("several delivery filters: a drop wins over later, and a removed filter is not called again") {
    BusFixture f;
    int first_calls = 0;
    auto dropping = f.bus.add_delivery_filter([&](Event const& e) {
        ++first_calls;
        return std::get<PaymentFailed>(e).envelope.attempt == 2 ? application::Delivery::drop
                                                                : application::Delivery::deliver;
    });
    auto hesitant = f.bus.add_delivery_filter([&](Event const& e) {
        return std::get<PaymentFailed>(e).envelope.attempt == 2 ? application::Delivery::later
                                                                : application::Delivery::deliver;
    });
    std::vector<int> seen;
    auto all = f.bus.subscribe<PaymentFailed>("seen", [&](PaymentFailed const& e) { seen.push_back(e.envelope.attempt); });
    for (int attempt = 1; attempt <= 3; ++attempt) f.bus.publish(failed_event("inv_1", attempt));
    f.settle();
    THEN("the event one filter drops and the other defers is dropped, and the others delivered in order") {
        CHECK(seen == std::vector<int>{1, 3});
        CHECK(f.bus.stats().filtered == 1);
    }
    WHEN("both filters' subscriptions go and the dropped event is published again") {
        int const calls = first_calls;
        dropping.reset();
        hesitant.reset();
        f.bus.publish(failed_event("inv_1", 2));
        f.settle();
        THEN("it is delivered, and neither filter was asked") {
            CHECK(seen == std::vector<int>{1, 3, 2});
            CHECK(first_calls == calls);
        }
    }
}

SCENARIO("several delivery filters: a drop wins over an earlier later, and every filter is asked about every event") {
    GIVEN("a filter that defers the second event, added before one that drops it") {
        BusFixture f;
        std::vector<int> asked_second;
        auto hesitant = f.bus.add_delivery_filter([&](Event const& e) {
            return std::get<PaymentFailed>(e).envelope.attempt == 2 ? application::Delivery::later
                                                                    : application::Delivery::deliver;
        });
        auto dropping = f.bus.add_delivery_filter([&](Event const& e) {
            asked_second.push_back(std::get<PaymentFailed>(e).envelope.attempt);
            return std::get<PaymentFailed>(e).envelope.attempt == 2 ? application::Delivery::drop
                                                                    : application::Delivery::deliver;
        });
        auto last = f.bus.add_delivery_filter([&](Event const&) { return application::Delivery::deliver; });
        int third_asked = 0;
        auto counting = f.bus.add_delivery_filter([&](Event const&) {
            ++third_asked;
            return application::Delivery::deliver;
        });
        std::vector<int> seen;
        auto all = f.bus.subscribe<PaymentFailed>("seen", [&](PaymentFailed const& e) { seen.push_back(e.envelope.attempt); });
        WHEN("three events of one invoice are published") {
            for (int attempt = 1; attempt <= 3; ++attempt) f.bus.publish(failed_event("inv_1", attempt));
            f.settle();
            THEN("the second is dropped, not parked, and every filter saw all three once") {
                CHECK(seen == std::vector<int>{1, 3});
                CHECK(f.bus.stats().filtered == 1);
                CHECK(f.bus.stats().held_back == 0);
                CHECK(asked_second == std::vector<int>{1, 2, 3});
                CHECK(third_asked == 3);
            }
        }
    }
}

SCENARIO("later_retry is how long a parked lane waits before its filter is asked again") {
    GIVEN("a bus whose later_retry is one second, and a filter that always answers later") {
        boost::asio::io_context io;
        infrastructure::ManualClock clock;
        infrastructure::ManualScheduler scheduler{clock};
        infrastructure::NullLogger logger;
        AsioEventBus bus{io.get_executor(), scheduler, clock, logger, {.lanes = 1, .later_retry = 1s}};
        int asked = 0;
        auto filter = bus.add_delivery_filter([&](Event const&) {
            ++asked;
            return application::Delivery::later;
        });
        auto settle = [&] {
            while (io.poll() + scheduler.run_due() > 0) io.restart();
            io.restart();
        };
        bus.publish(failed_event("inv_1", 1));
        settle();
        REQUIRE(asked == 1);
        WHEN("less than later_retry passes") {
            clock.advance(900ms);
            settle();
            THEN("the filter is not asked again") { CHECK(asked == 1); }
        }
        WHEN("later_retry passes") {
            clock.advance(1s);
            settle();
            THEN("it is asked again") { CHECK(asked == 2); }
        }
    }
}

SCENARIO("a delivery filter that throws holds its event back: the lane goes on and the filter can be removed") {
    GIVEN("a filter that throws while the test says so") {
        BusFixture f;
        bool throwing = true;
        auto filter = f.bus.add_delivery_filter([&](Event const&) -> application::Delivery {
            if (throwing) throw std::runtime_error("filter");
            return application::Delivery::deliver;
        });
        std::vector<int> seen;
        auto all = f.bus.subscribe<PaymentFailed>("seen", [&](PaymentFailed const& e) { seen.push_back(e.envelope.attempt); });
        WHEN("an event is published while it throws, then another once it stopped") {
            f.bus.publish(failed_event("inv_1", 1));
            CHECK_NOTHROW(f.settle());
            CHECK(seen.empty());
            throwing = false;
            f.bus.publish(failed_event("inv_1", 2));
            f.clock.advance(infrastructure::BusOptions{}.later_retry);
            CHECK_NOTHROW(f.settle());
            THEN("both are delivered in order, the bus is idle, and removing the filter returns") {
                CHECK(seen == std::vector<int>{1, 2});
                CHECK(f.bus.wait_idle(std::chrono::steady_clock::now()));
                filter.reset(); // would wait for ever on a lane left marked as filtering
                CHECK(f.bus.stats().filtered == 0);
            }
        }
    }
}

namespace {

// A hook's or a filter's call that the first delivery holds until `go` is set.
struct HeldCall {
    std::promise<void> entered, go;
    std::shared_future<void> const going = go.get_future().share();
    std::atomic<int> calls{0};

    void run() {
        if (calls.fetch_add(1) == 0) {
            entered.set_value();
            going.wait();
        }
    }
};

// The removal handshake, for a hook and a filter alike: `remove` resets the
// subscription whose callee runs `held`.
void removal_waits_for_the_running_call(BusFixture& f, HeldCall& held, std::function<void()> const& remove) {
    GIVEN("the callee is running on a delivery thread, held there") {
        f.bus.publish(failed_event("inv_1", 1));
        std::thread delivering([&] { f.io.run(); });
        held.entered.get_future().wait();
        WHEN("its subscription is reset on another thread") {
            auto removed = std::async(std::launch::async, remove);
            THEN("the reset returns only once the call has ended, and the callee is not called again") {
                CHECK(removed.wait_for(50ms) == std::future_status::timeout);
                held.go.set_value();
                removed.wait();
                delivering.join();
                f.io.restart();
                f.bus.publish(failed_event("inv_1", 2));
                f.settle();
                CHECK(held.calls == 1);
            }
        }
    }
}

} // namespace

SCENARIO("removing a delivered hook waits for a call of it that is running, and it is not called after") {
    BusFixture f;
    HeldCall held;
    auto hook = f.bus.subscribe_delivered("hook", [&](Event const&) { held.run(); });
    removal_waits_for_the_running_call(f, held, [&] { hook.reset(); });
}

SCENARIO("removing a delivery filter waits for a call of it that is running, and it is not called after") {
    BusFixture f;
    HeldCall held;
    auto filter = f.bus.add_delivery_filter([&](Event const&) {
        held.run();
        return application::Delivery::deliver;
    });
    removal_waits_for_the_running_call(f, held, [&] { filter.reset(); });
}

SCENARIO("events a filter holds back stay queued across the bus's stop, and go at the next look once the filter is removed") {
    BusFixture f;
    auto hesitant = f.bus.add_delivery_filter([](Event const&) { return application::Delivery::later; });
    std::vector<int> seen;
    auto all = f.bus.subscribe<PaymentFailed>("seen", [&](PaymentFailed const& e) { seen.push_back(e.envelope.attempt); });
    int marked = 0;
    auto hook = f.bus.subscribe_delivered("mark", [&](Event const&) { ++marked; });
    f.bus.publish(failed_event("inv_1", 1));
    f.settle();
    REQUIRE(seen.empty());
    REQUIRE(f.bus.stats().held_back >= 1);
    WHEN("the bus stops while the event is held back") {
        (void)f.bus.stop();
        f.clock.advance(1s);
        f.settle();
        THEN("it is neither delivered nor marked, and still counted in the backlog (its outbox row stays undelivered)") {
            CHECK(seen.empty());
            CHECK(marked == 0);
            CHECK(f.bus.backlog() == 1);
        }
    }
    WHEN("the filter is removed while the event is held back") {
        hesitant.reset();
        f.clock.advance(infrastructure::BusOptions{}.later_retry);
        f.settle();
        THEN("the next look delivers and marks it") {
            CHECK(seen == std::vector<int>{1});
            CHECK(marked == 1);
        }
    }
}
