// Outbox work of a process that is gone (killed, or stopped), taken over by
// the others on one PostgreSQL schema: each event and each retry by exactly
// one survivor, woken by NOTIFY rather than by a poll (issue 15).
#include "support/builders.hpp"
#include "support/postgres.hpp"

#include <payments/application/outbox_relay.hpp>
#include <payments/engine.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>
#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/store/postgres_store.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <array>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace test;
using application::Changes;
using infrastructure::PostgresStore;
using infrastructure::PostgresStoreOptions;

namespace {

// An invoice PAID by process A: the invoice and its InvoicePaid, committed by A.
std::pair<Invoice, InvoicePaid> paid_by_a(int n) {
    Invoice invoice = Invoice::from(Invoice::create(iid("inv_" + std::to_string(n)), usd(500), "", meta()).value());
    invoice.apply(invoice.request_payment(attempt(n), "pm_card_ok", meta()).value());
    auto paid = std::get<InvoicePaid>(invoice.settle_success(success_of(invoice), meta()).value());
    invoice.apply(paid);
    return {invoice, paid};
}

// Counts InvoicePaid deliveries; waits for them with a deadline.
struct Deliveries {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<EventId> seen; // Owned by: mutex

    void add(InvoicePaid const& e) {
        {
            std::lock_guard guard(mutex);
            seen.push_back(e.envelope.id);
        }
        changed.notify_all();
    }
    bool wait_for(std::size_t n, std::chrono::milliseconds deadline) {
        std::unique_lock guard(mutex);
        return changed.wait_for(guard, deadline, [&] { return seen.size() >= n; });
    }
    std::size_t count() {
        std::lock_guard guard(mutex);
        return seen.size();
    }
};

} // namespace

SCENARIO("an event committed by a process that then died is delivered once by a survivor, woken by NOTIFY") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options_a = schema.options();
    options_a.lease_timeout = 1h; // A never renews in time: the test decides when it looks dead
    auto options_b = options_a;
    options_b.lease_timeout = 300ms; // B looks for lapsed processes every 100 ms
    options_b.statement_timeout = 300ms;
    auto a = open_store(options_a);
    auto b = open_store(options_b);
    EngineOptions engine_options;
    engine_options.threads = 2;
    engine_options.log_output = nullptr;
    engine_options.takeover_poll_interval = 1h; // only the NOTIFY can wake B in time
    auto engine_b = Engine::builder(engine_options).store(b).idempotency_store(b).build().value();
    Deliveries deliveries;
    auto subscription =
        engine_b->bus().subscribe<InvoicePaid>("test.paid", [&](InvoicePaid const& e) { deliveries.add(e); });

    GIVEN("process A committed an invoice's InvoicePaid and never published it") {
        auto [invoice, paid] = paid_by_a(1);
        Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
        changes.events.emplace_back(paid);
        REQUIRE(a->commit(changes));
        REQUIRE(engine_b->recovery().republished == 0);

        WHEN("A is killed: its liveness lapses") {
            REQUIRE(run_sql(schema.uri(), "UPDATE " + schema.name() + ".owners SET alive_until = clock_timestamp() - "
                                          "interval '1 second' WHERE owner = (SELECT owner FROM " + schema.name() +
                                          ".outbox LIMIT 1)"));
            THEN("B's subscriber receives it, once, within B's lease timeout and a round") {
                REQUIRE(deliveries.wait_for(1, 3s));
                REQUIRE(engine_b->wait_idle(3s));
                CHECK(deliveries.count() == 1);
                CHECK(deliveries.seen[0] == paid.envelope.id);
                CHECK(b->take_over(100).empty());
                CHECK(b->undelivered().size() <= 1); // its mark is written with B's next batch
            }
        }
        WHEN("A stops cleanly before publishing it") {
            a->close();
            THEN("B's subscriber receives it, once") {
                REQUIRE(deliveries.wait_for(1, 3s));
                REQUIRE(engine_b->wait_idle(3s));
                CHECK(deliveries.count() == 1);
            }
        }
    }
}

