#pragma once

#include <payments/application/clock.hpp>

#include <atomic>

namespace payments::infrastructure {

/// The real wall clock (UTC).
class SystemClock final : public application::Clock {
public:
    domain::Timestamp now() const override;
};

/// A clock that moves only when told: tests and simulations advance it
/// instead of sleeping. Thread-safe.
class ManualClock final : public application::Clock {
public:
    /// Starts at 2026-01-01T00:00:00Z unless told otherwise.
    explicit ManualClock(domain::Timestamp start = default_start());

    domain::Timestamp now() const override;
    void advance(domain::Duration by);
    /// Moves to `to`; time never goes backwards, so an earlier `to` is ignored.
    void advance_to(domain::Timestamp to);

    static domain::Timestamp default_start();

private:
    std::atomic<domain::Duration::rep> micros_;
};

} // namespace payments::infrastructure
