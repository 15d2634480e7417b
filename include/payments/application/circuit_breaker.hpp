#pragma once

#include <payments/domain/time.hpp>
#include <payments/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string_view>

namespace payments::application {

/// A gateway's circuit: closed (calls go out), open (none do), half-open (a
/// few probes decide between the two). The gauge values are 0, 1 and 2.
enum class CircuitState { closed = 0, open = 1, half_open = 2 };

/// "closed", "open", "half_open".
std::string_view to_string(CircuitState state) noexcept;

/// When a gateway's circuit opens and how it closes again.
struct BreakerOptions {
    std::size_t window = 10;        ///< the last this many charges are counted
    std::size_t minimum_calls = 10; ///< the circuit never opens on fewer
    double failure_ratio = 0.6;     ///< opens when at least this share of the window failed
    domain::Duration open_for = std::chrono::seconds(30); ///< then half-open
    std::size_t half_open_probes = 1; ///< calls let through half-open; all must succeed to close

    /// 1 <= minimum_calls <= window <= 1000, 0 < failure_ratio <= 1,
    /// 0 < open_for <= 1 h, 1 <= half_open_probes <= 100.
    Result<void> validate() const;
};

/// A change of a circuit's state.
struct CircuitTransition {
    CircuitState from;
    CircuitState to;
};

/// One gateway's circuit breaker. It counts the provider's own failures
/// (TRANSIENT and UNKNOWN_OUTCOME answers, and no answer in time), not the
/// card's (a decline is the provider working). Time comes from the caller.
/// Threads: any; state is behind a mutex.
class CircuitBreaker {
public:
    explicit CircuitBreaker(BreakerOptions options = {});

    /// Leave to send one call now, or when to ask again.
    struct Permit {
        bool granted = false;
        std::uint64_t generation = 0;   ///< hand back to record()
        domain::Timestamp retry_at{};   ///< when not granted: when the circuit half-opens (or now, if it is half-open)
        std::optional<CircuitTransition> transition; ///< open → half-open, if asking made it
    };

    /// Closed: granted. Open: refused until `open_for` has passed, then
    /// half-open. Half-open: granted to at most `half_open_probes` calls.
    Permit acquire(domain::Timestamp now);

    /// What a granted call came to. A call granted before the last change of
    /// state (an older generation) is not counted.
    std::optional<CircuitTransition> record(std::uint64_t generation, bool provider_failure, domain::Timestamp now);

    /// A granted call that was never made (the adapter refused it before
    /// sending, ChargeAnswer::over_limit): counts nothing, and gives a
    /// half-open probe back so that another call can take it.
    void forgo(std::uint64_t generation);

    /// Whether a new attempt should be routed here: closed, half-open with a
    /// probe free, or open past `open_for`. Changes nothing.
    bool usable(domain::Timestamp now) const;

    /// The state as of `now` (open past `open_for` reads half-open).
    CircuitState state(domain::Timestamp now) const;

    BreakerOptions const& options() const noexcept { return options_; }

private:
    std::optional<CircuitTransition> move_to(CircuitState to, domain::Timestamp now); // mutex_ held

    BreakerOptions const options_;
    mutable std::mutex mutex_;
    CircuitState state_ = CircuitState::closed; // Owned by: mutex_
    std::uint64_t generation_ = 1;              // Owned by: mutex_; bumped at every change of state
    std::deque<bool> window_;                   // Owned by: mutex_; closed: true = a provider failure
    domain::Timestamp opened_at_{};             // Owned by: mutex_
    std::size_t probes_out_ = 0;                // Owned by: mutex_; half-open
    std::size_t probes_passed_ = 0;             // Owned by: mutex_; half-open
};

/// The breaker's rule for closed circuits: at least `minimum_calls` counted
/// and at least `failure_ratio` of them failures.
bool should_open(BreakerOptions const& options, std::size_t calls, std::size_t failures) noexcept;

} // namespace payments::application
