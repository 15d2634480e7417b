// Figure 5: durability. The disk's fsync floor and SQLite's one-fsync-per-
// commit baseline, then the whole payment flow on the SQLite store
// (synchronous=FULL, every step durable) with group commit on and off.
#include "figures.hpp"
#include "instant_gateway.hpp"
#include "report.hpp"

#include <payments/engine.hpp>
#include <payments/infrastructure/store/sqlite_store.hpp>

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include <fcntl.h>

namespace bench {

using namespace payments;
using namespace payments::domain;

namespace {

// Never answers: the attempts it is given stay REQUESTED, as a crash leaves them.
class SilentGateway final : public application::PaymentGateway {
public:
    void charge(application::ChargeRequest, std::function<void(application::ChargeAnswer)>) override {}
    void lookup(std::string, std::function<void(application::ChargeStatus)>) override {}
};

// A directory beside the build, on the disk the server would use.
struct ScratchDir {
    std::filesystem::path path;
    ScratchDir() {
        std::string pattern = (std::filesystem::current_path() / "bench-durable-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path = pattern;
    }
    ~ScratchDir() { std::filesystem::remove_all(path); }
};

// 512-byte writes, each followed by fdatasync: the most commits a disk allows one at a time.
double fsyncs_per_second(std::size_t count) {
    ScratchDir dir;
    int const fd = ::open((dir.path / "floor").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    char block[512] = {};
    auto const ns = median_ns(1, [&] {
        for (std::size_t i = 0; i < count; ++i)
            if (::write(fd, block, sizeof block) != sizeof block || ::fdatasync(fd) != 0) throw std::runtime_error("fsync");
    });
    ::close(fd);
    return 1e9 / per(ns, count);
}

// SQLite, WAL, synchronous=FULL, one single-row INSERT per transaction.
double sqlite_commits_per_second(std::size_t count) {
    ScratchDir dir;
    sqlite3* db = nullptr;
    sqlite3_open((dir.path / "baseline.db").c_str(), &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)",
                 nullptr, nullptr, nullptr);
    sqlite3_stmt* insert = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO t (v) VALUES (zeroblob(200))", -1, &insert, nullptr);
    auto const ns = median_ns(1, [&] {
        for (std::size_t i = 0; i < count; ++i) {
            sqlite3_step(insert);
            sqlite3_reset(insert);
        }
    });
    sqlite3_finalize(insert);
    sqlite3_close(db);
    return 1e9 / per(ns, count);
}

// `in_flight` chains of flows through the asynchronous commands, as a server
// answering from the commits' continuations runs them: each creates an
// invoice, pays it once the creation is durable, and starts its next flow once
// the payment is; no thread waits for a commit. Returns once all are requested.
class AsyncClients {
public:
    AsyncClients(Engine& engine, std::size_t count, unsigned in_flight)
        : engine_(engine), count_(count), chains_(in_flight) {}

    void run() {
        for (unsigned c = 0; c < chains_; ++c) next_flow();
        std::unique_lock lock(mutex_);
        ended_cv_.wait(lock, [&] { return ended_ == chains_; });
        if (failed_) throw std::runtime_error("an asynchronous command failed");
    }

private:
    void next_flow() {
        std::size_t const n = next_++;
        if (n >= count_) return end_chain();
        engine_.service().create_invoice_async({.amount = amount_}, [this, n](Result<Invoice> invoice) {
            if (!invoice) return fail();
            auto key = application::IdempotencyKey::make("", "key-" + std::to_string(n)).value();
            engine_.service().request_payment_async(
                {.invoice_id = invoice->id(), .payment_method = "pm_card_ok", .idempotency_key = std::move(key)},
                [this](application::PaymentRequestReply reply) {
                    if (!reply.result) return fail();
                    next_flow();
                });
        });
    }
    void fail() {
        failed_ = true;
        end_chain();
    }
    void end_chain() {
        std::lock_guard lock(mutex_);
        if (++ended_ == chains_) ended_cv_.notify_one();
    }

