#include <payments/infrastructure/simulated_gateway.hpp>

#include <algorithm>

namespace payments::infrastructure {

using application::ChargeOutcome;
using application::ChargeRequest;
using domain::FailureKind;

namespace {

constexpr std::string_view flaky_prefix = "pm_card_flaky_";

// A uniform draw in [0, 1) from 53 random bits.
double unit(domain::Random& random) { return static_cast<double>(random.next_u64() >> 11) * 0x1.0p-53; }

} // namespace

SimulatedGateway::SimulatedGateway(application::Scheduler& scheduler, application::Clock const& clock,
                                   SimulatedGatewayOptions options)
    : scheduler_(scheduler), clock_(clock), options_(options), random_(options.seed) {}

ChargeOutcome SimulatedGateway::charge_locked(ChargeRequest const& request) {
    std::string reference = "ch_" + std::to_string(ledger_.size() + 1) + "_" + request.idempotency_key;
    ledger_.push_back({request.idempotency_key, request.invoice_id, request.payment_id, request.amount, reference});
    return ChargeOutcome::charged(std::move(reference));
}

SimulatedGateway::Decision SimulatedGateway::decide_locked(ChargeRequest const& request) {
    std::string_view const method = request.payment_method;
    // Answers worth remembering per key: a charge and a decline are final at a real PSP.
    auto remember = [&](ChargeOutcome outcome) {
        answered_.emplace(request.idempotency_key, outcome);
        return Decision{std::move(outcome)};
    };
    if (method == "pm_card_ok") return remember(charge_locked(request));
    if (method == "pm_card_declined") return remember(ChargeOutcome::failed(FailureKind::declined, "card declined"));
    if (method == "pm_card_unavailable")
        return {ChargeOutcome::failed(FailureKind::transient, "issuer unavailable")};
    if (method == "pm_card_timeout") return {};
    if (method == "pm_card_lost_response") {
        remember(charge_locked(request));
        return {}; // charged, but this answer never arrives
    }
    if (method.starts_with(flaky_prefix) && method.size() == flaky_prefix.size() + 1 &&
        method.back() >= '1' && method.back() <= '9') {
        int const failures = method.back() - '0';
        if (transient_failures_[request.invoice_id]++ < failures)
            return {ChargeOutcome::failed(FailureKind::transient, "issuer temporarily unavailable")};
        return remember(charge_locked(request));
    }
    if (method.empty() || method == "pm_card_random") {
        // One draw against the cumulative rates: decline | transient | timeout | lost answer | charged.
        double threshold = unit(random_);
        if ((threshold -= options_.decline_rate) < 0)
            return remember(ChargeOutcome::failed(FailureKind::declined, "card declined"));
        if ((threshold -= options_.transient_rate) < 0)
            return {ChargeOutcome::failed(FailureKind::transient, "issuer temporarily unavailable")};
        if ((threshold -= options_.timeout_rate) < 0) return {};
        if ((threshold -= options_.lost_response_rate) < 0) {
            remember(charge_locked(request));
            return {};
        }
        return remember(charge_locked(request));
    }
    return remember(ChargeOutcome::failed(FailureKind::declined, "unknown payment method"));
}

void SimulatedGateway::charge(ChargeRequest request, std::function<void(ChargeOutcome)> on_outcome) {
    Decision decision;
    domain::Duration latency{0};
    {
        std::lock_guard lock(mutex_);
        keys_seen_.push_back(request.idempotency_key);
        if (auto it = answered_.find(request.idempotency_key); it != answered_.end())
            decision.answer = it->second;
        else
            decision = decide_locked(request);
        latency = latency_locked();
    }
    if (!decision.answer) return;
    // Always answered through the scheduler, never inside charge(): callers see a real asynchronous API.
    scheduler_.call_at(clock_.now() + latency, [answer = std::move(*decision.answer),
                                                on_outcome = std::move(on_outcome)]() mutable { on_outcome(answer); });
}

domain::Duration SimulatedGateway::latency_locked() {
    if (options_.latency_max <= options_.latency_min) return options_.latency_min;
    auto const spread = static_cast<std::uint64_t>((options_.latency_max - options_.latency_min).count());
    return options_.latency_min + domain::Duration(static_cast<domain::Duration::rep>(random_.uniform(spread)));
}

void SimulatedGateway::lookup(std::string idempotency_key, std::function<void(std::optional<ChargeOutcome>)> on_answer) {
    std::optional<ChargeOutcome> found;
    domain::Duration latency{0};
    {
        std::lock_guard lock(mutex_);
        if (auto it = answered_.find(idempotency_key); it != answered_.end()) found = it->second;
        latency = latency_locked();
    }
    scheduler_.call_at(clock_.now() + latency,
                       [found = std::move(found), on_answer = std::move(on_answer)]() mutable { on_answer(found); });
}

void SimulatedGateway::set_options(SimulatedGatewayOptions options) {
    std::lock_guard lock(mutex_);
    options_ = options;
}

std::vector<GatewayCharge> SimulatedGateway::ledger() const {
    std::lock_guard lock(mutex_);
    return ledger_;
}

std::size_t SimulatedGateway::charges_for(domain::InvoiceId const& invoice) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(
        std::count_if(ledger_.begin(), ledger_.end(), [&](GatewayCharge const& c) { return c.invoice_id == invoice; }));
}

std::size_t SimulatedGateway::calls() const {
    std::lock_guard lock(mutex_);
    return keys_seen_.size();
}

std::vector<std::string> SimulatedGateway::keys_seen() const {
    std::lock_guard lock(mutex_);
    return keys_seen_;
}

} // namespace payments::infrastructure