SCENARIO("the outbox and the retries of a dead process are taken over by exactly one of two survivors") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h; // the test decides when a store looks dead
    options.statement_timeout = 1s; // a claim that waited for another's locks fails fast
    auto a = open_store(options);
    auto b = open_store(options);
    auto c = open_store(options);

    GIVEN("process A committed 8 invoices, each with an event and a retry, and died") {
        std::set<EventId> committed;
        for (int n = 1; n <= 8; ++n) {
            auto [invoice, paid] = paid_by_a(n);
            Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
            changes.events.emplace_back(paid);
            PaymentRequested retry = current_request(invoice);
            retry.envelope.id = EventId::parse("evt_retry_" + std::to_string(n)).value();
            changes.scheduled.push_back({retry, t0() + std::chrono::seconds(n)});
            REQUIRE(a->commit(changes));
            committed.insert(paid.envelope.id);
            committed.insert(retry.envelope.id);
        }
        REQUIRE(run_sql(schema.uri(), "UPDATE " + schema.name() + ".owners SET alive_until = clock_timestamp() - "
                                      "interval '1 second' WHERE owner = (SELECT owner FROM " + schema.name() +
                                      ".outbox LIMIT 1)"));

        WHEN("B and C take over at once, in small batches, until nothing is left") {
            std::vector<EventId> by_b, by_c;
            auto drain = [](PostgresStore& store, std::vector<EventId>& into) {
                for (;;) {
                    auto taken = store.take_over(4);
                    if (taken.empty()) return;
                    for (auto const& e : taken.events) into.push_back(envelope_of(e).id);
                    for (auto const& s : taken.scheduled) into.push_back(envelope_of(s.event).id);
                }
            };
            std::thread other([&] { drain(*c, by_c); });
            drain(*b, by_b);
            other.join();
            THEN("every event and every retry is taken by exactly one of them") {
                std::multiset<EventId> all(by_b.begin(), by_b.end());
                all.insert(by_c.begin(), by_c.end());
                CHECK(all.size() == committed.size());
                CHECK(std::set<EventId>(all.begin(), all.end()) == committed);
                AND_THEN("they are the takers' own now: neither takes the other's, and each answers its own") {
                    CHECK(b->take_over(100).empty());
                    CHECK(c->take_over(100).empty());
                    CHECK(b->undelivered().size() + c->undelivered().size() == 8);
                    CHECK(b->scheduled().size() + c->scheduled().size() == 8);
                }
            }
        }
        WHEN("another survivor is claiming half of the invoices (their claim locks held) in a transaction still open") {
            OtherSession claimer(schema.uri());
            auto exec = [&](std::string const& sql) { return claimer.exec(sql); };
            std::string const& s = schema.name();
            REQUIRE(exec("INSERT INTO " + s + ".owners VALUES ('claimer', clock_timestamp() + interval '1 hour')"));
            REQUIRE(exec("BEGIN"));
            REQUIRE(exec("SELECT pg_advisory_xact_lock(hashtextextended('payments.outbox:' || '" + s +
                         "' || ':' || invoice_id, 0)) FROM " + s + ".outbox WHERE seq IN (SELECT seq FROM " + s +
                         ".outbox ORDER BY seq LIMIT 4)"));
            REQUIRE(exec("UPDATE " + s + ".outbox SET owner = 'claimer' WHERE seq IN (SELECT seq FROM " + s +
                         ".outbox ORDER BY seq LIMIT 4 FOR UPDATE SKIP LOCKED)"));
            THEN("B takes the other events at once, without waiting for it, and never those it claimed") {
                auto const taken = b->take_over(100);
                REQUIRE(exec("COMMIT"));
                CHECK(taken.events.size() == 4);
                CHECK(taken.scheduled.size() == 8);
                CHECK(b->take_over(100).empty());
            }
        }
        WHEN("B's relay and C's relay each run a round, one after the other") {
            boost::asio::io_context io;
            infrastructure::ManualClock clock;
            infrastructure::ManualScheduler scheduler(clock);
            infrastructure::NullLogger logger;
            infrastructure::AsioEventBus bus_b(io.get_executor(), scheduler, clock, logger);
            infrastructure::AsioEventBus bus_c(io.get_executor(), scheduler, clock, logger);
            application::OutboxRelay relay_b(*b, bus_b);
            application::OutboxRelay relay_c(*c, bus_c);
            auto const round_b = relay_b.take_over();
            auto const round_c = relay_c.take_over();
            THEN("B publishes every event and arms every retry, C none") {
                CHECK(round_b.republished == 8);
                CHECK(round_b.rearmed == 8);
                CHECK(round_c.republished + round_c.rearmed == 0);
            }
            bus_b.stop();
            bus_c.stop();
        }
    }
}

