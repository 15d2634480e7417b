#include "support/builders.hpp"

#include <payments/application/outbox_relay.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/store/memory_store.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <stdexcept>

using namespace test;

namespace {

struct RelayFixture {
    boost::asio::io_context io;
    infrastructure::ManualClock clock;
    infrastructure::ManualScheduler scheduler{clock};
    infrastructure::NullLogger logger;
    infrastructure::AsioEventBus bus{io.get_executor(), scheduler, clock, logger, {.lanes = 4, .delivery_attempts = 2}};
    infrastructure::InMemoryStore store;

    void settle() {
        while (io.poll() + scheduler.run_due() > 0) io.restart();
        io.restart();
    }

    // Commits a new invoice with its InvoiceCreated event, as a use case does
    // (and a retry of it at `retry_at`, if given).
    InvoiceCreated commit_created(std::string const& id = "inv_1", std::optional<Timestamp> retry_at = {}) {
        auto created = Invoice::create(iid(id), usd(700), "", meta()).value();
        application::Changes changes{application::Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
        changes.events.emplace_back(created);
        if (retry_at) {
            InvoiceCreated retry = created;
            retry.envelope.id = meta().id;
            changes.scheduled.push_back({retry, *retry_at});
        }
        REQUIRE(store.commit(changes));
        return created;
    }

    // Drives the bus and the relay's rounds until the relay has handed over
    // everything the start found, advancing time past each "bus full" wait.
    void finish_start(application::OutboxRelay const& relay) {
        for (int i = 0; i < 1000 && relay.restarting(); ++i) {
            settle();
            clock.advance(100ms);
        }
        settle();
        REQUIRE_FALSE(relay.restarting());
    }
};

// A store shared with processes that are gone: take_over() hands out what
// they left, `limit` at a time; the store never wakes the relay itself.
struct StoreWithOrphans final : application::Store {
    infrastructure::InMemoryStore inner;
    std::vector<Event> orphans;
    std::vector<application::ScheduledEvent> scheduled_orphans;
    std::size_t calls = 0;

    std::optional<Invoice> invoice(InvoiceId const& id) const override { return inner.invoice(id); }
    application::InvoicePage invoices(application::InvoiceQuery const& q) const override { return inner.invoices(q); }
    std::optional<Payment> payment(PaymentId const& id) const override { return inner.payment(id); }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner.payments_of(id); }
    application::OpenAttemptPage open_attempts(std::optional<PaymentId> const& after, std::size_t limit) const override {
        return inner.open_attempts(after, limit);
    }
    Result<void> commit(application::Changes changes) override { return inner.commit(std::move(changes)); }
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override {
        return inner.undelivered_page(from, limit);
    }
    void mark_delivered(EventId const& id) override { inner.mark_delivered(id); }
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override {
        return inner.scheduled_page(from, limit);
    }
    std::vector<Event> history(InvoiceId const& id) const override { return inner.history(id); }
    application::TakenOver take_over(std::size_t event_limit, std::size_t scheduled_limit) override {
        ++calls;
        application::TakenOver taken;
        while (!orphans.empty() && taken.events.size() < event_limit) {
            taken.events.push_back(std::move(orphans.back()));
            orphans.pop_back();
        }
        while (!scheduled_orphans.empty() && taken.scheduled.size() < scheduled_limit) {
            taken.scheduled.push_back(std::move(scheduled_orphans.back()));
            scheduled_orphans.pop_back();
        }
        return taken;
    }
    bool watch_work_left(std::function<void()>) override { return true; }
};

} // namespace

SCENARIO("a relay takes over in bounded rounds, each its own task on the scheduler, the first at once") {
    RelayFixture f;
    StoreWithOrphans store;
    GIVEN("a store holding 250 events that processes gone left") {
        auto const created = Invoice::create(iid(), usd(700), "", meta()).value();
        store.orphans.assign(250, Event(created));
        application::OutboxRelay relay(store, f.bus);
        WHEN("the relay starts watching and the scheduler runs what is due") {
            relay.watch(f.scheduler, f.clock, 1h);
            auto const tasks = f.scheduler.run_due();
            THEN("three rounds ran, one task each, and every event reached the bus") {
                CHECK(tasks == 3);
                CHECK(store.calls == 3);
                CHECK(store.orphans.empty());
                CHECK(f.bus.backlog() == 250);
            }
            relay.stop();
        }
    }
}

