// What only a durable store has: reopening, its file's checks, migrations, the
// lock against a second process, group commit and storage failures.
#include "support/builders.hpp"
#include "support/faulty_vfs.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"
#include "support/world.hpp"

#include "infrastructure/store/record_codec.hpp"
#include "infrastructure/store/sqlite_schema.hpp"

#include <payments/application/outbox_relay.hpp>
#include <payments/engine.hpp>
#include <payments/infrastructure/store/sqlite_store.hpp>
#include <payments/infrastructure/system/clocks.hpp>

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

using namespace test;
using application::Changes;
using application::IdempotencyClaim;
using application::IdempotencyKey;
using infrastructure::SqliteStore;
using infrastructure::SqliteStoreOptions;

namespace {

std::unique_ptr<SqliteStore> open_store(std::string const& path, SqliteStoreOptions options = {}) {
    options.path = path;
    return SqliteStore::open(options).value();
}

// Runs SQL on the file directly, as another tool would.
void run_sql_on_file(std::string const& path, std::string const& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    char* message = nullptr;
    int const rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    INFO(sql << ": " << (message ? message : ""));
    sqlite3_free(message);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
}

// Another connection's write transaction on the file: the store's writer
// waits for it (SQLite's busy timeout, 5 s) in the first transaction it
// begins, and the commands behind it queue up, as behind a slow disk.
class HeldSqliteWriter {
public:
    explicit HeldSqliteWriter(std::string const& path) {
        REQUIRE(sqlite3_open(path.c_str(), &db_) == SQLITE_OK);
        REQUIRE(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    }
    HeldSqliteWriter(HeldSqliteWriter const&) = delete;
    HeldSqliteWriter& operator=(HeldSqliteWriter const&) = delete;
    ~HeldSqliteWriter() { release(); }
    /// Ends the transaction: the store's writer goes on.
    void release() {
        if (!db_) return;
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        sqlite3_close(db_);
        db_ = nullptr;
    }

private:
    sqlite3* db_ = nullptr;
};

// Asynchronous commits of new invoices, counted as they are answered.
struct AnsweredCommits {
    std::atomic<int> answered{0}, written{0};
    void commit(SqliteStore& store, int n, Changes::Origin origin = Changes::Origin::engine) {
        Changes changes{Changes::InvoiceWrite{invoice_numbered(n), 0}, {}};
        changes.origin = origin;
        store.commit_async(std::move(changes), [this](Result<void> r) {
            if (r) ++written;
            ++answered;
        });
    }
};

} // namespace

// Review 23, F4: SQLite's bound on its writer's queue, and the share of it
// kept for the commands that wait (the twin of GroupCommit's scenario).
SCENARIO("a SQLite store whose writer is behind refuses past its bound, and keeps a quarter of it for the commits that wait") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    AnsweredCommits commits; // outlives the store, whose writer answers them
    auto store = open_store(path, {.max_queued = 4});
    GIVEN("a queue of four, and a writer held in its first transaction") {
        std::future<Result<void>> waiting;
        HeldSqliteWriter held(path);
        commits.commit(*store, 1);
        REQUIRE(holds_within_5s([&] { return store->queued() == 0; })); // taken: the writer waits in it
        WHEN("asynchronous commits are queued until one is refused") {
            commits.commit(*store, 2);
            commits.commit(*store, 3);
            commits.commit(*store, 4);
            CHECK(commits.answered == 0);
            commits.commit(*store, 5);
            THEN("three were queued, the fourth was refused at once, a new charge is not driven, and a commit "
                 "that waits still finds room") {
                CHECK(commits.answered == 1);
                CHECK(commits.written == 0);
                CHECK(store->queued() == 3);
                CHECK_FALSE(store->lease_to_drive(an_invoice().id(), pid(1)));
                waiting = std::async(std::launch::async, [&] {
                    return store->commit({Changes::InvoiceWrite{invoice_numbered(6), 0}, {}});
                });
                REQUIRE(holds_within_5s([&] { return store->queued() == 4; }));
                auto const refused = store->commit({Changes::InvoiceWrite{invoice_numbered(7), 0}, {}});
                REQUIRE_FALSE(refused);
                CHECK(refused.error().code == ErrorCode::storage_unavailable);
                held.release();
                CHECK(waiting.get());
                REQUIRE(holds_within_5s([&] { return commits.answered == 5; }));
                CHECK(commits.written == 4);
                CHECK(store->invoice_count() == 5);
                CHECK(store->lease_to_drive(an_invoice().id(), pid(1)));
            }
        }
    }
}

// Review 25, F3: clients' commands (create, pay) are asynchronous too; they
// take at most half of the queue, so that settlements keep a quarter of
// their own and new charges are still driven.
SCENARIO("review25 F3: a SQLite store admits clients' asynchronous commands to half its queue, and settlements past them") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    AnsweredCommits commits; // outlives the store, whose writer answers them
    auto store = open_store(path, {.max_queued = 8});
    GIVEN("a queue of eight, and a writer held in its first transaction") {
        HeldSqliteWriter held(path);
        commits.commit(*store, 1);
        REQUIRE(holds_within_5s([&] { return store->queued() == 0; })); // taken: the writer waits in it
        WHEN("clients' commands are queued until one is refused, then a settlement") {
            for (int n = 2; n <= 5; ++n) commits.commit(*store, n, Changes::Origin::client);
            CHECK(commits.answered == 0);
            commits.commit(*store, 6, Changes::Origin::client);
            commits.commit(*store, 7);
            THEN("four clients' were queued, the fifth refused at once, the settlement queued, and charges still start") {
                CHECK(commits.answered == 1);
                CHECK(store->queued() == 5);
                CHECK(store->lease_to_drive(an_invoice().id(), pid(1)));
                held.release();
                REQUIRE(holds_within_5s([&] { return commits.answered == 7; }));
                CHECK(commits.written == 6);
            }
        }
    }
}