SCENARIO("a schema of version 3 is migrated forward: its undelivered rows have no owner and are taken over") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    GIVEN("an undelivered event in the schema, written before owners were recorded") {
        auto [invoice, paid] = paid_by_a(1);
        Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
        changes.events.emplace_back(paid);
        REQUIRE(a->commit(changes));
        a->close();
        std::string const& s = schema.name();
        REQUIRE(run_sql(schema.uri(), "ALTER TABLE " + s + ".outbox DROP COLUMN owner; ALTER TABLE " + s +
                                      ".scheduled DROP COLUMN owner; DROP INDEX IF EXISTS " + s +
                                      ".scheduled_by_owner; CREATE INDEX outbox_undelivered ON " + s +
                                      ".outbox (seq) WHERE NOT delivered; ALTER TABLE " + s + ".invoices DROP COLUMN review_of; "
                                      "DROP INDEX " + s + ".payments_open; ALTER TABLE " + s + ".scheduled DROP COLUMN seq; "
                                      "UPDATE " + s + ".schema_version SET version = 3"));
        WHEN("this release opens it") {
            auto b = open_store(options);
            THEN("it takes the event over") {
                auto const taken = b->take_over(10);
                REQUIRE(taken.events.size() == 1);
                CHECK(std::get<InvoicePaid>(taken.events[0]) == paid);
            }
        }
    }
}

SCENARIO("a process that stops cleanly writes its pending delivery marks before it says it is gone") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    std::string const& s = schema.name();
    GIVEN("A delivered an event whose mark waits for A's next batch") {
        auto [invoice, paid] = paid_by_a(1);
        Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
        changes.events.emplace_back(paid);
        REQUIRE(a->commit(changes));
        REQUIRE(a->undelivered().size() == 1);
        a->mark_delivered(paid.envelope.id);
        // What was still undelivered when A's owner row went (the NOTIFY to the others goes with it).
        REQUIRE(run_sql(schema.uri(),
                        "CREATE TABLE " + s + ".probe (undelivered bigint); CREATE FUNCTION " + s +
                            ".probe() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO " + s +
                            ".probe SELECT count(*) FROM " + s + ".outbox WHERE NOT delivered AND owner = OLD.owner; "
                            "RETURN OLD; END $$; CREATE TRIGGER probe BEFORE DELETE ON " + s + ".owners FOR EACH ROW "
                            "EXECUTE FUNCTION " + s + ".probe()"));
        WHEN("A stops cleanly") {
            a->close();
            THEN("its owner row went after the mark was written: the survivors have nothing to deliver again") {
                CHECK(run_sql(schema.uri(), "SELECT 1 / (SELECT count(*) FROM " + s + ".probe)::int"));
                CHECK(run_sql(schema.uri(), "SELECT 1 / (CASE WHEN (SELECT max(undelivered) FROM " + s +
                                                ".probe) = 0 THEN 1 ELSE 0 END)"));
            }
        }
    }
}

