#include "support/builders.hpp"

#include <payments/infrastructure/bus/asio_scheduler.hpp>
#include <payments/infrastructure/system/clocks.hpp>
#include <payments/infrastructure/bus/manual_scheduler.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>

using namespace test;
using infrastructure::ManualClock;

SCENARIO("the manual scheduler runs calls in time order, only when due") {
    ManualClock clock;
    infrastructure::ManualScheduler scheduler(clock);
    std::vector<int> ran;
    scheduler.call_at(t0() + 2s, [&] { ran.push_back(3); });
    scheduler.call_at(t0() + 1s, [&] { ran.push_back(1); });
    scheduler.call_at(t0() + 1s, [&] { ran.push_back(2); });
    auto cancelled = scheduler.call_at(t0() + 1s, [&] { ran.push_back(99); });
    CHECK(scheduler.cancel(cancelled));
    CHECK_FALSE(scheduler.cancel(cancelled));
    CHECK(scheduler.run_due() == 0);
    clock.advance(1s);
    CHECK(scheduler.run_due() == 2);
    CHECK(ran == std::vector<int>{1, 2});
    CHECK(scheduler.advance_to_next());
    CHECK(clock.now() == t0() + 2s);
    CHECK(ran == std::vector<int>{1, 2, 3});
    CHECK_FALSE(scheduler.advance_to_next());
}

SCENARIO("a call scheduled for now by a running call runs in the same pass") {
    ManualClock clock;
    infrastructure::ManualScheduler scheduler(clock);
    int chain = 0;
    scheduler.call_at(t0(), [&] {
        ++chain;
        scheduler.call_at(clock.now(), [&] { ++chain; });
    });
    CHECK(scheduler.run_due() == 2);
    CHECK(chain == 2);
}

SCENARIO("the manual clock never goes backwards") {
    ManualClock clock;
    clock.advance_to(t0() - 1s);
    CHECK(clock.now() == t0());
    clock.advance(-5s);
    CHECK(clock.now() == t0());
    clock.advance_to(t0() + 3s);
    CHECK(clock.now() == t0() + 3s);
}

SCENARIO("the Asio scheduler fires due calls through one timer and drops the rest on shutdown") {
    boost::asio::io_context io;
    ManualClock clock; // only "now" matters: due calls expire at once, later ones never do here
    infrastructure::AsioScheduler scheduler(io.get_executor(), clock);
    std::vector<int> ran;
    scheduler.call_at(t0() + 1h, [&] { ran.push_back(9); });
    scheduler.call_at(t0(), [&] { ran.push_back(2); });
    scheduler.call_at(t0() - 1s, [&] { ran.push_back(1); });
    auto cancelled = scheduler.call_at(t0(), [&] { ran.push_back(99); });
    CHECK(scheduler.cancel(cancelled));
    // Run until the two due calls happened; the guard only stops a broken scheduler.
    for (int guard = 0; ran.size() < 2 && guard < 1000; ++guard) {
        io.run_one_for(std::chrono::milliseconds(100));
    }
    CHECK(ran == std::vector<int>{1, 2});
    CHECK(scheduler.pending() == 1);
    CHECK(scheduler.shutdown() == 1);
    io.run(); // returns: the cancelled wait was the last work
    CHECK(ran == std::vector<int>{1, 2});
    auto refused = scheduler.call_at(t0(), [&] { ran.push_back(7); });
    CHECK(refused.seq == 0);
    io.restart();
    io.run();
    CHECK(ran.size() == 2);
}

SCENARIO("finding 9: the Asio scheduler runs due calls one at a time, in order, on any number of threads") {
    GIVEN("a pool of 4 threads and calls that schedule more calls due at once") {
        boost::asio::thread_pool pool(4);
        infrastructure::SystemClock clock;
        infrastructure::AsioScheduler scheduler(pool.get_executor(), clock);
        constexpr int total = 4000;
        std::atomic<int> running{0}, most_at_once{0}, scheduled{0}, ran{0};
        std::atomic<std::uint64_t> sink{0};
        std::mutex order_mutex;
        std::vector<int> order; // Owned by: order_mutex
        std::function<void(int)> schedule_one = [&](int n) {
            scheduler.call_at(clock.now(), [&, n] {
                int const now_running = running.fetch_add(1) + 1;
                int seen = most_at_once.load();
                while (now_running > seen && !most_at_once.compare_exchange_weak(seen, now_running)) {
                }
                {
                    std::lock_guard lock(order_mutex);
                    order.push_back(n);
                }
                // More work due now while this call runs: the moment a second thread could start.
                for (int more = 0; more < 2; ++more) {
                    int const next = scheduled.fetch_add(1);
                    if (next < total) schedule_one(next);
                }
                // Work after the new calls are queued: the window in which a second thread could start them.
                std::uint64_t busy = static_cast<std::uint64_t>(n);
                for (int spin = 0; spin < 20000; ++spin) busy = busy * 6364136223846793005ULL + 1442695040888963407ULL;
                sink.fetch_add(busy);
                running.fetch_sub(1);
                ran.fetch_add(1);
            });
        };
        schedule_one(scheduled.fetch_add(1)); // every later call is scheduled by a running one
        WHEN("they have all run") {
            auto const guard = std::chrono::steady_clock::now() + 30s;
            while (ran.load() < total && std::chrono::steady_clock::now() < guard) std::this_thread::yield();
            scheduler.shutdown();
            pool.join();
            THEN("never two at once, and in the order they were scheduled") {
                CHECK(ran.load() == total);
                CHECK(most_at_once.load() == 1);
                std::lock_guard lock(order_mutex);
                CHECK(std::is_sorted(order.begin(), order.end()));
            }
        }
    }
}

namespace {

// Keeps the messages of what is logged.
struct RecordingLogger final : application::Logger {
    bool enabled(application::LogLevel) const noexcept override { return true; }
    void write(application::LogLevel level, std::string_view message, std::span<application::LogField const>) override {
        std::lock_guard lock(mutex);
        lines.emplace_back(level, std::string(message));
    }
    std::mutex mutex;
    std::vector<std::pair<application::LogLevel, std::string>> lines;
};

} // namespace

SCENARIO("a scheduled call that throws is logged and counted, and the calls due after it still run") {
    GIVEN("three due calls, the second of which throws (a store that cannot be read)") {
        boost::asio::io_context io;
        ManualClock clock;
        RecordingLogger logger;
        infrastructure::AsioScheduler scheduler(io.get_executor(), clock, logger);
        std::vector<int> ran;
        scheduler.call_at(t0(), [&] { ran.push_back(1); });
        scheduler.call_at(t0(), [&] { throw std::runtime_error("disk I/O error"); });
        scheduler.call_at(t0(), [&] { ran.push_back(3); });
        WHEN("the executor runs them") {
            // Would rethrow out of run() (ending an engine's thread) if the scheduler let it through.
            CHECK_NOTHROW(io.run());
            THEN("the others ran, and the failure is counted and logged as an error") {
                CHECK(ran == std::vector<int>{1, 3});
                CHECK(scheduler.failed_calls() == 1);
                REQUIRE(logger.lines.size() == 1);
                CHECK(logger.lines[0].first == application::LogLevel::error);
                CHECK(logger.lines[0].second == "a scheduled call threw");
            }
        }
    }
}
