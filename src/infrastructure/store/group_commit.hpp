#pragma once
// Group commit: callers queue jobs and wait; one writer thread takes every
// queued job (up to a batch size) and writes them in one transaction, then
// wakes the callers of that batch, each on its own wait (completion.hpp).
// What a batch means (savepoints, the COMMIT, errors) is the store's `write`
// function; this is only the queue and the thread.

#include "completion.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace payments::infrastructure {

/// How many jobs a writer's queue of `max_queued` takes from callers that
/// do not wait (asynchronous commits: settlements): a quarter is kept for
/// the callers that wait (a client's request), so that a burst of
/// settlements cannot get them refused (review 19, F5). GroupCommit and the
/// SQLite store's queue keep the same share. At least one place is kept once
/// the queue holds two (review 23, F4: a quarter of 1 to 3 rounded to none);
/// a queue of one has nothing to share and takes either kind.
constexpr std::size_t async_share(std::size_t max_queued) {
    return max_queued < 2 ? max_queued : max_queued - std::max<std::size_t>(max_queued / 4, 1);
}

/// How many jobs a writer's queue of `max_queued` takes from a client's
/// asynchronous command (Changes::Origin::client): half, so that the
/// settlements (up to async_share) always keep a quarter of their own
/// (review 25, F3). Never more than async_share().
constexpr std::size_t client_share(std::size_t max_queued) {
    return max_queued < 4 ? async_share(max_queued) : max_queued / 2;
}

/// Whether a writer with `queued` jobs waiting is at or past its
/// asynchronous share: a charge started now could not have its answer
/// queued (review 23, F2), so no new one starts (Store::lease_to_drive says
/// no; the janitor drives it later). Never with no limit (`max_queued` 0).
constexpr bool writer_behind(std::size_t queued, std::size_t max_queued) {
    return max_queued != 0 && queued >= async_share(max_queued);
}

/// A writer thread fed by a queue of `Job`s, written in batches.
template <class Job>
class GroupCommit {
public:
    using Batch = std::vector<std::shared_ptr<Job>>;
    /// Writes a batch (an empty one too, when flush() asks). Runs on the writer thread.
    using Write = std::function<void(Batch&)>;
    /// The time a job's wait is measured with (steady_clock::now unless a test injects its own).
    using Clock = std::function<std::chrono::steady_clock::time_point()>;

    /// What submit() did with a job.
    enum class Submitted {
        written, ///< its batch was written (its result says how it went)
        full,    ///< refused at once: `max_queued` jobs were waiting already
        closed,  ///< refused: the queue is closed
        expired, ///< given up: the writer did not take it within `patience` (never sent)
    };

    /// `max_queued`: jobs waiting for the writer at most (0: no limit);
    /// `patience`: how long a job may wait for the writer to take it (zero:
    /// for ever). Past it the job is taken out of the queue, never sent, whether
    /// its caller waits (submit) or not (submit_async): one rule for both.
    /// `now`: the clock a job's wait is measured with.
    GroupCommit(std::size_t max_batch, Write write, std::size_t max_queued = 0,
                std::chrono::milliseconds patience = std::chrono::milliseconds::zero(),
                Clock now = [] { return std::chrono::steady_clock::now(); })
        : max_batch_(max_batch == 0 ? 1 : max_batch), max_queued_(max_queued), patience_(patience),
          now_(std::move(now)), write_(std::move(write)), thread_([this] { run(); }) {}
    GroupCommit(GroupCommit const&) = delete;
    GroupCommit& operator=(GroupCommit const&) = delete;
    ~GroupCommit() { close(); }

    /// Queues the job and waits until its batch is written; refused at once
    /// (not written) when the queue is full or closed, and given up (not
    /// written) when the writer has not taken it within the patience: a
    /// caller behind a hung server waits that long, not for every batch
    /// ahead of it (review 18, A-4). Once taken, its batch's write is bounded
    /// by the store's own timeouts.
    Submitted submit(std::shared_ptr<Job> job) {
        auto entry = std::make_shared<Entry>(std::move(job), now_());
        {
            std::lock_guard guard(mutex_);
            if (closing_) return Submitted::closed;
            // A writer that is behind (a slow or hung server) makes callers wait
            // behind it; past the bound they are told so instead of piling up.
            if (max_queued_ != 0 && queue_.size() >= max_queued_) return Submitted::full;
            queue_.push_back(entry);
        }
        work_.notify_one();
        if (patience_.count() > 0 && !entry->answered.wait_for(patience_)) {
            std::lock_guard guard(mutex_);
            if (auto it = std::find(queue_.begin(), queue_.end(), entry); it != queue_.end()) {
                queue_.erase(it);
                return Submitted::expired;
            }
        }
        entry->answered.wait(); // taken into a batch (or given up by the writer): answered
        return entry->outcome;
    }

