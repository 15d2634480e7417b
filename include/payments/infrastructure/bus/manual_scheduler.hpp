#pragma once

#include <payments/application/scheduler.hpp>
#include <payments/infrastructure/system/clocks.hpp>

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>

namespace payments::infrastructure {

class TimerQueue;

/// A scheduler on simulated time: nothing runs until the test advances the
/// clock and calls run_due(). Thread-safe; callbacks run on the caller's thread.
///
/// Example:
///     clock.advance(30s);
///     scheduler.run_due();
class ManualScheduler final : public application::Scheduler {
public:
    explicit ManualScheduler(ManualClock& clock);
    ~ManualScheduler() override;

    application::TimerId call_at(domain::Timestamp at, std::function<void()> fn) override;
    bool cancel(application::TimerId id) override;
    /// Due at the clock's time: run by the next run_due(), on the test's
    /// thread, whichever thread posts it (a durable store's writer).
    void post(std::function<void()> fn) override;

    /// Runs every call due at the clock's time, including calls they schedule
    /// for then; returns how many ran.
    std::size_t run_due();
    /// When the earliest pending call is due.
    std::optional<domain::Timestamp> next_due() const;
    /// Moves the clock to the earliest pending call and runs what is due;
    /// false when nothing is pending.
    bool advance_to_next();
    std::size_t pending() const;

private:
    ManualClock& clock_;
    mutable std::mutex mutex_;
    std::unique_ptr<TimerQueue> queue_; // Owned by: mutex_
};

} // namespace payments::infrastructure
