#include "support/builders.hpp"

#include <payments/application/outbox_relay.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/store/memory_store.hpp>

#include <boost/asio/io_context.hpp>

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

    // Commits a new invoice with its InvoiceCreated event, as a use case does.
    InvoiceCreated commit_created() {
        auto created = Invoice::create(iid(), usd(700), "", meta()).value();
        application::Changes changes{application::Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
        changes.events.emplace_back(created);
        REQUIRE(store.commit(changes));
        return created;
    }
};

// A store shared with processes that are gone: take_over() hands out what
// they left, `limit` at a time; the store never wakes the relay itself.
struct StoreWithOrphans final : application::Store {
    infrastructure::InMemoryStore inner;
    std::vector<Event> orphans;
    std::size_t calls = 0;

    std::optional<Invoice> invoice(InvoiceId const& id) const override { return inner.invoice(id); }
    application::InvoicePage invoices(application::InvoiceQuery const& q) const override { return inner.invoices(q); }
    std::optional<Payment> payment(PaymentId const& id) const override { return inner.payment(id); }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner.payments_of(id); }
    Result<void> commit(application::Changes changes) override { return inner.commit(std::move(changes)); }
    std::vector<Event> undelivered() const override { return inner.undelivered(); }
    void mark_delivered(EventId const& id) override { inner.mark_delivered(id); }
    std::vector<application::ScheduledEvent> scheduled() const override { return inner.scheduled(); }
    std::vector<Event> history(InvoiceId const& id) const override { return inner.history(id); }
    application::TakenOver take_over(std::size_t limit) override {
        ++calls;
        application::TakenOver taken;
        while (!orphans.empty() && taken.events.size() < limit) {
            taken.events.push_back(std::move(orphans.back()));
            orphans.pop_back();
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