SCENARIO("three survivors claiming one orphan at a time never take the same event twice") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    options.statement_timeout = 2s;
    auto a = open_store(options);
    GIVEN("process A committed 150 events and stopped") {
        auto [invoice, paid] = paid_by_a(1);
        std::set<EventId> committed;
        Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
        for (int n = 0; n < 150; ++n) {
            InvoicePaid e = paid;
            e.envelope.id = EventId::parse("evt_orphan_" + std::to_string(n)).value();
            committed.insert(e.envelope.id);
            changes.events.emplace_back(e);
        }
        REQUIRE(a->commit(changes));
        a->close(); // gone (its heart, renewing at its start, would revive a lapse set by hand)
        auto b = open_store(options);
        auto c = open_store(options);
        auto d = open_store(options);
        WHEN("B, C and D each take one at a time, at once, until nothing is left") {
            std::array<std::vector<EventId>, 3> taken;
            std::array<PostgresStore*, 3> const stores{b.get(), c.get(), d.get()};
            std::vector<std::thread> threads;
            for (std::size_t i = 0; i < 3; ++i)
                threads.emplace_back([&, i] {
                    for (;;) {
                        auto got = stores[i]->take_over(1);
                        if (got.empty()) return;
                        for (auto const& e : got.events) taken[i].push_back(envelope_of(e).id);
                    }
                });
            for (auto& t : threads) t.join();
            THEN("each event was taken by exactly one of them") {
                std::multiset<EventId> all;
                for (auto const& t : taken) all.insert(t.begin(), t.end());
                CHECK(all.size() == committed.size());
                CHECK(std::set<EventId>(all.begin(), all.end()) == committed);
            }
        }
    }
}

SCENARIO("a take-over that fails half-way loses nothing: what it claimed is still there to take") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    std::string const& s = schema.name();
    GIVEN("A committed an event and a retry and stopped") {
        auto [invoice, paid] = paid_by_a(1);
        Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
        changes.events.emplace_back(paid);
        PaymentRequested retry = current_request(invoice);
        retry.envelope.id = EventId::parse("evt_retry_1").value();
        changes.scheduled.push_back({retry, t0() + 1s});
        REQUIRE(a->commit(changes));
        a->close();
        auto b = open_store(options);
        WHEN("B's claim of the retries fails after its claim of the events") {
            REQUIRE(run_sql(schema.uri(), "CREATE FUNCTION " + s + ".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
                                          "BEGIN RAISE EXCEPTION 'refused'; END $$; CREATE TRIGGER refuse BEFORE UPDATE ON " +
                                              s + ".scheduled FOR EACH ROW EXECUTE FUNCTION " + s + ".refuse()"));
            CHECK_THROWS_AS(b->take_over(10), application::StorageFailure);
            REQUIRE(run_sql(schema.uri(), "DROP TRIGGER refuse ON " + s + ".scheduled"));
            THEN("the next take-over takes the event and the retry") {
                auto const taken = b->take_over(10);
                CHECK(taken.events.size() == 1);
                CHECK(taken.scheduled.size() == 1);
            }
        }
    }
}

SCENARIO("a take-over round claims one batch, and nothing while the bus is full") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    GIVEN("process A committed 120 invoices' events and stopped, and B's relay is on a bus nobody runs yet") {
        // From ten threads: the group commit writes them in a few transactions.
        std::vector<std::thread> committers;
        std::atomic<int> committed{0};
        for (int t = 0; t < 10; ++t)
            committers.emplace_back([&, t] {
                for (int n = 1 + t; n <= 120; n += 10) {
                    auto [invoice, e] = paid_by_a(n);
                    Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
                    changes.events.emplace_back(e);
                    if (a->commit(changes)) ++committed;
                }
            });
        for (auto& t : committers) t.join();
        REQUIRE(committed == 120);
        InvoicePaid const paid = paid_by_a(121).second; // only ever published, to fill the bus
        a->close();
        auto b = open_store(options);
        boost::asio::io_context io;
        infrastructure::ManualClock clock;
        infrastructure::ManualScheduler scheduler(clock);
        infrastructure::NullLogger logger;
        infrastructure::AsioEventBus bus(io.get_executor(), scheduler, clock, logger);
        application::OutboxRelay relay(*b, bus);

        WHEN("B's relay runs one round") {
            auto const round = relay.take_over();
            THEN("it claims one batch and says more is left") {
                CHECK(round.republished == application::OutboxRelay::batch);
                CHECK(round.more);
            }
        }
        WHEN("B's bus already holds as many events as a take-over waits for") {
            for (std::size_t n = 0; n < application::OutboxRelay::max_backlog; ++n) REQUIRE(bus.publish(paid));
            auto const round = relay.take_over();
            THEN("B claims nothing: the events stay for another process") {
                CHECK(round.bus_full);
                CHECK(round.republished == 0);
                auto c = open_store(options);
                CHECK(c->take_over(200).events.size() == 120);
            }
        }
        bus.stop();
    }
}