// Review 23, F2: past the share settlements may fill, a new charge would
// have its answer's commit refused; it is not started until the writer
// caught up, and the janitor starts it then.
SCENARIO("review23 F2: while a SQLite store's writer is behind no new charge starts, and the janitor starts it later") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    AnsweredCommits commits; // outlives the store, whose writer answers them
    auto store = open_store(path, {.max_queued = 4});
    World world({.store = store.get(), .idempotency = store.get()});
    GIVEN("a payment requested, and then the writer held with three settlements' commits queued behind it") {
        Invoice const invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        HeldSqliteWriter held(path);
        commits.commit(*store, 1);
        REQUIRE(holds_within_5s([&] { return store->queued() == 0; }));
        for (int n = 2; n <= 4; ++n) commits.commit(*store, n);
        REQUIRE(store->queued() == 3);
        WHEN("the attempt's request is delivered") {
            world.settle();
            THEN("no charge is sent: the attempt stays REQUESTED") {
                CHECK(world.gateway_port.charges == 0);
                CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::requested);
            }
            AND_WHEN("the writer catches up and the janitor comes round") {
                held.release();
                REQUIRE(holds_within_5s([&] { return commits.answered == 4; }));
                world.run();
                THEN("the attempt is charged once and the invoice is PAID") {
                    CHECK(world.gateway_port.charges == 1);
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                }
            }
        }
    }
}

SCENARIO("a SQLite store keeps everything across a close and a reopen") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    auto const key = IdempotencyKey::make("client", "order-1").value();
    Invoice invoice = an_invoice();
    auto requested = invoice.request_payment(attempt(1), "pm_card_ok", meta()).value();
    Invoice processing = invoice;
    processing.apply(requested);
    Payment payment = Payment::from(requested);
    GIVEN("a store that committed an invoice, its attempt, the event, a retry and an idempotency record") {
        {
            auto store = open_store(path);
            REQUIRE(store->commit({Changes::InvoiceWrite{invoice, 0}, {}}));
            REQUIRE(store->claim(key, "fingerprint", t0()).state == IdempotencyClaim::State::claimed);
            Changes changes{Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}};
            changes.events.emplace_back(requested);
            changes.scheduled.push_back({requested, t0() + 1min});
            changes.idempotency = application::IdempotencyCompletion{key, payment, t0()};
            REQUIRE(store->commit(changes));
            store->complete(key, payment, t0());
        } // closed as a crash would leave it: nothing marked delivered
        WHEN("it is opened again") {
            auto store = open_store(path);
            THEN("every part is there, equal") {
                CHECK(store->invoice(invoice.id()) == processing);
                CHECK(store->payment(payment.id()) == payment);
                CHECK(store->invoice_count() == 1);
                CHECK(store->payment_count() == 1);
                auto replay = store->claim(key, "fingerprint", t0() + 1min);
                REQUIRE(replay.state == IdempotencyClaim::State::replay);
                CHECK(replay.stored->value() == payment);
                REQUIRE(store->undelivered().size() == 1);
                CHECK(std::get<PaymentRequested>(store->undelivered()[0]) == requested);
                REQUIRE(store->scheduled().size() == 1);
                CHECK(store->scheduled()[0].at == t0() + 1min);
            }
        }
    }
}

SCENARIO("a SQLite store refuses files it must not use, with a clear error") {
    TempDir dir;
    WHEN("the directory does not exist") {
        auto store = SqliteStore::open({.path = dir.file("missing/payments.db")});
        THEN("it says so") {
            REQUIRE_FALSE(store);
            CHECK(store.error().code == ErrorCode::storage_unavailable);
            CHECK(store.error().detail.find("does not exist") != std::string::npos);
        }
    }
    WHEN("the file is not a database") {
        std::ofstream(dir.file("notes.txt")) << std::string(8192, 'x');
        auto store = SqliteStore::open({.path = dir.file("notes.txt")});
        THEN("it says so") {
            REQUIRE_FALSE(store);
            CHECK(store.error().detail.find("not an SQLite database") != std::string::npos);
        }
    }
    WHEN("the file's schema is newer than this release") {
        { open_store(dir.file("new.db")); }
        run_sql_on_file(dir.file("new.db"), "PRAGMA user_version=" + std::to_string(SqliteStore::schema_version + 1));
        auto store = SqliteStore::open({.path = dir.file("new.db")});
        THEN("it says so") {
            REQUIRE_FALSE(store);
            CHECK(store.error().detail.find("newer than this release") != std::string::npos);
        }
    }
    WHEN("another opener holds the file") {
        auto first = open_store(dir.file("busy.db"));
        auto second = SqliteStore::open({.path = dir.file("busy.db")});
        THEN("the second is refused, and may open it once the first closed") {
            REQUIRE_FALSE(second);
            CHECK(second.error().detail.find("in use by another process") != std::string::npos);
            first.reset();
            CHECK(SqliteStore::open({.path = dir.file("busy.db")}));
        }
    }
}

