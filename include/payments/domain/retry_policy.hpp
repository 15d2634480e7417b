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

    /// base >= 0, multiplier >= 1, cap >= base, 1 <= max_attempts <= 100.
    Result<void> validate() const;

    /// Whether a failure of this kind may be retried at all.
    static bool retryable(FailureKind kind) noexcept { return kind != FailureKind::declined; }

    /// The upper bound of the delay after attempt `failed_attempt` (1-based) of a cycle.
    Duration max_delay(int failed_attempt) const noexcept;

    /// A delay drawn uniformly from [0, max_delay(failed_attempt)].
    Duration delay(int failed_attempt, Random& random) const;
};

} // namespace payments::domain