// Review 18, B-4: restart() loaded the whole outbox and every scheduled
// event into the bus at once: memory set by what an earlier run left.
SCENARIO("a relay's start hands the bus the outbox a page at a time while it has room, the rest as it drains") {
    RelayFixture f;
    std::map<EventId, int> seen;
    auto counter = f.bus.subscribe<InvoiceCreated>("counter", [&](InvoiceCreated const& e) { ++seen[e.envelope.id]; });
    application::OutboxRelay relay(f.store, f.bus);
    GIVEN("an earlier run left 2,500 events undelivered") {
        for (int i = 0; i < 2500; ++i) f.commit_created("inv_" + std::to_string(i));
        WHEN("the process starts again, the bus not yet delivering") {
            auto const restarted = relay.restart();
            THEN("the bus holds max_backlog of them, the rest waits in the store, and the relay is not done") {
                CHECK(restarted.republished == application::OutboxRelay::max_backlog);
                CHECK(f.bus.backlog() == application::OutboxRelay::max_backlog);
                CHECK(relay.restarting());
                CHECK(relay.republishing());
            }
            AND_WHEN("an event is committed meanwhile (its use case about to publish it), and the relay's rounds go on as "
                     "the bus drains") {
                auto const late = f.commit_created("inv_late");
                relay.watch(f.scheduler, f.clock, 1h);
                f.finish_start(relay);
                THEN("each event of the earlier run reached its subscriber once, and the new one is left to its use case") {
                    CHECK(seen.size() == 2500);
                    CHECK(std::all_of(seen.begin(), seen.end(), [](auto const& s) { return s.second == 1; }));
                    CHECK(seen.count(late.envelope.id) == 0);
                    auto const left = f.store.undelivered();
                    REQUIRE(left.size() == 1);
                    CHECK(envelope_of(left[0]).id == late.envelope.id);
                }
                relay.stop();
            }
        }
    }
}

SCENARIO("a relay's start re-arms at most max_scheduled scheduled events, the rest as they fall due") {
    RelayFixture f;
    int retries = 0;
    auto counter = f.bus.subscribe<InvoiceCreated>("counter", [&](InvoiceCreated const&) { ++retries; });
    application::OutboxRelay relay(f.store, f.bus);
    GIVEN("an earlier run left 1,500 retries due in an hour, their events delivered") {
        for (int i = 0; i < 1500; ++i) {
            auto const created = f.commit_created("inv_" + std::to_string(i), t0() + 1h);
            f.store.mark_delivered(created.envelope.id);
        }
        WHEN("the process starts again") {
            auto const restarted = relay.restart();
            relay.watch(f.scheduler, f.clock, 1h);
            f.settle();
            THEN("the bus holds max_scheduled of them, the rest wait in the store, and the relay no longer "
                 "republishes (readiness does not wait an hour for them)") {
                CHECK(restarted.rearmed == application::OutboxRelay::max_scheduled);
                CHECK(f.bus.stats().scheduled_pending == application::OutboxRelay::max_scheduled);
                CHECK(relay.restarting());
                CHECK_FALSE(relay.republishing());
            }
            AND_WHEN("the hour passes") {
                f.clock.advance(1h);
                f.finish_start(relay);
                THEN("every retry was delivered, once") {
                    CHECK(retries == 1500);
                    CHECK(f.store.scheduled().empty());
                }
            }
            relay.stop();
        }
    }
}

