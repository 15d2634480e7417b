// A process paused past its liveness (SIGSTOP, a long stall) whose work a
// survivor took over: at its next renewal it finds its registration gone,
// stops delivering and driving what was taken, and keeps the rest under a new
// registration (review 16, A2).
#include "support/builders.hpp"
#include "support/postgres.hpp"

#include <payments/application/outbox_relay.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/store/postgres_store.hpp>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <set>

using namespace test;
using application::Changes;
using infrastructure::PostgresStore;

namespace {

// A PAID invoice's commit: its InvoicePaid and a retry due `due` after t0.
Changes paid_with_retry_due(int n, Duration due, std::vector<EventId>& ids) {
    Invoice invoice = Invoice::from(Invoice::create(iid("inv_" + std::to_string(n)), usd(500), "", meta()).value());
    invoice.apply(invoice.request_payment(attempt(n), "pm_card_ok", meta()).value());
    auto paid = std::get<InvoicePaid>(invoice.settle_success(success_of(invoice), meta()).value());
    invoice.apply(paid);
    PaymentRequested retry = current_request(invoice);
    retry.envelope.id = EventId::parse("evt_retry_" + std::to_string(n)).value();
    Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
    changes.events.emplace_back(paid);
    changes.scheduled.push_back({retry, t0() + due});
    ids.push_back(paid.envelope.id);
    ids.push_back(retry.envelope.id);
    return changes;
}

// What a use case does after its commit: publishes the events and arms the retries.
void publish_and_arm(application::EventBus& bus, Changes const& changes) {
    for (auto const& event : changes.events) REQUIRE(bus.publish(event));
    for (auto const& [event, at] : changes.scheduled) REQUIRE(bus.schedule(event, at));
}

// A PROCESSING invoice's first attempt: its commit takes the invoice's lease.
Changes first_attempt_of(int n) {
    Invoice invoice = Invoice::from(Invoice::create(iid("inv_" + std::to_string(n)), usd(500), "", meta()).value());
    invoice.apply(invoice.request_payment(attempt(n), "pm_card_ok", meta()).value());
    Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
    changes.payments.push_back({Payment::from(current_request(invoice)), 0});
    return changes;
}

// The SQL that removes A's registration, as a survivor's sweep does once it lapsed.
std::string registration_swept(std::string const& s, std::string const& table) {
    return "DELETE FROM " + s + ".owners WHERE owner = (SELECT owner FROM " + s + "." + table + " LIMIT 1)";
}

// The SQL that makes A's registration lapse, before any sweep removed it:
// the survivors already take its work over (review 18, A-1).
std::string registration_lapsed(std::string const& s, std::string const& table) {
    return "UPDATE " + s + ".owners SET alive_until = clock_timestamp() - interval '1 second' WHERE owner = (SELECT owner FROM " +
           s + "." + table + " LIMIT 1)";
}

} // namespace

SCENARIO("a process paused past its liveness stops delivering what a survivor took over and keeps the rest") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h; // the test decides when A looks gone
    auto a = open_store(options);
    auto b = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A committed two invoices, each with an event and a retry, published and armed on its bus, not yet delivered") {
        boost::asio::io_context io;
        infrastructure::ManualClock clock;
        infrastructure::ManualScheduler scheduler(clock);
        infrastructure::NullLogger logger;
        infrastructure::AsioEventBus bus(io.get_executor(), scheduler, clock, logger);
        std::vector<EventId> first, second;
        Changes const one = paid_with_retry_due(1, 1s, first);
        Changes const two = paid_with_retry_due(2, 2s, second);
        REQUIRE(a->commit(one));
        REQUIRE(a->commit(two));
        std::vector<EventId> seen; // Owned by: io's one thread
        auto subscription = bus.subscribe_all("test.seen", [&](Event const& e) { seen.push_back(envelope_of(e).id); });
        application::OutboxRelay relay(*a, bus);
        // This run's own commits: their use case publishes and arms them, the start's pass leaves them.
        auto const restarted = relay.restart();
        REQUIRE(restarted.republished + restarted.rearmed == 0);
        publish_and_arm(bus, one);
        publish_and_arm(bus, two);

        WHEN("A stalls: its registration is swept, B takes the first invoice's event and retry, and A wakes and renews") {
            REQUIRE(run_sql(schema.uri(), registration_swept(s, "outbox")));
            auto const taken = b->take_over(1);
            REQUIRE(taken.events.size() == 1);
            REQUIRE(taken.scheduled.size() == 1);
            REQUIRE(envelope_of(taken.events[0]).id == first[0]);
            REQUIRE(a->renew());
            clock.advance(5s);
            scheduler.run_due();
            io.run();

            THEN("A delivers only the second invoice's event and retry: B delivers the others") {
                CHECK(std::multiset<EventId>(seen.begin(), seen.end()) == std::multiset<EventId>(second.begin(), second.end()));
                AND_THEN("what A kept is its own under its new registration: a third process finds nothing to take") {
                    auto c = open_store(options);
                    CHECK(c->take_over(100).empty());
                    CHECK(run_sql(schema.uri(), "SELECT 1 / (SELECT count(*) FROM " + s + ".owners WHERE owner IN (SELECT owner FROM " +
                                                    s + ".scheduled))::int"));
                }
            }
        }
        bus.stop();
    }
}

