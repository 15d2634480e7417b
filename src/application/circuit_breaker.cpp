#include <payments/application/circuit_breaker.hpp>

#include <algorithm>

namespace payments::application {

using namespace domain;

std::string_view to_string(CircuitState state) noexcept {
    switch (state) {
    case CircuitState::closed: return "closed";
    case CircuitState::open: return "open";
    case CircuitState::half_open: return "half_open";
    }
    return "unknown";
}

Result<void> BreakerOptions::validate() const {
    if (window < 1 || window > 1000 || minimum_calls < 1 || minimum_calls > window)
        return reject(ErrorCode::invalid_argument, "breaker: need 1 <= minimum calls <= window <= 1000");
    if (!(failure_ratio > 0.0 && failure_ratio <= 1.0))
        return reject(ErrorCode::invalid_argument, "breaker: the failure ratio must be in (0, 1]");
    if (open_for <= Duration::zero() || open_for > std::chrono::hours(1))
        return reject(ErrorCode::invalid_argument, "breaker: open time must be positive and at most an hour");
    if (half_open_probes < 1 || half_open_probes > 100)
        return reject(ErrorCode::invalid_argument, "breaker: 1 to 100 half-open probes");
    return {};
}

bool should_open(BreakerOptions const& options, std::size_t calls, std::size_t failures) noexcept {
    return calls >= options.minimum_calls &&
           static_cast<double>(failures) >= options.failure_ratio * static_cast<double>(calls);
}

CircuitBreaker::CircuitBreaker(BreakerOptions options) : options_(options) {}

std::optional<CircuitTransition> CircuitBreaker::move_to(CircuitState to, Timestamp now) {
    CircuitTransition const transition{state_, to};
    state_ = to;
    ++generation_;
    window_.clear();
    probes_out_ = 0;
    probes_passed_ = 0;
    if (to == CircuitState::open) opened_at_ = now;
    return transition;
}

CircuitBreaker::Permit CircuitBreaker::acquire(Timestamp now) {
    std::lock_guard lock(mutex_);
    Permit permit;
    if (state_ == CircuitState::open) {
        if (now < opened_at_ + options_.open_for) {
            permit.retry_at = opened_at_ + options_.open_for;
            return permit;
        }
        permit.transition = move_to(CircuitState::half_open, now);
    }
    if (state_ == CircuitState::half_open) {
        if (probes_out_ >= options_.half_open_probes) {
            permit.retry_at = now;
            return permit;
        }
        ++probes_out_;
    }
    permit.granted = true;
    permit.generation = generation_;
    return permit;
}

std::optional<CircuitTransition> CircuitBreaker::record(std::uint64_t generation, bool provider_failure,
                                                        Timestamp now) {
    std::lock_guard lock(mutex_);
    if (generation != generation_) return std::nullopt; // granted under another state
    switch (state_) {
    case CircuitState::closed: {
        window_.push_back(provider_failure);
        if (window_.size() > options_.window) window_.pop_front();
        auto const failures = static_cast<std::size_t>(std::count(window_.begin(), window_.end(), true));
        if (should_open(options_, window_.size(), failures)) return move_to(CircuitState::open, now);
        return std::nullopt;
    }
    case CircuitState::half_open:
        if (provider_failure) return move_to(CircuitState::open, now);
        if (++probes_passed_ >= options_.half_open_probes) return move_to(CircuitState::closed, now);
        return std::nullopt;
    case CircuitState::open: return std::nullopt;
    }
    return std::nullopt;
}

void CircuitBreaker::forgo(std::uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (generation == generation_ && state_ == CircuitState::half_open && probes_out_ > 0) --probes_out_;
}

bool CircuitBreaker::usable(Timestamp now) const {
    std::lock_guard lock(mutex_);
    switch (state_) {
    case CircuitState::closed: return true;
    case CircuitState::open: return now >= opened_at_ + options_.open_for;
    case CircuitState::half_open: return probes_out_ < options_.half_open_probes;
    }
    return false;
}

CircuitState CircuitBreaker::state(Timestamp now) const {
    std::lock_guard lock(mutex_);
    if (state_ == CircuitState::open && now >= opened_at_ + options_.open_for) return CircuitState::half_open;
    return state_;
}

} // namespace payments::application
