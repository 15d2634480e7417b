#pragma once

#include <payments/domain/events.hpp>
#include <payments/domain/random.hpp>
#include <payments/domain/time.hpp>
#include <payments/error.hpp>

#include <chrono>

namespace payments::domain {

/// When a failed attempt is tried again: exponential backoff with full jitter,
/// bounded by a cap and by a number of attempts per cycle. After attempt n
/// fails, attempt n+1 waits a uniform delay in [0, min(cap, base * multiplier^n)].
struct RetryPolicy {
    Duration base = std::chrono::seconds(1);
    double multiplier = 2.0;
    Duration cap = std::chrono::seconds(30);
    int max_attempts = 5; ///< attempts per cycle, the first one included

    /// The largest cap validate() accepts: every delay, added to any
    /// timestamp of this era, stays far from overflowing.
    static constexpr Duration max_cap = std::chrono::hours(24 * 30);

    /// base >= 0, multiplier >= 1, base <= cap <= max_cap, 1 <= max_attempts <= 100.
    Result<void> validate() const;

    /// Whether a failure of this kind may be retried at all.
    static bool retryable(FailureKind kind) noexcept { return kind != FailureKind::declined; }

    /// The upper bound of the delay after attempt `failed_attempt` (1-based)
    /// of a cycle: never negative, never above the cap.
    Duration max_delay(int failed_attempt) const noexcept;

    /// A delay drawn uniformly from [0, max_delay(failed_attempt)].
    Duration delay(int failed_attempt, Random& random) const;
};

} // namespace payments::domain
