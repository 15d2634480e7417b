// The group commit's queue and thread (used by the PostgreSQL store): a caller
// returns only once the batch holding its job is written, and a batch's write
// does not release the callers queued behind it.
#include "infrastructure/store/group_commit.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <utility>

namespace {

using namespace std::chrono_literals;

struct Job {
    std::atomic<bool> written{false};
};

using Commit = payments::infrastructure::GroupCommit<Job>;

// A caller on a thread of its own: submits, then records what it saw on return.
struct Caller {
    std::shared_ptr<Job> job = std::make_shared<Job>();
    std::atomic<bool> returned{false};
    bool accepted = false, saw_written = false; // read after join()
    std::thread thread;

    void submit(Commit& commit) {
        thread = std::thread([this, &commit] {
            accepted = commit.submit(job) == Commit::Submitted::written;
            saw_written = job->written.load();
            returned = true;
        });
    }
};

// A writer that holds its first batch until `open` is set: jobs queue behind it.
struct HeldWriter {
    std::promise<void> entered, open;
    std::shared_future<void> gate = open.get_future().share();
    std::atomic<int> written{0};
    bool first_batch = true; // Owned by: the writer thread

    std::function<void(Commit::Batch&)> write() {
        return [this](Commit::Batch& batch) {
            if (batch.empty()) return;
            if (std::exchange(first_batch, false)) {
                entered.set_value();
                gate.wait();
            }
            for (auto const& job : batch) job->written = true;
            written += static_cast<int>(batch.size());
        };
    }
};

} // namespace