    /// Queues the job and returns (`written`: queued). `then` runs on the
    /// writer thread with `written` once its batch is written, or with
    /// `expired` (never sent) when the writer finds it waited longer than the
    /// patience: a caller that does not wait holds what it holds (a store's
    /// gate share) no longer than one that does (review 19, F4). Refused at
    /// once, neither written nor called, when the queue is closed or holds
    /// async_share(max_queued) jobs already: a caller that does not wait is
    /// bounded too, and leaves room for those that do.
    /// A client's command (`client`) is refused once it holds client_share().
    Submitted submit_async(std::shared_ptr<Job> job, std::function<void(Submitted)> then, bool client = false) {
        auto entry = std::make_shared<Entry>(std::move(job), now_());
        entry->then = std::move(then);
        {
            std::lock_guard guard(mutex_);
            if (closing_) return Submitted::closed;
            std::size_t const most = client ? client_share(max_queued_) : async_share(max_queued_);
            if (max_queued_ != 0 && queue_.size() >= most) return Submitted::full;
            queue_.push_back(std::move(entry));
        }
        work_.notify_one();
        return Submitted::written;
    }

    /// Jobs queued and not yet taken into a batch.
    std::size_t queued() {
        std::lock_guard guard(mutex_);
        return queue_.size();
    }

    /// Asks for a batch even if no job is queued (the store has writes of its own waiting).
    void flush() {
        std::lock_guard guard(mutex_);
        flush_ = true;
        work_.notify_one();
    }

    /// Writes what is queued, then stops the thread. Idempotent.
    void close() {
        {
            std::lock_guard guard(mutex_);
            if (closing_ && !thread_.joinable()) return;
            closing_ = true;
            flush_ = true; // the store's own pending writes, once more
        }
        work_.notify_all();
        if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    }

private:
    struct Entry {
        Entry(std::shared_ptr<Job> j, std::chrono::steady_clock::time_point at) : job(std::move(j)), queued_at(at) {}
        std::shared_ptr<Job> job;
        std::chrono::steady_clock::time_point const queued_at;
        Submitted outcome = Submitted::written; // set by the writer before it answers
        Completion answered; // its caller's wait, finished once its batch is written
        std::function<void(Submitted)> then; // or its caller's callback (submit_async)
    };

    // Whether the entry waited for the writer longer than the patience.
    bool overdue(Entry const& e, std::chrono::steady_clock::time_point now) const {
        return patience_.count() > 0 && now - e.queued_at > patience_;
    }

    void run() {
        std::vector<std::shared_ptr<Entry>> entries, expired;
        Batch batch;
        for (;;) {
            bool flushing = false;
            {
                std::unique_lock guard(mutex_);
                work_.wait(guard, [&] { return !queue_.empty() || flush_ || closing_; });
                if (queue_.empty() && !flush_ && closing_) return;
                flushing = std::exchange(flush_, false);
                auto const now = now_();
                while (!queue_.empty() && entries.size() < max_batch_) {
                    // One rule for both kinds of caller: a job the writer reaches
                    // past the patience is answered expired, never sent.
                    auto& into = overdue(*queue_.front(), now) ? expired : entries;
                    into.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
                if (!queue_.empty()) flush_ = true; // more than one batch was waiting
            }
            answer(expired, Submitted::expired);
            if (!entries.empty() || flushing) {
                for (auto const& e : entries) batch.push_back(e->job);
                write_(batch);
            }
            answer(entries, Submitted::written);
            batch.clear();
        }
    }

    // Answers each entry's caller (its wait or its callback), then forgets them.
    static void answer(std::vector<std::shared_ptr<Entry>>& entries, Submitted outcome) {
        for (auto const& e : entries) { // entries keeps each alive meanwhile
            e->outcome = outcome;
            if (e->then)
                call(e->then, outcome);
            else
                e->answered.finish();
        }
        entries.clear();
    }

    // A callback that throws must neither end the writer (std::terminate)
    // nor leave the rest of its batch unanswered. Its caller logs what it
    // could not do (commit_and_publish_async); the writer goes on.
    static void call(std::function<void(Submitted)> const& then, Submitted outcome) noexcept {
        try {
            then(outcome);
        } catch (...) {
        }
    }

    std::size_t const max_batch_;
    std::size_t const max_queued_;
    std::chrono::milliseconds const patience_;
    Clock const now_;
    Write const write_;
    std::mutex mutex_;
    std::condition_variable work_;
    std::deque<std::shared_ptr<Entry>> queue_; // Owned by: mutex_
    bool flush_ = false;                       // Owned by: mutex_
    bool closing_ = false;                     // Owned by: mutex_
    std::thread thread_;                       // declared last: starts once the rest is built
};

} // namespace payments::infrastructure