SCENARIO("survivors take an orphan invoice's events whole: one survivor delivers all of them, in order") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    GIVEN("process A committed 6 invoices with 3 events each and stopped") {
        std::map<EventId, InvoiceId> invoice_of;
        for (int n = 1; n <= 6; ++n) {
            auto [invoice, paid] = paid_by_a(n);
            Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
            for (int k = 0; k < 3; ++k) {
                InvoicePaid e = paid;
                e.envelope.id = EventId::parse("evt_" + std::to_string(n) + "_" + std::to_string(k)).value();
                invoice_of[e.envelope.id] = invoice.id();
                changes.events.emplace_back(e);
            }
            REQUIRE(a->commit(changes));
        }
        a->close();
        auto b = open_store(options);
        auto c = open_store(options);

        WHEN("B and C take over one at a time, in turn, until nothing is left") {
            std::array<std::vector<EventId>, 2> taken;
            for (bool more = true; more;) {
                more = false;
                for (std::size_t t = 0; t < 2; ++t) {
                    auto got = (t == 0 ? *b : *c).take_over(1);
                    for (auto const& e : got.events) taken[t].push_back(envelope_of(e).id);
                    more = more || !got.empty();
                }
            }
            THEN("each invoice's three events went to one of them, in commit order") {
                std::map<InvoiceId, std::set<std::size_t>> takers;
                for (std::size_t t = 0; t < 2; ++t) {
                    std::map<InvoiceId, std::vector<EventId>> seen;
                    for (auto const& id : taken[t]) {
                        takers[invoice_of.at(id)].insert(t);
                        seen[invoice_of.at(id)].push_back(id);
                    }
                    for (auto const& [invoice, ids] : seen) CHECK(std::is_sorted(ids.begin(), ids.end()));
                }
                CHECK(takers.size() == 6);
                for (auto const& [invoice, who] : takers) {
                    CAPTURE(invoice);
                    CHECK(who.size() == 1);
                }
                CHECK(taken[0].size() + taken[1].size() == 18);
            }
        }
    }
}

SCENARIO("a survivor takes none of an invoice whose first row a re-registering process is keeping") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    std::string const& s = schema.name();
    auto a = open_store(options);
    GIVEN("A committed inv_1 with three events and stopped") {
        auto [invoice, paid] = paid_by_a(1);
        Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
        for (int k = 0; k < 3; ++k) {
            InvoicePaid e = paid;
            e.envelope.id = EventId::parse("evt_1_" + std::to_string(k)).value();
            changes.events.emplace_back(e);
        }
        REQUIRE(a->commit(changes));
        a->close();
        auto b = open_store(options);
        WHEN("another session (standing for A re-registering as 'next', its keep_events half-way) holds inv_1's first "
             "row while B takes over, then moves all of inv_1's rows to 'next' and commits") {
            REQUIRE(run_sql(schema.uri(), "INSERT INTO " + s + ".owners VALUES ('next', clock_timestamp() + interval '1 hour')"));
            OtherSession keeper(schema.uri());
            REQUIRE(keeper.exec("BEGIN"));
            REQUIRE(keeper.exec("SELECT seq FROM " + s + ".outbox WHERE seq = (SELECT min(seq) FROM " + s +
                                ".outbox WHERE invoice_id = 'inv_1') FOR UPDATE"));
            auto taking = std::async(std::launch::async, [&] { return b->take_over(1); });
            // B waits on the first row (locks in seq order); a B that skipped it has finished instead.
            wait_for_session(schema.uri(), schema.name(), "%UPDATE outbox SET owner%", true);
            REQUIRE(keeper.exec("UPDATE " + s + ".outbox SET owner = 'next' WHERE invoice_id = 'inv_1'"));
            REQUIRE(keeper.exec("COMMIT"));
            auto const taken = taking.get();
            THEN("B took none of inv_1's events: they are all the keeper's") {
                CHECK(taken.events.empty()); // SKIP LOCKED by row: evt_1_1 and evt_1_2
            }
        }
    }
}

