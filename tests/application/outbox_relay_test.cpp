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

} // namespace

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