    Engine& engine_;
    std::size_t const count_;
    unsigned const chains_;
    Money const amount_ = Money::positive(1999, Currency::usd()).value();
    std::atomic<std::size_t> next_{0};
    std::atomic<bool> failed_{false};
    std::mutex mutex_;
    std::condition_variable ended_cv_;
    unsigned ended_ = 0; // Owned by: mutex_
};

// Flows per second on the SQLite store: `clients` threads each create and pay
// invoices (0: 256 asynchronous chains instead, AsyncClients); the engine
// charges through the instant gateway until all are PAID.
double durable_flows_per_second(std::size_t count, bool group_commit, unsigned clients) {
    ScratchDir dir;
    infrastructure::SqliteStoreOptions options{.path = (dir.path / "payments.db").string(), .group_commit = group_commit};
    std::shared_ptr<infrastructure::SqliteStore> store = infrastructure::SqliteStore::open(options).value();
    EngineOptions engine_options;
    engine_options.log_output = nullptr;
    // Settlements commit asynchronously (Store::commit_async): no engine
    // thread waits for an fsync, so a few of them suffice; the clients'
    // threads, which wait for theirs, fill the batches.
    engine_options.threads = 4;
    auto engine = Engine::builder(engine_options)
                      .store(store)
                      .idempotency_store(store)
                      .gateway("instant", std::make_shared<InstantGateway>())
                      .build()
                      .value();
    Money const amount = Money::positive(1999, Currency::usd()).value();
    std::atomic<std::size_t> next{0};
    auto const ns = median_ns(1, [&] {
        if (clients == 0) AsyncClients(*engine, count, 256).run();
        std::vector<std::thread> threads;
        for (unsigned c = 0; c < clients; ++c)
            threads.emplace_back([&] {
                for (std::size_t n = next++; n < count; n = next++) {
                    auto invoice = engine->service().create_invoice({.amount = amount});
                    if (!invoice) throw std::runtime_error("create_invoice failed");
                    auto key = application::IdempotencyKey::make("", "key-" + std::to_string(n)).value();
                    if (!engine->service()
                             .request_payment({.invoice_id = invoice->id(), .payment_method = "pm_card_ok",
                                               .idempotency_key = std::move(key)})
                             .result)
                        throw std::runtime_error("request_payment failed");
                }
            });
        for (auto& t : threads) t.join();
        if (!engine->wait_settled(std::chrono::minutes(5))) throw std::runtime_error("flows did not settle");
    });
    engine->shutdown(std::chrono::seconds(5));
    print({std::string("commands per transaction, group commit ") + (group_commit ? "on" : "off") +
               (clients == 0 ? ", asynchronous commands" : ""),
           static_cast<double>(store->commands()) / static_cast<double>(std::max<std::uint64_t>(1, store->transactions())),
           0, "", Goal::at_least, 1});
    return 1e9 / per(ns, count);
}

// An engine on `store` with one gateway, `threads` of its own.
std::unique_ptr<Engine> engine_on(std::shared_ptr<infrastructure::SqliteStore> const& store,
                                  std::shared_ptr<application::PaymentGateway> gateway, unsigned threads,
                                  Duration gateway_timeout = std::chrono::seconds(10)) {
    EngineOptions engine_options;
    engine_options.log_output = nullptr;
    engine_options.threads = threads;
    engine_options.processor.gateway_timeout = gateway_timeout;
    return Engine::builder(engine_options)
        .store(store)
        .idempotency_store(store)
        .gateway("instant", std::move(gateway))
        .build()
        .value();
}

// `count` invoices created (and, with `pay`, paid) by `clients` threads.
void fill(Engine& engine, std::size_t count, bool pay, unsigned clients) {
    Money const amount = Money::positive(1999, Currency::usd()).value();
    std::atomic<std::size_t> next{0};
    std::vector<std::thread> threads;
    for (unsigned c = 0; c < clients; ++c)
        threads.emplace_back([&] {
            for (std::size_t n = next++; n < count; n = next++) {
                auto invoice = engine.service().create_invoice({.amount = amount});
                if (!invoice) throw std::runtime_error("create_invoice failed");
                if (!pay) continue;
                auto key = application::IdempotencyKey::make("", "key-" + std::to_string(n)).value();
                if (!engine.service()
                         .request_payment({.invoice_id = invoice->id(), .payment_method = "pm_card_ok",
                                           .idempotency_key = std::move(key)})
                         .result)
                    throw std::runtime_error("request_payment failed");
            }
        });
    for (auto& t : threads) t.join();
}

} // namespace

// Bounded memory and start-up: the resident set after `stored` invoices were
// created through the engine on one store; the time from opening that file
// to a built engine (what /health/ready waits for); and the time to settle
// `unsettled` attempts that an earlier run left REQUESTED.
void figure_durable_scale(Options const& options) {
    std::size_t const stored = options.quick ? 20'000 : 1'000'000;
    std::size_t const unsettled = options.quick ? 1'000 : 10'000;
    ScratchDir dir;
    // Filling without an fsync per transaction: the figure is memory, not speed.
    infrastructure::SqliteStoreOptions fast{.path = (dir.path / "payments.db").string(), .fsync_every_commit = false};
    {
        std::shared_ptr<infrastructure::SqliteStore> store = infrastructure::SqliteStore::open(fast).value();
        auto engine = engine_on(store, std::make_shared<InstantGateway>(), 16);
        fill(*engine, stored, false, 64);
        engine->wait_settled(std::chrono::minutes(1));
        print({"resident after " + std::to_string(stored / 1000) + "k stored invoices",
               static_cast<double>(resident_bytes()) / (1024.0 * 1024.0), 0, "MB", Goal::at_most, 256});
        engine->shutdown(std::chrono::seconds(5));
    }
    infrastructure::SqliteStoreOptions full{.path = fast.path};
    {
        auto const start = std::chrono::steady_clock::now();
        std::shared_ptr<infrastructure::SqliteStore> store = infrastructure::SqliteStore::open(full).value();
        auto engine = engine_on(store, std::make_shared<InstantGateway>(), 16);
        double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        print({"start-up with " + std::to_string(stored / 1000) + "k invoices, to ready", seconds, 0, "s",
               Goal::at_most, 2});
        engine->shutdown(std::chrono::seconds(5));
        // An earlier run that crashed with attempts at the gateway.
        // (No charge times out before the "crash": they all stay REQUESTED.)
        auto silent = engine_on(store, std::make_shared<SilentGateway>(), 16, std::chrono::hours(1));
        fill(*silent, unsettled, true, 64);
        silent->shutdown(std::chrono::milliseconds(100));
    }
    {
        auto const start = std::chrono::steady_clock::now();
        std::shared_ptr<infrastructure::SqliteStore> store = infrastructure::SqliteStore::open(full).value();
        auto engine = engine_on(store, std::make_shared<InstantGateway>(), 64);
        // Polled with one indexed row: wait_settled() would count every
        // unsettled attempt at each settlement, 10,000 of them at first.
        application::InvoiceQuery const processing{.status = InvoiceStatus::processing, .limit = 1};
        auto const deadline = start + std::chrono::minutes(1);
        while (!store->invoices(processing).data.empty()) {
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("recovered attempts did not settle");
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        print({std::to_string(unsettled / 1000) + "k unsettled attempts recovered (" +
                   std::to_string(engine->recovery().redriven) + " re-driven)",
               seconds, 0, "s", Goal::at_most, 5});
        engine->shutdown(std::chrono::seconds(5));
    }
}

void figure_durable(Options const& options) {
    std::size_t const fsyncs = options.quick ? 200 : 2'000;
    double const floor = fsyncs_per_second(fsyncs);
    print({"disk: 512-byte write + fdatasync", floor, 0, "/s", Goal::at_least, 0});
    double const baseline = sqlite_commits_per_second(fsyncs);
    print({"SQLite WAL FULL: 1-row commits", baseline, 0, "/s", Goal::at_least, 0});
    std::size_t const grouped = options.quick ? 2'000 : 20'000;
    std::size_t const single = options.quick ? 200 : 2'000;
    double const on = durable_flows_per_second(grouped, true, 256);
    double const off = durable_flows_per_second(single, false, 256);
    // The same flows through the asynchronous commands, as the server runs them.
    double const async = durable_flows_per_second(grouped, true, 0);
    print({"durable flows/s, group commit", on, 0, "flows/s", Goal::at_least, 30'000});
    print({"durable flows/s, group commit vs off", on, off, "flows/s", Goal::at_least, 10});
    print({"durable flows/s, asynchronous commands", async, 0, "flows/s", Goal::at_least, 30'000});
    print({"asynchronous vs 256 client threads", async, on, "flows/s", Goal::at_least, 1});
}

} // namespace bench