SCENARIO("an orphan invoice another survivor is claiming (its advisory lock held) is skipped, the next one taken") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    GIVEN("A committed inv_1 and inv_2 with three events each and stopped") {
        for (int n = 1; n <= 2; ++n) {
            auto [invoice, paid] = paid_by_a(n);
            Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
            for (int k = 0; k < 3; ++k) {
                InvoicePaid e = paid;
                e.envelope.id = EventId::parse("evt_" + std::to_string(n) + "_" + std::to_string(k)).value();
                changes.events.emplace_back(e);
            }
            REQUIRE(a->commit(changes));
        }
        a->close();
        auto b = open_store(options);
        WHEN("another session holds inv_1's claim lock while B takes over two invoices") {
            OtherSession other(schema.uri());
            REQUIRE(other.exec("BEGIN"));
            REQUIRE(other.exec("SELECT pg_advisory_xact_lock(hashtextextended('payments.outbox:' || '" + schema.name() +
                               "' || ':inv_1', 0))"));
            auto const taken = b->take_over(2);
            REQUIRE(other.exec("COMMIT"));
            THEN("B took inv_2's three events and none of inv_1's") {
                std::vector<std::string> ids;
                for (auto const& e : taken.events) ids.emplace_back(envelope_of(e).id.str());
                CHECK(ids == std::vector<std::string>{"evt_2_0", "evt_2_1", "evt_2_2"});
            }
        }
    }
}

SCENARIO("a survivor chooses orphan invoices from a bounded prefix of the rows, and still takes an invoice's events whole") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    auto a = open_store(options);
    GIVEN("A committed inv_1's event, then twenty other invoices' events, then a second event of inv_1, and stopped") {
        auto [first_invoice, first_paid] = paid_by_a(1);
        Changes first{Changes::InvoiceWrite{first_invoice, 0}, {}};
        first.events.emplace_back(first_paid);
        REQUIRE(a->commit(first));
        for (int n = 2; n <= 21; ++n) {
            auto [invoice, paid] = paid_by_a(n);
            Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
            changes.events.emplace_back(paid);
            REQUIRE(a->commit(changes));
        }
        auto [last_invoice, last_paid] = paid_by_a(22);
        InvoicePaid late = first_paid;
        late.envelope.id = EventId::parse("evt_1_late").value();
        Changes last{Changes::InvoiceWrite{last_invoice, 0}, {}};
        last.events.emplace_back(late);
        REQUIRE(a->commit(last));
        a->close();
        auto b = open_store(options);

        WHEN("B takes over one invoice: its candidates come from the first sixteen rows") {
            auto const taken = b->take_over(1);
            THEN("it takes both of inv_1's events, the one far past the prefix included, and no other") {
                std::vector<EventId> ids;
                for (auto const& e : taken.events) ids.push_back(envelope_of(e).id);
                CHECK(ids == std::vector<EventId>{first_paid.envelope.id, late.envelope.id});
            }
        }
    }
}

// A backlog of 300,000 orphan invoices: one round of a survivor reads a
// bounded prefix, not every row. Seconds of inserts, so not run by default
// (doctest's --no-skip). It prints the round's time (35 ms here, 623 ms
// before the bounded queries): a measurement to read, not an assertion, as
// performance is judged in scripts/bench, never by a timed test.
TEST_CASE("a take-over round over three hundred thousand orphan invoices claims a batch, and prints its time" *
          doctest::skip()) {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    std::string const& s = schema.name();
    auto a = open_store(options);
    auto [invoice, paid] = paid_by_a(1);
    Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
    changes.events.emplace_back(paid);
    REQUIRE(a->commit(changes));
    a->close();
    REQUIRE(run_sql(schema.uri(), "INSERT INTO " + s + ".outbox (event_id, invoice_id, occurred_at, body, owner) SELECT "
                                  "'evt_x' || n, 'inv_x' || n, o.occurred_at, o.body, o.owner FROM " + s +
                                  ".outbox o, generate_series(1, 300000) n; ANALYZE " + s + ".outbox"));
    auto b = open_store(options);
    auto const started = std::chrono::steady_clock::now();
    auto const taken = b->take_over(100);
    auto const took = std::chrono::steady_clock::now() - started;
    CHECK(taken.events.size() == 100);
    MESSAGE("one round over 300 000 orphan invoices: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
}
