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
    void post(std::function<void()> fn) override;

    /// Drops every pending call and refuses new ones; returns how many were dropped.
    std::size_t shutdown();
    std::size_t pending() const;
    /// Calls that threw.
    std::uint64_t failed_calls() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace payments::infrastructure
