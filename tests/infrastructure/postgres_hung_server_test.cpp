// A PostgreSQL server that stops answering (its processes stopped, a network
// black hole the kernel still acknowledges): every call of the store answers
// storage_unavailable within a bound, none hangs (review 15, #7).
#include "support/builders.hpp"
#include "support/postgres.hpp"

#include <payments/infrastructure/store/postgres_store.hpp>

#include <chrono>
#include <future>
#include <vector>

using namespace test;
using infrastructure::PostgresStore;

SCENARIO("a PostgreSQL server that stops answering makes reads and commits fail within a bound, never hang") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.pool_size = 2; // one writer, one reader
    options.statement_timeout = 150ms;
    options.lease_timeout = 1h;
    auto opened = PostgresStore::open(options);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().detail));
    std::shared_ptr<PostgresStore> store(std::move(*opened));
    REQUIRE_FALSE(store->invoice(iid("inv_1")).has_value()); // the reader's session is open

    GIVEN("every session of the store stopped on the server's side") {
        auto const pids = server_processes_of(*uri, schema.name());
        REQUIRE(pids.size() >= 3); // writer, reader, liveness
        StoppedBackends stopped(pids);

        WHEN("two reads (one for the only reading connection, one waiting for it) and a commit are asked at once") {
            auto read = [&] {
                try {
                    (void)store->invoice(iid("inv_1"));
                    return false;
                } catch (application::StorageFailure const&) {
                    return true;
                }
            };
            auto first = std::async(std::launch::async, read);
            auto second = std::async(std::launch::async, read);
            auto commit = std::async(std::launch::async, [&] {
                Invoice invoice = Invoice::from(Invoice::create(iid("inv_2"), usd(500), "", meta()).value());
                return store->commit({application::Changes::InvoiceWrite{invoice, 0}, {}});
            });
            auto const deadline = std::chrono::steady_clock::now() + 2s;
            bool const answered = first.wait_until(deadline) == std::future_status::ready &&
                                  second.wait_until(deadline) == std::future_status::ready &&
                                  commit.wait_until(deadline) == std::future_status::ready;
            stopped.resume(); // a hung call returns now, late
            THEN("each returns within the bound: the commit and the read left without a connection unavailable") {
                CHECK(answered);
                // The read on the hung session gives it up and may answer on a new one.
                bool const first_unavailable = first.get();
                bool const second_unavailable = second.get();
                CHECK((first_unavailable || second_unavailable));
                auto const committed = commit.get();
                REQUIRE_FALSE(committed);
                CHECK(committed.error().code == ErrorCode::storage_unavailable);
            }
        }
    }
}