// Review 18, A-3: the take-over rounds checked only the lanes' backlog, so a
// gone process's retries due in an hour all went into this one's memory.
SCENARIO("take-over rounds leave a gone process's retries in the store while the bus holds max_scheduled") {
    RelayFixture f;
    StoreWithOrphans store;
    GIVEN("a store holding 5,000 retries due in an hour that a process gone left") {
        auto const created = Invoice::create(iid(), usd(700), "", meta()).value();
        for (int i = 0; i < 5000; ++i) {
            InvoiceCreated retry = created;
            retry.envelope.id = meta().id;
            store.scheduled_orphans.push_back({retry, t0() + 1h});
        }
        application::OutboxRelay relay(store, f.bus);
        WHEN("the relay watches and the scheduler runs what is due") {
            relay.watch(f.scheduler, f.clock, 1h);
            f.settle();
            f.clock.advance(30min);
            f.settle();
            THEN("the bus holds at most max_scheduled and one batch of them, the rest still in the store") {
                CHECK(f.bus.stats().scheduled_pending <=
                      application::OutboxRelay::max_scheduled + application::OutboxRelay::batch);
                CHECK(store.scheduled_orphans.size() >= 5000 - application::OutboxRelay::max_scheduled -
                                                             application::OutboxRelay::batch);
            }
            relay.stop();
        }
    }
}