SCENARIO("a file that fails the integrity check opens at once and then refuses writes") {
    TempDir dir;
    std::string const path = dir.file("damaged.db");
    Invoice const invoice = an_invoice();
    GIVEN("a file with an invoice, whose outbox index page is zeroed on disk (open reads no outbox)") {
        {
            auto store = open_store(path);
            REQUIRE(store->commit({Changes::InvoiceWrite{invoice, 0}, {}}));
        }
        std::int64_t root = 0;
        {
            sqlite3* db = nullptr;
            REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
            sqlite3_stmt* s = nullptr;
            sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_schema WHERE name = 'outbox_by_invoice'", -1, &s, nullptr);
            REQUIRE(sqlite3_step(s) == SQLITE_ROW);
            root = sqlite3_column_int64(s, 0);
            sqlite3_finalize(s);
            sqlite3_close(db);
        }
        {
            std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
            file.seekp((root - 1) * 4096);
            std::string const zeros(4096, '\0');
            file.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
        }
        WHEN("a store opens it") {
            auto store = SqliteStore::open({.path = path});
            std::string const refusal = store ? std::string() : store.error().detail;
            INFO(refusal);
            REQUIRE(store);
            auto const deadline = std::chrono::steady_clock::now() + 5s;
            while ((*store)->integrity() == infrastructure::IntegrityCheck::running && std::chrono::steady_clock::now() < deadline)
                std::this_thread::yield();
            THEN("once the check has read the file twice, a commit is refused with the check's verdict") {
                REQUIRE((*store)->integrity() == infrastructure::IntegrityCheck::damaged);
                Invoice const another = Invoice::from(Invoice::create(iid("inv_2"), usd(1000), "order 43", meta()).value());
                auto committed = (*store)->commit({Changes::InvoiceWrite{another, 0}, {}});
                REQUIRE_FALSE(committed);
                CHECK(committed.error().code == ErrorCode::storage_unavailable);
                CHECK(committed.error().detail.find("integrity check") != std::string::npos);
            }
        }
    }
}

SCENARIO("a file of the previous schema version is migrated forward and keeps its rows") {
    TempDir dir;
    std::string const path = dir.file("old.db");
    Invoice invoice = an_invoice();
    GIVEN("a file at schema version 1 holding an invoice") {
        run_sql_on_file(path, std::string(infrastructure::sqlite::migrations[0]) + "PRAGMA user_version=1;");
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        sqlite3_stmt* insert = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO invoices (id, status, version, body) VALUES (?, 0, 1, ?)", -1,
                                   &insert, nullptr) == SQLITE_OK);
        std::string const body = infrastructure::codec::encode(invoice);
        sqlite3_bind_text(insert, 1, "inv_1", -1, SQLITE_STATIC);
        sqlite3_bind_blob(insert, 2, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
        REQUIRE(sqlite3_step(insert) == SQLITE_DONE);
        sqlite3_finalize(insert);
        sqlite3_close(db);
        WHEN("this release opens it") {
            auto store = open_store(path);
            THEN("the invoice is there and the outbox works") {
                CHECK(store->invoice(invoice.id()) == invoice);
                Invoice processing = invoice;
                auto requested = processing.request_payment(attempt(1), "pm_card_ok", meta()).value();
                processing.apply(requested);
                Changes changes{Changes::InvoiceWrite{processing, invoice.version()}, {{Payment::from(requested), 0}}};
                changes.events.emplace_back(requested);
                REQUIRE(store->commit(changes));
                CHECK(store->history(invoice.id()).size() == 1);
            }
        }
    }
}

SCENARIO("group commit: concurrent committers share transactions, and each sees its own conflict") {
    TempDir dir;
    auto store = open_store(dir.file("payments.db"));
    constexpr int writers = 8;
    constexpr int rounds = 25;
    GIVEN("one invoice all writers race on, and one invoice each") {
        Invoice shared = invoice_numbered(0);
        REQUIRE(store->commit({Changes::InvoiceWrite{shared, 0}, {}}));
        WHEN("every writer commits its own invoice, and tries the shared one from the same read") {
            std::atomic<int> shared_wins{0}, shared_conflicts{0}, own_failures{0};
            std::vector<std::thread> threads;
            for (int w = 1; w <= writers; ++w)
                threads.emplace_back([&, w] {
                    for (int r = 0; r < rounds; ++r) {
                        if (!store->commit({Changes::InvoiceWrite{invoice_numbered(w * 1000 + r), 0}, {}}))
                            ++own_failures;
                    }
                    auto [processing, payment, event] = [&] {
                        Invoice mine = shared;
                        auto e = mine.request_payment(attempt(w), "pm_card_ok", meta()).value();
                        mine.apply(e);
                        return std::tuple{mine, Payment::from(e), e};
                    }();
                    auto result = store->commit({Changes::InvoiceWrite{processing, shared.version()}, {{payment, 0}}});
                    if (result) ++shared_wins;
                    else if (result.error().code == ErrorCode::conflict) ++shared_conflicts;
                });
            for (auto& t : threads) t.join();
            THEN("every writer's own commits succeed, exactly one wins the shared invoice, and batches formed") {
                CHECK(own_failures == 0);
                CHECK(shared_wins == 1);
                CHECK(shared_conflicts == writers - 1);
                CHECK(store->invoice_count() == 1 + writers * rounds);
                CHECK(store->payments_of(shared.id()).size() == 1);
                CHECK(store->commands() == 1 + writers * rounds + writers);
                CHECK(store->transactions() <= store->commands());
            }
        }
    }
}

// The review of issue 14, finding 11: the history's retention runs inside the
// writer's transaction, so it must not read the whole outbox.
SCENARIO("the retention of delivered events finds them by an index, not by reading the outbox") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    open_store(path).reset(); // created and migrated
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* plan = nullptr;
    REQUIRE(sqlite3_prepare_v2(db,
                               "EXPLAIN QUERY PLAN DELETE FROM outbox WHERE delivered = 1 AND occurred_at < 5 "
                               "AND seq < (SELECT max(seq) FROM outbox)",
                               -1, &plan, nullptr) == SQLITE_OK);
    std::string steps;
    while (sqlite3_step(plan) == SQLITE_ROW) steps += reinterpret_cast<char const*>(sqlite3_column_text(plan, 3));
    sqlite3_finalize(plan);
    sqlite3_close(db);
    INFO(steps);
    CHECK(steps.find("outbox_delivered_by_time") != std::string::npos);
}

