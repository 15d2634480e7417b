#pragma once
// The wait of one caller for its write to be committed, shared by the stores'
// group commits (SQLite's writer and GroupCommit, used by PostgreSQL).

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace payments::infrastructure {

/// One caller's wait for its command's batch: the writer wakes exactly the
/// callers of the batch it committed, not every thread waiting on the store
/// (a broadcast on each batch woke them all, to find most not yet done).
/// A mutex and condition variable, not std::binary_semaphore: libstdc++'s
/// semaphore calls sched_yield about a dozen times before it sleeps, and a
/// caller waits for a whole batch and its fsync (docs/performance.md, round 4).
class Completion {
public:
    /// Marks it done and wakes its caller. The one who calls it keeps the
    /// object alive until it returns (the waiter may go as soon as it sees done).
    void finish() {
        {
            std::lock_guard guard(mutex_);
            done_ = true;
        }
        finished_.notify_one();
    }

    /// Waits at most `most` for finish(); whether it was called.
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> most) {
        std::unique_lock guard(mutex_);
        return finished_.wait_for(guard, most, [&] { return done_; });
    }

    /// Waits until finish() has been called (returns at once if it has).
    void wait() {
        std::unique_lock guard(mutex_);
        finished_.wait(guard, [&] { return done_; });
    }

private:
    std::mutex mutex_;
    std::condition_variable finished_;
    bool done_ = false; // Owned by: mutex_
};

} // namespace payments::infrastructure