// Review 21, F2: the start's pages of the scheduled events had no upper
// bound, so a retry committed (and armed by its use case) during the start
// was armed a second time when the pages reached its time.
SCENARIO("a retry its use case committed and armed during the start is armed once") {
    RelayFixture f;
    std::map<EventId, int> seen;
    auto counter = f.bus.subscribe<InvoiceCreated>("counter", [&](InvoiceCreated const& e) { ++seen[e.envelope.id]; });
    application::OutboxRelay relay(f.store, f.bus);
    GIVEN("an earlier run left 1,500 retries due in an hour, their events delivered") {
        for (int i = 0; i < 1500; ++i)
            f.store.mark_delivered(f.commit_created("inv_" + std::to_string(i), t0() + 1h).envelope.id);
        relay.restart();
        relay.watch(f.scheduler, f.clock, 1h);
        f.settle();
        REQUIRE(relay.restarting());
        WHEN("a use case commits a retry due in two hours and arms it itself, then the start goes on") {
            auto const created = Invoice::create(iid("inv_new"), usd(700), "", meta()).value();
            InvoiceCreated retry = created;
            retry.envelope.id = meta().id;
            application::Changes changes{application::Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
            changes.scheduled.push_back({retry, t0() + 2h});
            REQUIRE(f.store.commit(changes));
            REQUIRE(f.bus.schedule(retry, t0() + 2h));
            f.clock.advance(1h);
            f.finish_start(relay);
            f.clock.advance(1h);
            f.settle();
            THEN("it reached its subscriber once, as did each retry of the earlier run") {
                CHECK(seen[retry.envelope.id] == 1);
                CHECK(seen.size() == 1501);
                CHECK(std::all_of(seen.begin(), seen.end(), [](auto const& s) { return s.second == 1; }));
            }
        }
        relay.stop();
    }
}

// Review 21, F3: the scheduled pages waited only while the bus's heap was
// full; retries already due go from the heap to the lanes at once, so every
// overdue retry an earlier run left went into memory.
SCENARIO("a start whose retries are all overdue hands the bus no more than max_backlog of them at a time") {
    RelayFixture f;
    application::OutboxRelay relay(f.store, f.bus);
    GIVEN("an earlier run left 3,000 retries due a minute ago, their events delivered") {
        for (int i = 0; i < 3000; ++i)
            f.store.mark_delivered(f.commit_created("inv_" + std::to_string(i), t0() - 1min).envelope.id);
        WHEN("the process starts and the relay's rounds run for two seconds, the lanes not delivering") {
            relay.restart();
            relay.watch(f.scheduler, f.clock, 1h);
            for (int i = 0; i < 40; ++i) {
                f.clock.advance(50ms);
                f.scheduler.run_due();
            }
            THEN("the bus holds at most max_backlog and one page of them, the rest still in the store") {
                CHECK(f.bus.backlog() + f.bus.scheduled_backlog() <=
                      application::OutboxRelay::max_backlog + application::OutboxRelay::batch);
                CHECK(relay.restarting());
            }
        }
        relay.stop();
    }
}

// Review 21, F4: a take-over round claimed nothing while this process's own
// retries filled the bus's heap, the events of a gone process included.
SCENARIO("take-over rounds claim a gone process's events while this process's own retries fill the bus's heap") {
    RelayFixture f;
    StoreWithOrphans store;
    GIVEN("a store holding 10 events a process gone left, and a bus holding max_scheduled retries of this one") {
        auto const created = Invoice::create(iid(), usd(700), "", meta()).value();
        store.orphans.assign(10, Event(created));
        store.scheduled_orphans.assign(5, {created, t0() + 1h});
        for (std::size_t i = 0; i < application::OutboxRelay::max_scheduled; ++i) {
            InvoiceCreated retry = created;
            retry.envelope.id = meta().id;
            REQUIRE(f.bus.schedule(retry, t0() + 1h));
        }
        application::OutboxRelay relay(store, f.bus);
        WHEN("the relay watches and the scheduler runs what is due") {
            relay.watch(f.scheduler, f.clock, 1h);
            f.settle();
            THEN("it took the events over, and no retry while the heap is full") {
                CHECK(store.orphans.empty());
                CHECK(store.scheduled_orphans.size() == 5);
            }
            relay.stop();
        }
    }
}

// Review 22, G3: the start waited for room in the lanes before reading a
// page, so on PostgreSQL (whose start finds nothing: the owner is new) a busy
// bus kept it "restarting", and no take-over round ran, until the lanes drained.
SCENARIO("a start that finds nothing ends at once, full lanes or not, and take-over claims a gone process's retries") {
    RelayFixture f;
    StoreWithOrphans store;
    GIVEN("a shared store whose start pages are empty, 10 events and 5 retries a gone process left, lanes full") {
        auto const created = Invoice::create(iid(), usd(700), "", meta()).value();
        store.orphans.assign(10, Event(created));
        store.scheduled_orphans.assign(5, {created, t0() + 1h});
        for (std::size_t i = 0; i < application::OutboxRelay::max_backlog; ++i) {
            InvoiceCreated busy = created;
            busy.envelope.id = meta().id;
            REQUIRE(f.bus.publish(busy));
        }
        application::OutboxRelay relay(store, f.bus);
        WHEN("the process starts and the relay's rounds run, the lanes not delivering") {
            relay.restart();
            relay.watch(f.scheduler, f.clock, 1h);
            for (int i = 0; i < 3; ++i) f.scheduler.run_due();
            THEN("the start is over, and the retries were claimed (only events wait for the lanes)") {
                CHECK_FALSE(relay.restarting());
                CHECK(store.calls > 0);
                CHECK(store.scheduled_orphans.empty());
                CHECK(store.orphans.size() == 10);
            }
            relay.stop();
        }
    }
}

SCENARIO("the outbox keeps an event a subscriber dead-lettered, so that the next start publishes it again") {
    RelayFixture f;
    bool failing = true;
    int fulfilment_calls = 0;
    auto fulfilment = f.bus.subscribe<InvoiceCreated>("fulfilment", [&](InvoiceCreated const&) {
        ++fulfilment_calls;
        if (failing) throw std::runtime_error("warehouse down");
    });
    application::OutboxRelay relay(f.store, f.bus);
    GIVEN("a committed event whose subscriber gives up on it") {
        auto created = f.commit_created();
        f.bus.publish(created);
        f.settle();
        REQUIRE(f.bus.dead_letters().size() == 1);
        THEN("it is still undelivered") {
            auto undelivered = f.store.undelivered();
            REQUIRE(undelivered.size() == 1);
            CHECK(std::get<InvoiceCreated>(undelivered[0]) == created);
        }
        WHEN("the process starts again with the subscriber working") {
            failing = false;
            auto restarted = relay.restart();
            f.settle();
            THEN("the event reaches it and leaves the outbox") {
                CHECK(restarted.republished == 1);
                CHECK(fulfilment_calls == 3);
                CHECK(f.store.undelivered().empty());
            }
        }
    }
    GIVEN("a committed event every subscriber handles") {
        failing = false;
        f.bus.publish(f.commit_created());
        f.settle();
        THEN("it leaves the outbox") { CHECK(f.store.undelivered().empty()); }
    }
}