// Review 22, G2: the outbox numbered its rows by a plain rowid, which SQLite
// gives as the largest one left plus one: once the retention's purge deleted
// the newest rows, an event this run committed was numbered at or below the
// start's bound, and the start published it a second time after its use case.
SCENARIO("an event committed after the retention purged the newest rows is numbered above the start's bound") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    SqliteStoreOptions options;
    options.event_retention = 1h; // the builders' events are older (t0() is 2026-01-01)
    auto commit_invoice = [](SqliteStore& store, int n, bool with_event) {
        auto const created = Invoice::create(iid("inv_" + std::to_string(n)), usd(100), "", meta()).value();
        Changes changes{Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
        if (with_event) changes.events.emplace_back(created);
        REQUIRE(store.commit(changes));
        return created.envelope.id;
    };
    GIVEN("an earlier run left its oldest event undelivered and its two newest delivered") {
        {
            auto store = open_store(path, options);
            EventId const first = commit_invoice(*store, 1, true);
            EventId const second = commit_invoice(*store, 2, true);
            EventId const third = commit_invoice(*store, 3, true);
            store->mark_delivered(second);
            store->mark_delivered(third);
            commit_invoice(*store, 4, false); // writes the marks
            REQUIRE(store->undelivered().size() == 1);
            REQUIRE(envelope_of(store->undelivered()[0]).id == first);
        }
        WHEN("the file is opened again, a write without events purges, and an event is committed") {
            auto store = open_store(path, options);
            auto const mark = store->start_mark().outbox;
            REQUIRE(mark == 3);
            commit_invoice(*store, 5, false);
            commit_invoice(*store, 6, true);
            THEN("the start's pass finds only the earlier run's event: the new one is its use case's to publish") {
                CHECK(store->undelivered_page({std::nullopt, mark}, 10).events.size() == 1);
                CHECK(store->undelivered().size() == 2);
            }
        }
    }
}

// The review of issue 14, finding 4: in WAL mode a COMMIT whose fsync failed
// has its frames in the WAL all the same, and a restart would replay them.
SCENARIO("a COMMIT whose fsync failed is answered storage_unavailable only once the file cannot keep it") {
    TempDir dir;
    auto& vfs = FaultyVfs::instance();
    std::string const path = dir.file("payments.db");
    auto store = open_store(path, {.vfs = FaultyVfs::name});
    REQUIRE(store->commit({Changes::InvoiceWrite{invoice_numbered(1), 0}, {}}));
    auto const copy_as_after_a_crash = [&](std::string const& name) {
        // The database and its WAL, not the shared-memory index: what a restart finds.
        std::filesystem::copy_file(path, dir.file(name));
        std::filesystem::copy_file(path + "-wal", dir.file(name + "-wal"));
        return dir.file(name);
    };
    GIVEN("a disk whose next fsync fails") {
        vfs.failing_syncs = 1;
        auto const refused = store->commit({Changes::InvoiceWrite{invoice_numbered(2), 0}, {}});
        vfs.failing_syncs = 0;
        THEN("the commit is refused, and a restart on the file as it is does not find it") {
            REQUIRE_FALSE(refused);
            CHECK(refused.error().code == ErrorCode::storage_unavailable);
            auto const copy = copy_as_after_a_crash("crashed.db");
            auto restarted = open_store(copy);
            CHECK(restarted->invoice(iid("inv_1")));
            CHECK_FALSE(restarted->invoice(iid("inv_2")));
        }
    }
    GIVEN("a disk whose fsyncs fail for a while") {
        vfs.failing_syncs = 3;
        auto const refused = store->commit({Changes::InvoiceWrite{invoice_numbered(2), 0}, {}});
        THEN("the commit is answered once the outcome is decided, and the store takes writes again") {
            REQUIRE_FALSE(refused);
            CHECK(refused.error().code == ErrorCode::storage_unavailable);
            CHECK(vfs.failing_syncs == 0);
            REQUIRE(store->commit({Changes::InvoiceWrite{invoice_numbered(3), 0}, {}}));
            auto restarted = open_store(copy_as_after_a_crash("later.db"));
            CHECK_FALSE(restarted->invoice(iid("inv_2")));
            CHECK(restarted->invoice(iid("inv_3")));
        }
    }
}

