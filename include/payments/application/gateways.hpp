#pragma once

#include <payments/application/circuit_breaker.hpp>
#include <payments/application/payment_gateway.hpp>
#include <payments/domain/payment.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace payments::application {

/// One gateway as /health/ready shows it.
struct GatewayHealth {
    std::string name;
    CircuitState state;
    bool usable; ///< a new attempt may be routed to it now
};

/// The gateways in order of preference, each with its circuit breaker. New
/// attempts go to the first usable one; everything about an attempt already
/// made (its charge, look-ups, late answers, notices) goes to the gateway
/// recorded on it.
class Gateways {
public:
    /// One entry of the list.
    struct Entry {
        Entry(std::string n, std::shared_ptr<PaymentGateway> g, BreakerOptions options)
            : name(std::move(n)), gateway(std::move(g)), breaker(options) {}
        std::string name;
        std::shared_ptr<PaymentGateway> gateway;
        CircuitBreaker breaker;
    };

    /// At least one gateway, names valid and distinct, none null; options valid.
    /// Attempts record a gateway by its name: keep names across restarts.
    static Result<Gateways> make(std::vector<NamedGateway> gateways, BreakerOptions options = {});

    /// One gateway named `name`, not owned: it must outlive this.
    explicit Gateways(PaymentGateway& single, BreakerOptions options = {}, std::string name = "default");

    Gateways(Gateways&&) noexcept = default;
    Gateways& operator=(Gateways&&) noexcept = default;

    /// The gateway a new attempt goes to: the first whose circuit is usable,
    /// or, when none is, the first (its charge then waits for the circuit).
    std::string const& choose(domain::Timestamp now) const;

    /// The gateway of that name; an empty name is the first. Null if unknown.
    Entry* find(std::string_view name) const;

    std::size_t size() const noexcept { return entries_.size(); }
    Entry& operator[](std::size_t i) const { return *entries_[i]; }

    /// Each gateway's circuit, in order of preference.
    std::vector<GatewayHealth> health(domain::Timestamp now) const;

private:
    Gateways() = default;
    std::vector<std::unique_ptr<Entry>> entries_;
};

/// The failover rule: an invoice's new attempt may go to another gateway than
/// its last attempt's only when that attempt's key is resolved (neither
/// REQUESTED nor UNKNOWN): an unresolved key holds the invoice at its gateway.
bool may_move_to_another_gateway(domain::Payment const& last_attempt) noexcept;

/// The gateway for an invoice's new attempt: the last attempt's while the
/// failover rule holds the invoice there, else the first usable one.
std::string route_new_attempt(Gateways const& gateways, domain::Timestamp now, domain::Payment const* last_attempt);

/// The breaker's rule for answers: TRANSIENT and UNKNOWN_OUTCOME (and no
/// answer in time) are the provider's failures; a charge, a decline or a
/// card-level failure (ChargeAnswer::card_level) is the provider working. A
/// refusal by the adapter's own limit (ChargeAnswer::over_limit) is neither:
/// the processor does not count it at all (CircuitBreaker::forgo).
bool is_provider_failure(ChargeAnswer const& answer) noexcept;

} // namespace payments::application
