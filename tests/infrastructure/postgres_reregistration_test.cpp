// A re-registration held up mid-transaction (another session holds the old
// registration's row): what waits for it waits within a bound, and a
// survivor's take-over that read before it committed cannot take a lease it
// kept (review 18, A-4 and A-6). Two sessions and a row lock order the steps;
// nothing is left to chance.
#include "support/builders.hpp"
#include "support/postgres.hpp"

#include <payments/infrastructure/store/postgres_store.hpp>

#include <chrono>
#include <future>

using namespace test;
using application::Changes;
using infrastructure::PostgresStore;

namespace {

// A PROCESSING invoice's first attempt: its commit takes the invoice's lease.
Changes attempt_holding_lease(int n) {
    Invoice invoice = Invoice::from(Invoice::create(iid("inv_" + std::to_string(n)), usd(500), "", meta()).value());
    invoice.apply(invoice.request_payment(attempt(n), "pm_card_ok", meta()).value());
    Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
    changes.payments.push_back({Payment::from(current_request(invoice)), 0});
    return changes;
}

// The re-registration's last statement (deleting the old registration's row),
// as pg_stat_activity shows it; not a heart's sweep, which may wait on the row too.
std::string const forgetting = "DELETE FROM owners WHERE owner = %";

// A's registration lapses, and another session locks its row: A's next
// renewal re-registers and stops at its last statement (removing that row),
// holding its token and, in its transaction, the leases it keeps.
struct HeldReregistration {
    OtherSession other;
    std::future<bool> renewal;

    // `stores`: how many are open on the schema (their hearts' first sweeps,
    // which would remove the lapsed row, are waited for).
    HeldReregistration(TestSchema const& schema, PostgresStore& a, std::size_t stores) : other(schema.uri()) {
        std::string const& s = schema.name();
        REQUIRE(wait_for_session(schema.uri(), schema.name(), sweeping, false, stores).size() == stores);
        std::string const a_row = "(SELECT owner FROM " + s + ".leases LIMIT 1)";
        REQUIRE(run_sql(schema.uri(), "UPDATE " + s + ".owners SET alive_until = clock_timestamp() - interval '1 second' "
                                      "WHERE owner = " + a_row));
        REQUIRE(other.exec("BEGIN"));
        REQUIRE(other.exec("SELECT 1 FROM " + s + ".owners WHERE owner = " + a_row + " FOR UPDATE"));
        renewal = std::async(std::launch::async, [&a] { return a.renew(); });
        REQUIRE(wait_for_session(schema.uri(), schema.name(), forgetting, true).size() == 1);
    }
    ~HeldReregistration() {
        release();
        if (renewal.valid()) renewal.wait();
    }
    // The other session lets the row go: the re-registration goes on.
    bool release() { return !std::exchange(locked, false) || other.exec("ROLLBACK"); }

    bool locked = true;
};

} // namespace

SCENARIO("a survivor whose lease take-over read before a re-registration committed does not take the lease it kept") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    options.statement_timeout = 5s; // the lock waits below end when the test says
    auto a = open_store(options);
    auto b = open_store(options);

    GIVEN("A holds an invoice's lease, its registration lapsed, and its re-registration waits holding the lease row") {
        REQUIRE(a->commit(attempt_holding_lease(1)));
        HeldReregistration held(schema, *a, 2);

        WHEN("B asks for the lease (A looks gone to it), then A's re-registration commits") {
            auto taken = std::async(std::launch::async, [&] { return b->lease(iid("inv_1")); });
            REQUIRE(wait_for_session(schema.uri(), schema.name(), "%INSERT INTO leases%", true).size() == 1);
            REQUIRE(held.release());
            REQUIRE(held.renewal.get());

            THEN("the lease stays A's without a break, and B is told no") {
                CHECK_FALSE(taken.get());
                CHECK(a->reregistrations() == 1);
                CHECK(a->held_since_attempt(iid("inv_1")));
            }
        }
    }
}

SCENARIO("a write while a re-registration hangs answers storage_unavailable at once, having sent nothing") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h;
    options.statement_timeout = 2s; // headroom for the bound below on a loaded machine
    auto a = open_store(options);

    GIVEN("A's re-registration waits on a row lock, and its server process stops (it never times out by itself)") {
        REQUIRE(a->commit(attempt_holding_lease(1)));
        HeldReregistration held(schema, *a, 1);
        StoppedBackends stopped(server_processes_of(schema.uri(), schema.name(), forgetting, true));
        REQUIRE(stopped.pids.size() == 1);

        WHEN("A commits an invoice meanwhile") {
            auto const started = std::chrono::steady_clock::now();
            Invoice invoice = Invoice::from(Invoice::create(iid("inv_2"), usd(500), "", meta()).value());
            auto const committed = a->commit({Changes::InvoiceWrite{invoice, 0}, {}});
            auto const waited = std::chrono::steady_clock::now() - started;
            stopped.resume();

            THEN("the commit is refused as storage_unavailable without waiting for it: the process found itself "
                 "taken for gone, and what it commits would be held back by its bus (review 20, 4)") {
                REQUIRE_FALSE(committed);
                CHECK(committed.error().code == ErrorCode::storage_unavailable);
                CHECK(waited < options.statement_timeout);
                CHECK_FALSE(run_sql(schema.uri(), "SELECT 1 / (SELECT count(*) FROM " + schema.name() +
                                                      ".invoices WHERE id = 'inv_2')::int"));
            }
        }
    }
}
