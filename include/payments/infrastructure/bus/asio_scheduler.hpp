#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/logger.hpp>
#include <payments/application/scheduler.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace payments::infrastructure {

/// A scheduler on real time: every pending call waits in one ordered queue
/// behind a single steady_timer armed for the earliest, so a million pending
/// retries cost a million small entries, not a million timers. Thread-safe.
class AsioScheduler final : public application::Scheduler {
public:
    /// Calls that throw are logged on `logger` (an error with the exception's
    /// text) and counted; the other due calls still run.
    AsioScheduler(boost::asio::any_io_executor executor, application::Clock const& clock,
                  application::Logger& logger);
    /// Calls that throw are only counted.
    AsioScheduler(boost::asio::any_io_executor executor, application::Clock const& clock);
    /// Calls shutdown().
    ~AsioScheduler() override;

    application::TimerId call_at(domain::Timestamp at, std::function<void()> fn) override;
    bool cancel(application::TimerId id) override;
    /// Posts `fn` to the executor (not its strand): posted calls run in
    /// parallel on its threads, logged and counted if they throw as due calls are.
    /// Not refused after shutdown(), and not counted by pending(): a
    /// settlement's continuation still runs while the engine's pool finishes
    /// (its claim is released); one posted after the pool is joined is
    /// dropped with the pool's queue (its commit and events stand: the events
    /// are published again at the next start).
    void post(std::function<void()> fn) override;

    /// Drops every pending call and refuses new ones (post() excepted);
    /// returns how many were dropped.
    std::size_t shutdown();
    std::size_t pending() const;
    /// Calls that threw.
    std::uint64_t failed_calls() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace payments::infrastructure