SCENARIO("an I/O error while the integrity check reads the file is not damage: writes go on") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    auto& vfs = FaultyVfs::instance();
    GIVEN("a file whose invoices fill pages past the schema's") {
        {
            auto store = open_store(path, {.fsync_every_commit = false}); // the setup need not wait for the disk
            for (int n = 1; n <= 300; ++n) REQUIRE(store->commit({Changes::InvoiceWrite{invoice_numbered(n), 0}, {}}));
        }
        std::int64_t last_root = 0;
        {
            sqlite3* db = nullptr;
            REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
            REQUIRE(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr) == SQLITE_OK);
            sqlite3_stmt* s = nullptr;
            sqlite3_prepare_v2(db, "SELECT max(rootpage) FROM sqlite_schema", -1, &s, nullptr);
            REQUIRE(sqlite3_step(s) == SQLITE_ROW);
            last_root = sqlite3_column_int64(s, 0);
            sqlite3_finalize(s);
            sqlite3_close(db);
        }
        REQUIRE(std::filesystem::file_size(path) > static_cast<std::uintmax_t>(last_root) * 4096);
        WHEN("a store opens it while the pages past the schema's cannot be read (a transient I/O error)") {
            vfs.failing_reads_from = last_root * 4096;
            auto store = SqliteStore::open({.path = path, .vfs = FaultyVfs::name});
            std::string const refusal = store ? std::string() : store.error().detail;
            INFO(refusal);
            REQUIRE(store);
            auto const deadline = std::chrono::steady_clock::now() + 5s;
            while ((*store)->storage_errors() == 0 && std::chrono::steady_clock::now() < deadline)
                std::this_thread::yield();
            vfs.failing_reads_from = -1;
            REQUIRE((*store)->storage_errors() > 0);
            while ((*store)->integrity() == infrastructure::IntegrityCheck::running && std::chrono::steady_clock::now() < deadline)
                std::this_thread::yield();
            THEN("the check, run again once the disk reads, passes, and a commit is kept") {
                CHECK((*store)->integrity() == infrastructure::IntegrityCheck::passed);
                auto const committed = (*store)->commit({Changes::InvoiceWrite{invoice_numbered(301), 0}, {}});
                CHECK_MESSAGE(committed, (committed ? std::string() : committed.error().detail));
            }
        }
        vfs.failing_reads_from = -1;
    }
}

SCENARIO("a write the disk refuses answers storage_unavailable, keeps nothing, and service resumes") {
    TempDir dir;
    auto& vfs = FaultyVfs::instance();
    std::string const path = dir.file("payments.db");
    auto store = open_store(path, {.vfs = FaultyVfs::name});
    REQUIRE(store->commit({Changes::InvoiceWrite{invoice_numbered(1), 0}, {}}));
    GIVEN("a disk that fails every write, with an I/O error and then as full") {
        std::vector<Result<void>> refused;
        for (int error : {SQLITE_IOERR_WRITE, SQLITE_FULL}) {
            vfs.error = error;
            vfs.failing = true;
            refused.push_back(store->commit({Changes::InvoiceWrite{invoice_numbered(2), 0}, {}}));
            vfs.failing = false;
        }
        THEN("each commit is refused as storage_unavailable") {
            for (auto const& result : refused) {
                REQUIRE_FALSE(result);
                CHECK(result.error().code == ErrorCode::storage_unavailable);
            }
            CHECK(store->storage_errors() >= 2);
        }
        WHEN("the disk works again") {
            auto resumed = store->commit({Changes::InvoiceWrite{invoice_numbered(3), 0}, {}});
            THEN("commits succeed, and only the acknowledged ones are in the file") {
                REQUIRE(resumed);
                store.reset();
                auto reopened = open_store(path);
                CHECK(reopened->invoice(iid("inv_1")));
                CHECK_FALSE(reopened->invoice(iid("inv_2")));
                CHECK(reopened->invoice(iid("inv_3")));
            }
        }
    }
}

namespace {

std::unique_ptr<Engine> an_engine_on(std::shared_ptr<SqliteStore> store, EngineOptions options = {}) {
    options.log_output = nullptr;
    options.threads = 2;
    return Engine::builder(options).store(store).idempotency_store(store).build().value();
}

// Waits (with a deadline) until the invoice has the status.
bool reaches(Engine& engine, InvoiceId const& id, InvoiceStatus status) {
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        engine.wait_idle(100ms);
        if (engine.service().invoice(id).value().status() == status) return true;
    }
    return false;
}

} // namespace

SCENARIO("after a crash the outbox is published again and the attempt is charged once") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    Invoice invoice = an_invoice();
    GIVEN("a file where a payment was requested and its event never delivered (the process died)") {
        {
            auto store = open_store(path);
            REQUIRE(store->commit({Changes::InvoiceWrite{invoice, 0}, {}}));
            Invoice processing = invoice;
            // Made just now: a key older than the provider keeps keys would not be sent again.
            auto requested =
                processing.request_payment(attempt(1), "pm_card_ok", meta(infrastructure::SystemClock{}.now())).value();
            processing.apply(requested);
            Changes changes{Changes::InvoiceWrite{processing, invoice.version()}, {{Payment::from(requested), 0}}};
            changes.events.emplace_back(requested);
            REQUIRE(store->commit(changes));
        }
        WHEN("an engine starts on it") {
            auto engine = an_engine_on(open_store(path));
            THEN("the event is published again, the attempt re-driven on its key, and the invoice PAID by one charge") {
                CHECK(engine->recovery().republished == 1);
                // Recovery finds it too, unless the republished event was already
                // handling it: either way it is sent once more on its own key.
                CHECK(engine->recovery().redriven <= 1);
                REQUIRE(reaches(*engine, invoice.id(), InvoiceStatus::paid));
                CHECK(engine->simulated_gateway()->charges_for(invoice.id()) == 1);
                // Requested (committed before the crash), succeeded, paid.
                CHECK(engine->service().history(invoice.id()).value().size() == 3);
            }
        }
    }
}

namespace {

// A provider whose ledger already holds every key it is asked about: the
// charge went through before the process died. Counts what it is asked.
class ProviderThatBooked final : public application::PaymentGateway {
public:
    void charge(application::ChargeRequest request, std::function<void(application::ChargeAnswer)> on_answer) override {
        ++charges;
        on_answer(application::ChargeAnswer::success("ch_" + request.idempotency_key, request.amount));
    }
    void lookup(std::string key, std::function<void(application::ChargeStatus)> on_answer) override {
        ++lookups;
        on_answer(application::ChargeStatus::booked("ch_" + key, usd(1000)));
    }
    std::atomic<int> charges{0};
    std::atomic<int> lookups{0};
};

} // namespace

