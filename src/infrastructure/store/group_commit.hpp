#pragma once
// Group commit: callers queue jobs and wait; one writer thread takes every
// queued job (up to a batch size) and writes them in one transaction, then
// wakes the callers of that batch, each on its own wait (completion.hpp).
// What a batch means (savepoints, the COMMIT, errors) is the store's `write`
// function; this is only the queue and the thread.

#include "completion.hpp"

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace payments::infrastructure {

/// A writer thread fed by a queue of `Job`s, written in batches.
template <class Job>
class GroupCommit {
public:
    using Batch = std::vector<std::shared_ptr<Job>>;
    /// Writes a batch (an empty one too, when flush() asks). Runs on the writer thread.
    using Write = std::function<void(Batch&)>;

    GroupCommit(std::size_t max_batch, Write write)
        : max_batch_(max_batch == 0 ? 1 : max_batch), write_(std::move(write)), thread_([this] { run(); }) {}
    GroupCommit(GroupCommit const&) = delete;
    GroupCommit& operator=(GroupCommit const&) = delete;
    ~GroupCommit() { close(); }

    /// Queues the job and waits until its batch is written; false (and not
    /// written) once closed.
    bool submit(std::shared_ptr<Job> job) {
        auto entry = std::make_shared<Entry>(std::move(job));
        {
            std::lock_guard guard(mutex_);
            if (closing_) return false;
            queue_.push_back(entry);
        }
        work_.notify_one();
        entry->answered.wait();
        return true;
    }

    /// Queues the job and returns: `then` runs on the writer thread once its
    /// batch is written. False (and neither written nor called) once closed.
    bool submit_async(std::shared_ptr<Job> job, std::function<void()> then) {
        auto entry = std::make_shared<Entry>(std::move(job));
        entry->then = std::move(then);
        {
            std::lock_guard guard(mutex_);
            if (closing_) return false;
            queue_.push_back(std::move(entry));
        }
        work_.notify_one();
        return true;
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
        explicit Entry(std::shared_ptr<Job> j) : job(std::move(j)) {}
        std::shared_ptr<Job> job;
        Completion answered; // its caller's wait, finished once its batch is written
        std::function<void()> then; // or its caller's callback (submit_async)
    };

    void run() {
        std::vector<std::shared_ptr<Entry>> entries;
        Batch batch;
        for (;;) {
            {
                std::unique_lock guard(mutex_);
                work_.wait(guard, [&] { return !queue_.empty() || flush_ || closing_; });
                if (queue_.empty() && !flush_ && closing_) return;
                flush_ = false;
                while (!queue_.empty() && entries.size() < max_batch_) {
                    entries.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
                if (!queue_.empty()) flush_ = true; // more than one batch was waiting
            }
            for (auto const& e : entries) batch.push_back(e->job);
            write_(batch);
            for (auto const& e : entries) { // entries keeps each alive meanwhile
                if (e->then)
                    call(e->then);
                else
                    e->answered.finish();
            }
            entries.clear();
            batch.clear();
        }
    }

    // A callback that throws must neither end the writer (std::terminate)
    // nor leave the rest of its batch unanswered. Its caller logs what it
    // could not do (commit_and_publish_async); the writer goes on.
    static void call(std::function<void()> const& then) noexcept {
        try {
            then();
        } catch (...) {
        }
    }

    std::size_t const max_batch_;
    Write const write_;
    std::mutex mutex_;
    std::condition_variable work_;
    std::deque<std::shared_ptr<Entry>> queue_; // Owned by: mutex_
    bool flush_ = false;                       // Owned by: mutex_
    bool closing_ = false;                     // Owned by: mutex_
    std::thread thread_;                       // declared last: starts once the rest is built
};

} // namespace payments::infrastructure