SCENARIO("a process whose registration lapsed, not yet swept, finds it out at its next renewal") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    auto b = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A committed two invoices, each with an event and a retry, published and armed on its bus, not yet delivered") {
        boost::asio::io_context io;
        infrastructure::ManualClock clock;
        infrastructure::ManualScheduler scheduler(clock);
        infrastructure::NullLogger logger;
        infrastructure::AsioEventBus bus(io.get_executor(), scheduler, clock, logger);
        std::vector<EventId> first, second;
        Changes const one = paid_with_retry_due(1, 1s, first);
        Changes const two = paid_with_retry_due(2, 2s, second);
        REQUIRE(a->commit(one));
        REQUIRE(a->commit(two));
        std::vector<EventId> seen; // Owned by: io's one thread
        auto subscription = bus.subscribe_all("test.seen", [&](Event const& e) { seen.push_back(envelope_of(e).id); });
        application::OutboxRelay relay(*a, bus);
        REQUIRE(relay.restart().republished == 0); // this run's own: left to their use case
        publish_and_arm(bus, one);
        publish_and_arm(bus, two);

        WHEN("A's registration lapses (no sweep yet), B takes the first invoice's event and retry, and A renews") {
            REQUIRE(run_sql(schema.uri(), registration_lapsed(s, "outbox")));
            auto const taken = b->take_over(1);
            REQUIRE(taken.events.size() == 1);
            REQUIRE(envelope_of(taken.events[0]).id == first[0]);
            REQUIRE(a->renew());
            clock.advance(5s);
            scheduler.run_due();
            io.run();

            THEN("A registers anew and delivers only the second invoice's event and retry, and its lapsed row is gone") {
                CHECK(a->reregistrations() == 1);
                CHECK(std::multiset<EventId>(seen.begin(), seen.end()) == std::multiset<EventId>(second.begin(), second.end()));
                CHECK(run_sql(schema.uri(), "SELECT 1 / ((SELECT count(*) FROM " + s + ".owners) = 2)::int"));
                CHECK(run_sql(schema.uri(), "SELECT 1 / ((SELECT count(*) FROM " + s +
                                                ".owners WHERE alive_until < clock_timestamp()) = 0)::int"));
            }
        }
        bus.stop();
    }
}

SCENARIO("a process whose own registration lapsed takes nothing over until it has registered anew") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    std::string const& s = schema.name();
    std::vector<EventId> ids;
    {
        auto gone = open_store(options);
        REQUIRE(gone->commit(paid_with_retry_due(1, 1s, ids)));
    } // its clean stop frees its outbox and retries at once

    GIVEN("a gone process's event and retry, and A's own registration lapsed") {
        REQUIRE(run_sql(schema.uri(), "UPDATE " + s + ".owners SET alive_until = clock_timestamp() - interval '1 second'"));
        THEN("A takes nothing while it is lapsed, and takes both once its renewal registered it anew") {
            CHECK(a->take_over(100).empty());
            REQUIRE(a->renew());
            auto const taken = a->take_over(100);
            CHECK(taken.events.size() == 1);
            CHECK(taken.scheduled.size() == 1);
        }
    }
}