SCENARIO("after a crash an attempt left REQUESTED is looked up on its key before anything is sent") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    Invoice invoice = an_invoice();
    GIVEN("a file where a payment was requested, and a provider that charged its key before the process died") {
        {
            auto store = open_store(path);
            REQUIRE(store->commit({Changes::InvoiceWrite{invoice, 0}, {}}));
            Invoice processing = invoice;
            // Made just now: a key older than the provider keeps keys would not be sent again.
            auto requested =
                processing.request_payment(attempt(1), "pm_card_ok", meta(infrastructure::SystemClock{}.now())).value();
            processing.apply(requested);
            Changes changes{Changes::InvoiceWrite{processing, invoice.version()}, {{Payment::from(requested), 0}}};
            changes.events.emplace_back(requested);
            REQUIRE(store->commit(changes));
        }
        auto provider = std::make_shared<ProviderThatBooked>();
        WHEN("an engine starts on it") {
            std::shared_ptr<SqliteStore> store = open_store(path);
            EngineOptions options;
            options.log_output = nullptr;
            options.threads = 2;
            auto engine = Engine::builder(options).store(store).idempotency_store(store).gateway("a", provider).build().value();
            THEN("the look-up settles it PAID and no charge is sent again") {
                REQUIRE(reaches(*engine, invoice.id(), InvoiceStatus::paid));
                CHECK(provider->lookups >= 1);
                CHECK(provider->charges == 0);
            }
        }
    }
}

SCENARIO("an event delivered twice is handled once: the handlers are idempotent") {
    TempDir dir;
    auto engine = an_engine_on(open_store(dir.file("payments.db")));
    GIVEN("an invoice paid") {
        auto invoice = engine->service().create_invoice({.amount = usd(1999)}).value();
        REQUIRE(engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_ok"}).result);
        REQUIRE(reaches(*engine, invoice.id(), InvoiceStatus::paid));
        WHEN("every event of its history is delivered again") {
            for (auto const& event : engine->service().history(invoice.id()).value()) engine->bus().publish(event);
            REQUIRE(engine->wait_idle(10s));
            THEN("nothing is charged again and nothing changes") {
                CHECK(engine->simulated_gateway()->charges_for(invoice.id()) == 1);
                CHECK(engine->service().invoice(invoice.id()).value().status() == InvoiceStatus::paid);
                CHECK(engine->service().payments_of(invoice.id()).value().size() == 1);
            }
        }
    }
}

SCENARIO("a retry scheduled before a restart is re-armed after it") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    InvoiceId id;
    GIVEN("an engine that scheduled a retry and stopped before it was due") {
        {
            EngineOptions options;
            options.processor.retry = {.base = 200ms, .cap = 200ms};
            options.log_output = nullptr;
            options.threads = 2;
            auto store = std::shared_ptr<SqliteStore>(open_store(path));
            // A clock that stands still: the retry cannot fall due before this engine stops (on a loaded
            // machine under TSan, 200 ms passed between the check below and the stop, and it fired here).
            auto const frozen = std::make_shared<infrastructure::ManualClock>(infrastructure::SystemClock{}.now());
            auto engine = Engine::builder(options).store(store).idempotency_store(store).clock(frozen).build().value();
            auto invoice = engine->service().create_invoice({.amount = usd(500)}).value();
            id = invoice.id();
            engine->service().request_payment({.invoice_id = id, .payment_method = "pm_card_flaky_1"});
            auto const deadline = std::chrono::steady_clock::now() + 10s;
            while (store->scheduled().empty() && std::chrono::steady_clock::now() < deadline) engine->wait_idle(10ms);
            REQUIRE(store->scheduled().size() == 1);
            engine->shutdown(0s);
        }
        WHEN("an engine starts on the file again") {
            auto engine = an_engine_on(open_store(path));
            THEN("the retry is re-armed and the invoice ends PAID") {
                CHECK(engine->recovery().rearmed == 1);
                REQUIRE(reaches(*engine, id, InvoiceStatus::paid));
            }
        }
    }
}

SCENARIO("a fixed seed repeats ids only on the in-memory store: two runs with one seed on one durable file do not collide") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    EngineOptions options;
    options.seed = 7;
    GIVEN("an engine with --seed 7 on a SQLite file that made an invoice and stopped") {
        InvoiceId first = an_engine_on(open_store(path), options)->service().create_invoice({.amount = usd(500)}).value().id();
        WHEN("a second run with the same seed makes one on the same file") {
            auto created = an_engine_on(open_store(path), options)->service().create_invoice({.amount = usd(500)});
            THEN("it is made, under another id") {
                REQUIRE_MESSAGE(created, (created ? "" : created.error().detail));
                CHECK(created->id() != first);
            }
        }
    }
    GIVEN("two engines with the same seed on the in-memory store") {
        options.log_output = nullptr;
        auto a = Engine::create(options).value();
        auto b = Engine::create(options).value();
        THEN("they make the same ids: the seed's run is reproducible") {
            CHECK(a->service().create_invoice({.amount = usd(500)}).value().id() ==
                  b->service().create_invoice({.amount = usd(500)}).value().id());
        }
    }
}

// Review 14, finding 9: an event the bus refused (it is stopping) stayed in
// the store's memory for ever, waiting for a delivery that never comes.
SCENARIO("review14 #9: an event the bus refuses is left to the next start, and the store forgets it") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    std::shared_ptr<SqliteStore> store = open_store(path);
    GIVEN("a service whose bus has stopped") {
        World world({.store = store.get(), .idempotency = store.get()});
        world.bus.stop();
        WHEN("an invoice is created (its InvoiceCreated committed, and refused by the bus)") {
            auto created = world.service.create_invoice({.amount = usd(500)});
            REQUIRE(created);
            THEN("the store keeps nothing for it in memory, and it is still undelivered in the file") {
                CHECK(store->awaiting_delivery() == 0);
                CHECK(store->undelivered().size() == 1);
            }
        }
    }
}

