#pragma once

#include <payments/domain/time.hpp>

#include <compare>
#include <cstdint>
#include <functional>

namespace payments::application {

/// Names one scheduled call, for cancel().
struct TimerId {
    domain::Timestamp at;
    std::uint64_t seq = 0;

    friend auto operator<=>(TimerId const&, TimerId const&) = default;
};

/// Runs callbacks at a point of the Clock's time: an Asio timer in production,
/// `ManualScheduler::run_due()` under a simulated clock.
class Scheduler {
public:
    virtual ~Scheduler() = default;

    /// Calls `fn` once, at or after `at`. Callbacks must not block: they run on
    /// the scheduler's own thread of control, in (at, order of scheduling) order.
    /// A callback that throws is the caller's bug or a failed dependency (a
    /// store that cannot be read): production schedulers log it and run the
    /// other calls; it never ends the process.
    virtual TimerId call_at(domain::Timestamp at, std::function<void()> fn) = 0;

    /// True if the call was pending and now never happens.
    virtual bool cancel(TimerId id) = 0;

    /// Runs `fn` soon, without waiting for the clock: how a thread that must
    /// not be held (a store's writer answering an asynchronous commit) hands
    /// work to the scheduler's threads. Callbacks may run in parallel and in
    /// any order. Called from any thread; never runs `fn` on the caller's
    /// thread (the writer would run the settlement's reads, gateway calls and
    /// commits, and wait for itself). The default makes it due at once
    /// through call_at(), which must then be callable from any thread.
    virtual void post(std::function<void()> fn) { call_at(domain::Timestamp{}, std::move(fn)); }
};

} // namespace payments::application
