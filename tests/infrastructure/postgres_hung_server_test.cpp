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

SCENARIO("a PostgreSQL asynchronous commit the writer reaches past the statement timeout is answered expired, not sent") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.pool_size = 2; // one writer, one reader
    options.statement_timeout = 150ms;
    options.lease_timeout = 1h;
    options.max_batch = 1; // the second commit waits for the first one's batch
    auto opened = PostgresStore::open(options);
    REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().detail));
    std::shared_ptr<PostgresStore> store(std::move(*opened));
    REQUIRE_FALSE(store->invoice(iid("inv_1")).has_value()); // the reader's session is open

    GIVEN("every session of the store stopped on the server's side") {
        auto const pids = server_processes_of(*uri, schema.name());
        REQUIRE(pids.size() >= 3); // writer, reader, liveness
        StoppedBackends stopped(pids);

        WHEN("two asynchronous commits queue, the first one's batch held by the hung writer's session") {
            std::promise<Result<void>> first, second;
            auto first_heard = first.get_future(), second_heard = second.get_future();
            auto changes = [](char const* id) {
                Invoice invoice = Invoice::from(Invoice::create(iid(id), usd(500), "", meta()).value());
                return application::Changes{application::Changes::InvoiceWrite{invoice, 0}, {}};
            };
            store->commit_async(changes("inv_2"), [&](Result<void> r) { first.set_value(std::move(r)); });
            store->commit_async(changes("inv_3"), [&](Result<void> r) { second.set_value(std::move(r)); });
            auto const deadline = std::chrono::steady_clock::now() + 2s;
            bool const answered = first_heard.wait_until(deadline) == std::future_status::ready &&
                                  second_heard.wait_until(deadline) == std::future_status::ready;
            stopped.resume();
            THEN("the second is told it was not sent (its writer did not take it in time), and never written") {
                REQUIRE(answered);
                auto const late = second_heard.get();
                REQUIRE_FALSE(late);
                CHECK(late.error().code == ErrorCode::storage_unavailable);
                CHECK(late.error().detail.find("was not sent") != std::string::npos);
                CHECK_FALSE(store->invoice(iid("inv_3")).has_value());
            }
        }
    }
}