// Review 14, finding 10: claim() held the claims' mutex across its read of
// the idempotency table, so every other claim, completion and release (and
// every commit that completes a record) waited for one read.
SCENARIO("review14 #10: a claim's read of the file holds up no other claim") {
    TempDir dir;
    auto& vfs = FaultyVfs::instance();
    auto store = open_store(dir.file("payments.db"), {.vfs = FaultyVfs::name});
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (store->integrity() == infrastructure::IntegrityCheck::running && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    auto const key = IdempotencyKey::make("client", "key-1").value();
    auto const other = IdempotencyKey::make("client", "key-2").value();
    REQUIRE(store->claim(other, "fingerprint", t0()).state == IdempotencyClaim::State::claimed);
    REQUIRE(store->commit({Changes::InvoiceWrite{an_invoice(), 0}, {}})); // the readers' caches are stale now
    GIVEN("a claim whose read of the file is held up by a slow disk") {
        vfs.hold_reads();
        struct LetGo {
            FaultyVfs& vfs;
            ~LetGo() { vfs.let_reads_go(); }
        } let_go{vfs}; // whatever fails below, the store can close
        auto slow = std::async(std::launch::async, [&] { return store->claim(key, "fingerprint", t0()).state; });
        REQUIRE(vfs.wait_for_held_read(5s));
        WHEN("another request gives up its claim meanwhile") {
            auto released = std::async(std::launch::async, [&] { store->release(other); });
            THEN("it does not wait for the read") {
                bool const at_once = released.wait_for(2s) == std::future_status::ready;
                vfs.let_reads_go();
                CHECK(at_once);
                CHECK(slow.get() == IdempotencyClaim::State::claimed);
                CHECK(store->claim(key, "fingerprint", t0()).state == IdempotencyClaim::State::in_use);
            }
        }
    }
}

// Review 18, B-5: release() ended a claim without end_claim(), so a claim
// whose read began before the request's commit saw no record, no request
// ended, and claimed the key: the repeat ran again instead of replaying.
SCENARIO("review18 B-5: a claim read before a released request's commit replays it") {
    TempDir dir;
    auto& vfs = FaultyVfs::instance();
    auto store = open_store(dir.file("payments.db"), {.vfs = FaultyVfs::name});
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (store->integrity() == infrastructure::IntegrityCheck::running && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    auto const key = IdempotencyKey::make("client", "key-1").value();
    // A reader that has its statement prepared (its schema read): the repeat's
    // claim takes it, and holds only once its read transaction has begun.
    REQUIRE(store->claim(IdempotencyKey::make("client", "warm").value(), "fingerprint", t0()).state ==
            IdempotencyClaim::State::claimed);
    Invoice invoice = an_invoice();
    REQUIRE(store->commit({Changes::InvoiceWrite{invoice, 0}, {}})); // the readers' caches are stale now
    GIVEN("a repeat's claim whose read of the file is held up by a slow disk") {
        struct LetGo {
            FaultyVfs& vfs;
            ~LetGo() { vfs.let_reads_go(); }
        } let_go{vfs}; // whatever fails below, the store can close
        auto repeat = std::async(std::launch::async, [&] {
            vfs.hold_my_reads();
            return store->claim(key, "fingerprint", t0()).state;
        });
        REQUIRE(vfs.wait_for_held_read(5s));
        WHEN("the first request claims the key, commits its payment with the record, and then gives up its claim "
             "(something threw after the commit)") {
            REQUIRE(store->claim(key, "fingerprint", t0()).state == IdempotencyClaim::State::claimed);
            auto requested = invoice.request_payment(attempt(1), "pm_card_ok", meta()).value();
            Invoice processing = invoice;
            processing.apply(requested);
            Payment const payment = Payment::from(requested);
            Changes changes{Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}};
            changes.idempotency = application::IdempotencyCompletion{key, payment, t0()};
            REQUIRE(store->commit(changes));
            store->release(key);
            vfs.let_reads_go();
            THEN("the repeat reads again and replays the payment") {
                CHECK(repeat.get() == IdempotencyClaim::State::replay);
            }
        }
    }
}

// Review 16, B4: while a commit whose fsync failed waits for its seal, every
// write is refused; readiness said nothing of it.
SCENARIO("review16 B4: while a failed commit waits for its seal the store says it is not writable") {
    TempDir dir;
    auto& vfs = FaultyVfs::instance();
    std::shared_ptr<SqliteStore> store = open_store(dir.file("payments.db"), {.vfs = FaultyVfs::name});
    auto engine = an_engine_on(store);
    REQUIRE(engine->store_writable());
    GIVEN("a disk whose fsyncs keep failing, and a commit") {
        vfs.failing_syncs = 1'000'000;
        struct Heal {
            FaultyVfs& vfs;
            ~Heal() { vfs.failing_syncs = 0; }
        } heal{vfs}; // whatever fails below, the store can seal and close
        auto refused = std::async(std::launch::async,
                                  [&] { return store->commit({Changes::InvoiceWrite{invoice_numbered(2), 0}, {}}); });
        auto const deadline = std::chrono::steady_clock::now() + 5s;
        while (!store->sealing() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
        THEN("the store is sealing and not writable; once the disk heals the commit is refused and writes resume") {
            CHECK(store->sealing());
            CHECK_FALSE(engine->store_writable());
            vfs.failing_syncs = 0;
            auto const answer = refused.get();
            REQUIRE_FALSE(answer);
            CHECK(answer.error().code == ErrorCode::storage_unavailable);
            CHECK_FALSE(store->sealing());
            CHECK(engine->store_writable());
        }
    }
}

// Review 21, F7: rows written before schema 4 kept review_of '' until their
// next write, so a janitor's round read every parked UNKNOWN attempt.
SCENARIO("review21 F7: an invoice in review written before its column existed names its attempt once reopened") {
    TempDir dir;
    std::string const path = dir.file("payments.db");
    GIVEN("a NEEDS_REVIEW invoice whose UNKNOWN attempt is under review, its row from before the column") {
        {
            auto store = open_store(path);
            auto created = Invoice::create(iid("inv_review"), usd(700), "", meta()).value();
            Invoice invoice = Invoice::from(created);
            REQUIRE(store->commit({Changes::InvoiceWrite{invoice, 0}, {}}));
            Invoice parked = invoice;
            auto requested = parked.request_payment(attempt(1), "pm_card_ok", meta()).value();
            parked.apply(requested);
            Payment payment = Payment::from(requested);
            payment.apply(payment.fail({FailureKind::unknown_outcome, "timeout"}, meta()).value());
            parked.apply(parked.require_review(parked.attempts().back(), "checks", meta()).value());
            REQUIRE(store->commit({Changes::InvoiceWrite{parked, invoice.version()}, {{payment, 0}}}));
            REQUIRE(store->open_attempts({}, 10).data.empty());
        }
        run_sql_on_file(path, "UPDATE invoices SET review_of = ''");
        WHEN("the file is opened again") {
            auto store = open_store(path);
            THEN("a janitor's round finds nothing to act on") { CHECK(store->open_attempts({}, 10).data.empty()); }
        }
    }
}

// Review 21, F2: schema 5 numbers the scheduled rows, in a copy of the table.
SCENARIO("a file of schema version 4 keeps its scheduled events when its table is numbered") {
    TempDir dir;
    std::string const path = dir.file("v4.db");
    GIVEN("a file at schema version 4 holding two retries") {
        std::string sql;
        for (std::size_t v = 0; v < 4; ++v) sql += infrastructure::sqlite::migrations[v];
        run_sql_on_file(path, sql + "PRAGMA user_version=4;");
        auto const created = Invoice::create(iid("inv_1"), usd(700), "", meta()).value();
        std::vector<InvoiceCreated> retries(2, created);
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        for (std::size_t i = 0; i < retries.size(); ++i) {
            retries[i].envelope.id = meta().id;
            sqlite3_stmt* insert = nullptr;
            REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO scheduled (event_id, due, body) VALUES (?, ?, ?)", -1, &insert,
                                       nullptr) == SQLITE_OK);
            std::string const id(retries[i].envelope.id.str());
            std::string const body = infrastructure::codec::encode(Event(retries[i]));
            sqlite3_bind_text(insert, 1, id.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(insert, 2, (t0() + std::chrono::minutes(2 - i)).time_since_epoch().count());
            sqlite3_bind_blob(insert, 3, body.data(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
            REQUIRE(sqlite3_step(insert) == SQLITE_DONE);
            sqlite3_finalize(insert);
        }
        sqlite3_close(db);
        WHEN("this release opens it") {
            auto store = open_store(path);
            THEN("both retries are there in order of their time, and the start's pass ends after them") {
                auto const scheduled = store->scheduled();
                REQUIRE(scheduled.size() == 2);
                CHECK(envelope_of(scheduled[0].event).id == retries[1].envelope.id);
                CHECK(envelope_of(scheduled[1].event).id == retries[0].envelope.id);
                CHECK(store->start_mark().scheduled == 2u);
            }
            THEN("a retry committed afterwards is numbered 3, after the copied rows (review 22, G6)") {
                auto const later = Invoice::create(iid("inv_2"), usd(700), "", meta()).value();
                InvoiceCreated retry = later;
                retry.envelope.id = meta().id;
                Changes changes{Changes::InvoiceWrite{Invoice::from(later), 0}, {}};
                changes.scheduled.push_back({retry, t0() + 3min});
                REQUIRE(store->commit(changes));
                CHECK(store->scheduled_page({{}, 2}, 10).events.size() == 2);
                CHECK(store->scheduled_page({{}, 3}, 10).events.size() == 3);
            }
        }
    }
}

// Review 21, F6: the start's pass took its end at its first page that read;
// when the first read failed, what this run committed meanwhile (and its use
// case published) was published a second time.
SCENARIO("review21 F6: a start whose first read fails does not publish again what this run committed meanwhile") {
    TempDir dir;
    auto& vfs = FaultyVfs::instance();
    std::shared_ptr<SqliteStore> store = open_store(dir.file("payments.db"), {.vfs = FaultyVfs::name});
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (store->integrity() == infrastructure::IntegrityCheck::running && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    World world({.store = store.get(), .idempotency = store.get()});
    application::OutboxRelay relay(*store, world.bus);
    GIVEN("a process whose store cannot be read when it starts") {
        vfs.failing_reads = true;
        CHECK_THROWS_AS(relay.restart(), application::StorageFailure);
        vfs.failing_reads = false;
        WHEN("an invoice is created (its use case publishes its event), then the start reads again") {
            world.create();
            relay.watch(world.scheduler, world.clock, 1h);
            for (int i = 0; i < 100 && relay.restarting(); ++i) {
                world.settle();
                world.clock.advance(100ms);
            }
            world.settle();
            THEN("the start is over, and the event reached its subscribers once") {
                CHECK_FALSE(relay.restarting());
                CHECK(world.events_of<InvoiceCreated>().size() == 1);
            }
        }
        relay.stop();
    }
}