SCENARIO("a process paused past its liveness keeps the leases nobody took, at the same epoch, and loses the others") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    auto b = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A committed the first attempts of two invoices: it holds both leases") {
        REQUIRE(a->commit(first_attempt_of(1)));
        REQUIRE(a->commit(first_attempt_of(2)));
        REQUIRE(a->held_since_attempt(iid("inv_1")));

        WHEN("A stalls, its registration is swept, B takes the first invoice's lease, and A wakes and renews") {
            REQUIRE(run_sql(schema.uri(), registration_swept(s, "leases")));
            REQUIRE(b->lease(iid("inv_1")));
            REQUIRE(a->renew());

            THEN("the first invoice is B's, the second still A's without a break, and B cannot take it") {
                CHECK_FALSE(a->held_since_attempt(iid("inv_1")));
                CHECK_FALSE(a->lease(iid("inv_1")));
                CHECK(a->held_since_attempt(iid("inv_2")));
                CHECK_FALSE(b->lease(iid("inv_2")));
            }
        }
    }
}

SCENARIO("a process's registration lasts twice its lease timeout: a stall shorter than that is not a take-over") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    WHEN("it renews") {
        REQUIRE(a->renew());
        THEN("the others may take its work over only two lease timeouts later") {
            CHECK(run_sql(schema.uri(), "SELECT 1 / (SELECT count(*) FROM " + schema.name() +
                                            ".owners WHERE alive_until > clock_timestamp() + interval '119 minutes')::int"));
        }
    }
}

SCENARIO("a process whose liveness may have lapsed unseen holds its deliveries back until a renewal tells what it lost") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;           // the test decides when A looks gone
    options.statement_timeout = 200ms;    // A's renewal gives up this soon on a locked row
    auto a = open_store(options);
    auto b = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A committed two invoices, each with an event and a retry, published and armed on its bus, not yet delivered") {
        boost::asio::io_context io;
        infrastructure::ManualClock clock;
        infrastructure::ManualScheduler scheduler(clock);
        infrastructure::NullLogger logger;
        infrastructure::AsioEventBus bus(io.get_executor(), scheduler, clock, logger);
        std::vector<EventId> first, second;
        Changes const one = paid_with_retry_due(1, 1s, first);
        Changes const two = paid_with_retry_due(2, 2s, second);
        REQUIRE(a->commit(one));
        REQUIRE(a->commit(two));
        std::vector<EventId> seen; // Owned by: io's one thread
        auto subscription = bus.subscribe_all("test.seen", [&](Event const& e) { seen.push_back(envelope_of(e).id); });
        application::OutboxRelay relay(*a, bus);
        REQUIRE(relay.restart().republished == 0); // this run's own: left to their use case
        publish_and_arm(bus, one);
        publish_and_arm(bus, two);

        WHEN("A stalls: its registration is swept, B takes the first invoice's event and retry, and A's renewal finds "
             "it lapsed but cannot register anew (the second invoice's row locked by another session), before A's bus runs") {
            REQUIRE(run_sql(schema.uri(), registration_swept(s, "outbox")));
            auto const taken = b->take_over(1);
            REQUIRE(taken.events.size() == 1);
            REQUIRE(envelope_of(taken.events[0]).id == first[0]);
            OtherSession other(schema.uri());
            REQUIRE(other.exec("BEGIN"));
            REQUIRE(other.exec("SELECT 1 FROM " + s + ".outbox WHERE invoice_id = 'inv_2' FOR UPDATE"));
            REQUIRE_FALSE(a->renew());
            REQUIRE_FALSE(a->renewing());
            REQUIRE(other.exec("COMMIT"));
            io.run();
            clock.advance(5s); // both retries due, and the bus's look again
            scheduler.run_due();
            io.restart();
            io.run();

            THEN("A's bus delivers nothing while A cannot tell what it still owns, and keeps every event") {
                CHECK(seen.empty());
                CHECK(bus.stats().held_back >= 2);
                CHECK(bus.stats().queue_depth == 4);

                AND_WHEN("A's next renewal registers it anew") {
                    REQUIRE(a->renew());
                    clock.advance(1s);
                    scheduler.run_due();
                    io.restart();
                    io.run();
                    THEN("A delivers only the second invoice's event and retry: B delivers the others") {
                        CHECK(a->reregistrations() == 1);
                        CHECK(std::multiset<EventId>(seen.begin(), seen.end()) ==
                              std::multiset<EventId>(second.begin(), second.end()));
                        CHECK(bus.stats().filtered == 2);
                        CHECK(bus.stats().queue_depth == 0);
                    }
                }
            }
        }
        bus.stop();
    }
}