SCENARIO("a group commit's caller returns once its own batch is written, not another's") {
    GIVEN("a writer whose first two batches each wait for the test before they are written") {
        std::promise<void> entered[2], open[2];
        std::shared_future<void> gate[2] = {open[0].get_future().share(), open[1].get_future().share()};
        std::future<void> in[2] = {entered[0].get_future(), entered[1].get_future()};
        int batches = 0; // Owned by: the writer thread
        Commit commit(8, [&](Commit::Batch& batch) {
            if (batch.empty()) return;
            int const n = batches++;
            if (n < 2) {
                entered[n].set_value();
                gate[n].wait();
            }
            for (auto const& job : batch) job->written = true;
        });
        Caller first, second;
        bool released[2] = {false, false};
        auto release = [&](int n) {
            if (!std::exchange(released[n], true)) open[n].set_value();
        };

        WHEN("one caller's batch is being written while a second caller queues behind it") {
            first.submit(commit);
            REQUIRE(in[0].wait_for(5s) == std::future_status::ready);
            second.submit(commit);
            auto const deadline = std::chrono::steady_clock::now() + 5s;
            while (commit.queued() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
            CHECK(commit.queued() == 1);
            CHECK_FALSE(first.returned.load());

            release(0);
            first.thread.join();
            bool const second_batch_started = in[1].wait_for(5s) == std::future_status::ready;
            bool const second_returned_early = second.returned.load();
            release(1);
            second.thread.join();

            THEN("each returns only after its own batch is written") {
                CHECK(first.accepted);
                CHECK(first.saw_written);
                CHECK(second_batch_started);
                CHECK_FALSE(second_returned_early);
                CHECK(second.accepted);
                CHECK(second.saw_written);
            }
        }
        release(0);
        release(1);
        if (first.thread.joinable()) first.thread.join();
        if (second.thread.joinable()) second.thread.join();

        WHEN("it is closed") {
            commit.close();
            THEN("a job submitted afterwards is refused, not written") {
                auto job = std::make_shared<Job>();
                CHECK(commit.submit(job) == Commit::Submitted::closed);
                CHECK_FALSE(job->written.load());
            }
        }
    }
}

SCENARIO("a group commit whose writer is behind refuses a job at once once its queue is full") {
    GIVEN("a writer held in its first batch, and a queue of two") {
        HeldWriter held;
        Commit commit(
            1,
            held.write(),
            2);
        Caller writing, queued[2];
        writing.submit(commit);
        REQUIRE(held.entered.get_future().wait_for(5s) == std::future_status::ready);
        for (auto& caller : queued) caller.submit(commit);
        auto const deadline = std::chrono::steady_clock::now() + 5s;
        while (commit.queued() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
        REQUIRE(commit.queued() == 2);

        WHEN("one more job is submitted") {
            auto job = std::make_shared<Job>();
            auto const answer = commit.submit(job);
            THEN("it is refused at once, not written, and the queued ones are written once the writer moves") {
                CHECK(answer == Commit::Submitted::full);
                held.open.set_value();
                writing.thread.join();
                for (auto& caller : queued) caller.thread.join();
                CHECK(queued[0].accepted);
                CHECK(queued[1].accepted);
                CHECK(held.written.load() == 3);
                CHECK_FALSE(job->written.load());
            }
        }
        if (writing.thread.joinable()) {
            held.open.set_value();
            writing.thread.join();
            for (auto& caller : queued) caller.thread.join();
        }
    }
}

// Review 19, F5: a burst of asynchronous settlements filled the queue that
// the clients' requests wait in, and those were refused.
SCENARIO("a group commit keeps a quarter of its queue for the callers that wait") {
    GIVEN("a writer held in its first batch, and a queue of four") {
        HeldWriter held;
        Commit commit(
            1,
            held.write(),
            4);
        Caller writing;
        writing.submit(commit);
        REQUIRE(held.entered.get_future().wait_for(5s) == std::future_status::ready);
        std::atomic<int> answered{0};
        auto const later = [&] { return commit.submit_async(std::make_shared<Job>(), [&](Commit::Submitted) { ++answered; }); };

        WHEN("asynchronous jobs are submitted until one is refused") {
            CHECK(later() == Commit::Submitted::written);
            CHECK(later() == Commit::Submitted::written);
            CHECK(later() == Commit::Submitted::written);
            CHECK(later() == Commit::Submitted::full);
            THEN("three were queued, and a caller that waits still finds room") {
                CHECK(commit.queued() == 3);
                Caller waiting;
                waiting.submit(commit);
                auto const deadline = std::chrono::steady_clock::now() + 5s;
                while (commit.queued() < 4 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
                CHECK(commit.queued() == 4);
                CHECK(commit.submit(std::make_shared<Job>()) == Commit::Submitted::full);
                held.open.set_value();
                writing.thread.join();
                waiting.thread.join();
                CHECK(waiting.accepted);
                CHECK(held.written.load() == 5);
                commit.close();
                CHECK(answered.load() == 3);
            }
        }
        if (writing.thread.joinable()) {
            held.open.set_value();
            writing.thread.join();
        }
    }
}

// Review 23, F4: a quarter of 1 to 3, rounded down, kept nothing.
TEST_CASE("a writer's queue of two or more keeps at least one place for the callers that wait") {
    using payments::infrastructure::async_share;
    CHECK(async_share(0) == 0); // no limit
    CHECK(async_share(1) == 1); // nothing to share
    CHECK(async_share(2) == 1);
    CHECK(async_share(3) == 2);
    CHECK(async_share(4) == 3);
    CHECK(async_share(7) == 6);
    CHECK(async_share(8) == 6);
    CHECK(async_share(1024) == 768);
}

SCENARIO("a group commit's job not taken by its writer within the queue's patience is given up, never sent") {
    GIVEN("a writer held in its first batch, and a patience of 50 ms") {
        HeldWriter held;
        Commit commit(
            1,
            held.write(),
            0, 50ms);
        Caller writing, queued;
        writing.submit(commit);
        REQUIRE(held.entered.get_future().wait_for(5s) == std::future_status::ready);

        WHEN("a job queues behind the held batch") {
            auto const start = std::chrono::steady_clock::now();
            queued.submit(commit);
            auto const deadline = start + 2s;
            while (!queued.returned && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
            bool const returned_while_held = queued.returned.load();
            held.open.set_value();
            writing.thread.join();
            queued.thread.join();
            commit.close();

            THEN("its caller is answered within the patience (the batch ahead still held), and it is never written") {
                CHECK(returned_while_held);
                CHECK_FALSE(queued.accepted);
                CHECK_FALSE(queued.job->written.load());
                CHECK(held.written.load() == 1);
                CHECK(writing.accepted);
            }
        }
        if (writing.thread.joinable()) {
            held.open.set_value();
            writing.thread.join();
        }
    }
}

SCENARIO("a group commit's writer answers a job queued longer than the patience as expired, never sent, "
         "whether its caller waits or not") {
    GIVEN("a writer held in its first batch, a patience of 10 s and a clock the test moves") {
        HeldWriter held;
        std::atomic<std::chrono::steady_clock::duration> elapsed{std::chrono::steady_clock::duration::zero()};
        auto const epoch = std::chrono::steady_clock::now();
        Commit commit(
            1,
            held.write(),
            0, 10s, [&] { return epoch + elapsed.load(); });
        Caller writing, waiting;
        writing.submit(commit);
        REQUIRE(held.entered.get_future().wait_for(5s) == std::future_status::ready);

        WHEN("an asynchronous job and a waiting caller queue, the clock passes the patience, and a fresh "
             "asynchronous job queues before the writer moves") {
            auto old_job = std::make_shared<Job>(), fresh_job = std::make_shared<Job>();
            std::promise<Commit::Submitted> old_answer, fresh_answer;
            auto old_heard = old_answer.get_future(), fresh_heard = fresh_answer.get_future();
            auto const queued_old = commit.submit_async(
                old_job, [&](Commit::Submitted s) { old_answer.set_value(s); });
            waiting.submit(commit);
            auto const deadline = std::chrono::steady_clock::now() + 5s;
            while (commit.queued() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
            REQUIRE(commit.queued() == 2);
            elapsed = 10s + 1ms;
            auto const queued_fresh = commit.submit_async(
                fresh_job, [&](Commit::Submitted s) { fresh_answer.set_value(s); });
            held.open.set_value();
            bool const old_called = old_heard.wait_for(5s) == std::future_status::ready;
            bool const fresh_called = fresh_heard.wait_for(5s) == std::future_status::ready;
            writing.thread.join();
            waiting.thread.join();

            THEN("the old ones are answered expired and never written, the fresh one is written") {
                CHECK(queued_old == Commit::Submitted::written);
                CHECK(queued_fresh == Commit::Submitted::written);
                REQUIRE(old_called);
                CHECK(old_heard.get() == Commit::Submitted::expired);
                CHECK_FALSE(old_job->written.load());
                CHECK_FALSE(waiting.accepted);
                CHECK_FALSE(waiting.saw_written);
                REQUIRE(fresh_called);
                CHECK(fresh_heard.get() == Commit::Submitted::written);
                CHECK(fresh_job->written.load());
                CHECK(held.written.load() == 2);
            }
        }
        if (writing.thread.joinable()) {
            held.open.set_value();
            writing.thread.join();
        }
    }
}
