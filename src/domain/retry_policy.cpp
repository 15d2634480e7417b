#include <payments/domain/retry_policy.hpp>

#include <algorithm>
#include <cmath>

namespace payments::domain {

Result<void> RetryPolicy::validate() const {
    if (base < Duration::zero()) return reject(ErrorCode::invalid_argument, "retry base must not be negative");
    if (!(multiplier >= 1.0) || !std::isfinite(multiplier))
        return reject(ErrorCode::invalid_argument, "retry multiplier must be a finite number >= 1");
    if (cap < base) return reject(ErrorCode::invalid_argument, "retry cap must be at least the base");
    if (cap > max_cap) return reject(ErrorCode::invalid_argument, "retry cap must be at most 30 days");
    if (max_attempts < 1 || max_attempts > 100)
        return reject(ErrorCode::invalid_argument, "max attempts must be between 1 and 100");
    return {};
}

Duration RetryPolicy::max_delay(int failed_attempt) const noexcept {
    // In floating point so that multiplier^n cannot overflow an integer. The
    // comparison is written so that NaN and infinity (0 × ∞, a huge
    // multiplier) fall to the cap, and only a value below the cap (which
    // validate() bounds) is converted back to an integer.
    if (base <= Duration::zero()) return Duration::zero();
    double const grown = static_cast<double>(base.count()) * std::pow(multiplier, std::max(failed_attempt, 0));
    if (!(grown < static_cast<double>(cap.count()))) return cap;
    return Duration(static_cast<Duration::rep>(grown));
}

Duration RetryPolicy::delay(int failed_attempt, Random& random) const {
    auto const bound = max_delay(failed_attempt).count();
    return Duration(static_cast<Duration::rep>(random.uniform(static_cast<std::uint64_t>(bound))));
}

} // namespace payments::domain