SCENARIO("an event lost by a re-registration after it passed the delivery filter is forgotten once delivered or left") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    auto b = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A committed two invoices' events and retries; its subscribers are running on the events (past the filter)") {
        std::vector<EventId> first, second;
        Changes const one = paid_with_retry_due(1, 1s, first);
        Changes const two = paid_with_retry_due(2, 2s, second);
        REQUIRE(a->commit(one));
        REQUIRE(a->commit(two));
        REQUIRE(a->undelivered().size() == 2);
        REQUIRE(a->scheduled().size() == 2);

        WHEN("A stalls, B takes both invoices' events and retries, and A registers anew: all four are lost to it") {
            REQUIRE(run_sql(schema.uri(), registration_swept(s, "outbox")));
            REQUIRE(b->take_over(10).events.size() == 2);
            REQUIRE(a->renew());
            REQUIRE(a->reregistrations() == 1);

            THEN("those its bus then delivers or leaves are no longer listed as lost; the others still are, once") {
                a->mark_delivered(first[0]);
                a->left_undelivered(first[1]);
                CHECK(a->still_owns(first[0]) == application::Ownership::owned);
                CHECK(a->still_owns(first[1]) == application::Ownership::owned);
                CHECK(a->still_owns(second[0]) == application::Ownership::lost);
                CHECK(a->still_owns(second[0]) == application::Ownership::owned);
            }
        }
    }
}

SCENARIO("a renewal that failed once while the registration is live holds nothing back") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;        // the registration outlives the test
    options.statement_timeout = 200ms; // A's renewal gives up this soon on a locked row
    auto a = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A's renewal failed once: its owners row locked by another session for the lock timeout") {
        OtherSession other(schema.uri());
        REQUIRE(other.exec("BEGIN"));
        REQUIRE(other.exec("SELECT 1 FROM " + s + ".owners FOR UPDATE"));
        REQUIRE_FALSE(a->renew());
        REQUIRE(other.exec("ROLLBACK"));

        WHEN("A commits an invoice's event and retry, and publishes and arms them as their use case does") {
            boost::asio::io_context io;
            infrastructure::ManualClock clock;
            infrastructure::ManualScheduler scheduler(clock);
            infrastructure::NullLogger logger;
            infrastructure::AsioEventBus bus(io.get_executor(), scheduler, clock, logger);
            std::vector<EventId> ids;
            Changes const one = paid_with_retry_due(1, 1h, ids);
            REQUIRE(a->commit(one));
            std::vector<EventId> seen; // Owned by: io's one thread
            auto subscription = bus.subscribe_all("test.seen", [&](Event const& e) { seen.push_back(envelope_of(e).id); });
            application::OutboxRelay relay(*a, bus);
            REQUIRE(relay.restart().republished == 0); // this run's own: left to their use case
            publish_and_arm(bus, one);
            io.run();

            THEN("the event is delivered and the retry is A's: nobody can have taken A's work within two leases") {
                CHECK(seen == std::vector<EventId>{ids[0]});
                CHECK(bus.stats().held_back == 0);
                CHECK(a->still_owns(ids[1]) == application::Ownership::owned);
                AND_THEN("A starts no charge until a renewal succeeds: its leases are the cautious side") {
                    CHECK_FALSE(a->renewing());
                }
            }
            bus.stop();
        }
    }
}

SCENARIO("a process none of whose renewals succeeded for two thirds of its lease timeout holds its deliveries back and "
         "refuses commits until one does") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 600ms;     // doubtful 400 ms after its last renewal was sent
    options.statement_timeout = 200ms; // each renewal gives up this soon on a locked row
    auto a = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A committed an invoice's event and retry, then its owners row is locked by another session") {
        boost::asio::io_context io;
        infrastructure::ManualClock clock;
        infrastructure::ManualScheduler scheduler(clock);
        infrastructure::NullLogger logger;
        infrastructure::AsioEventBus bus(io.get_executor(), scheduler, clock, logger);
        std::vector<EventId> ids;
        Changes const one = paid_with_retry_due(1, 1h, ids);
        REQUIRE(a->renew());
        REQUIRE(a->commit(one));
        OtherSession other(schema.uri());
        REQUIRE(other.exec("BEGIN"));
        REQUIRE(other.exec("SELECT 1 FROM " + s + ".owners FOR UPDATE"));

        WHEN("two thirds of its lease timeout pass with every renewal failing, and the event is published") {
            REQUIRE(holds_within_5s([&] { return a->still_owns(ids[1]) == application::Ownership::doubtful; }));
            std::vector<EventId> seen; // Owned by: io's one thread
            auto subscription = bus.subscribe_all("test.seen", [&](Event const& e) { seen.push_back(envelope_of(e).id); });
            application::OutboxRelay relay(*a, bus);
            REQUIRE(relay.restart().republished == 0); // this run's own: left to their use case
            publish_and_arm(bus, one);
            io.run();

            THEN("the event is held back, and a commit is refused as unavailable: nothing more piles up behind it") {
                CHECK(seen.empty());
                CHECK(bus.stats().queue_depth == 1);
                std::vector<EventId> more;
                auto const refused = a->commit(paid_with_retry_due(2, 1h, more));
                REQUIRE_FALSE(refused);
                CHECK(refused.error().code == ErrorCode::storage_unavailable);

                AND_WHEN("the row is let go and a renewal succeeds") {
                    REQUIRE(other.exec("ROLLBACK"));
                    REQUIRE(holds_within_5s([&] { return a->still_owns(ids[1]) == application::Ownership::owned; }));
                    clock.advance(1s); // the bus looks again
                    scheduler.run_due();
                    io.restart();
                    io.run();
                    THEN("the event is delivered, and commits go through again") {
                        CHECK(seen == std::vector<EventId>{ids[0]});
                        CHECK(a->commit(paid_with_retry_due(2, 1h, more)));
                    }
                }
            }
            bus.stop();
        }
    }
}

namespace {

// A test seam that holds the first call after it is armed until released.
struct HeldOnce {
    std::atomic<bool> armed{false};
    std::promise<void> reached;
    std::promise<void> go;
    std::shared_future<void> going = go.get_future().share();

    std::function<void()> seam() {
        return [this] {
            if (!armed.exchange(false)) return;
            reached.set_value();
            going.wait();
        };
    }
};

} // namespace

SCENARIO("an ownership answer read across a re-registration says lost, not owned, for an event a survivor took") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    HeldOnce held;
    auto options_a = options;
    options_a.between_ownership_reads = held.seam();
    auto a = open_store(options_a);
    auto b = open_store(options);
    std::string const& s = schema.name();

    GIVEN("A committed an invoice's event and retry, recorded as its own") {
        std::vector<EventId> ids;
        REQUIRE(a->commit(paid_with_retry_due(1, 1h, ids)));
        REQUIRE(a->undelivered().size() == 1);

        WHEN("a delivery thread asks about the event and stalls between its two reads, while A's registration is "
             "swept, B takes the event and A re-registers") {
            held.armed = true;
            auto answer = std::async(std::launch::async, [&] { return a->still_owns(ids[0]); });
            held.reached.get_future().wait();
            REQUIRE(run_sql(schema.uri(), registration_swept(s, "outbox")));
            REQUIRE(b->take_over(1).events.size() == 1);
            REQUIRE(a->renew());
            REQUIRE(a->reregistrations() == 1);
            held.go.set_value();

            THEN("the answer is lost: B delivers it") { CHECK(answer.get() == application::Ownership::lost); }
        }
    }
}

SCENARIO("rows a survivor claimed and lost again while it stalled before recording them are lost to it") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    std::string const& s = schema.name();
    std::vector<EventId> ids;
    {
        auto gone = open_store(options);
        REQUIRE(gone->commit(paid_with_retry_due(1, 1h, ids)));
    } // its clean stop frees its outbox and retries at once
    HeldOnce held;
    auto options_s = options;
    options_s.after_take_over_commit = held.seam();
    auto survivor = open_store(options_s);
    auto second = open_store(options);

    GIVEN("the survivor's claim of a gone process's event and retry committed, and it stalls before recording them") {
        held.armed = true;
        auto claim = std::async(std::launch::async, [&] { return survivor->take_over(10); });
        held.reached.get_future().wait();

        WHEN("its registration is swept, a second survivor takes them, and its renewal re-registers it") {
            REQUIRE(run_sql(schema.uri(), registration_swept(s, "outbox")));
            REQUIRE(second->take_over(10).events.size() == 1);
            auto renewal = std::async(std::launch::async, [&] { return survivor->renew(); });
            // The re-registration waits for the claim, which holds the token until its rows are recorded.
            CHECK(renewal.wait_for(200ms) == std::future_status::timeout);
            held.go.set_value();
            REQUIRE(claim.get().events.size() == 1);
            REQUIRE(renewal.get());

            THEN("the re-registration counted them as lost: its bus drops them, the second survivor delivers them") {
                CHECK(survivor->reregistrations() == 1);
                CHECK(survivor->still_owns(ids[0]) == application::Ownership::lost);
                CHECK(survivor->still_owns(ids[1]) == application::Ownership::lost);
            }
        }
    }
}
