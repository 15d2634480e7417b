#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/payment_gateway.hpp>
#include <payments/application/scheduler.hpp>
#include <payments/infrastructure/seeded_random.hpp>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace payments::infrastructure {

/// Outcomes of the simulated gateway for payment methods that do not name one.
struct SimulatedGatewayOptions {
    double decline_rate = 0.0;   ///< answers DECLINED
    double transient_rate = 0.0; ///< answers TRANSIENT, charges nothing
    double timeout_rate = 0.0;   ///< never answers, charges nothing
    double lost_response_rate = 0.0; ///< charges, but the answer is lost (a timeout after charging)
    domain::Duration latency_min{0};
    domain::Duration latency_max{0};
    std::uint64_t seed = 1;
};

/// A successful charge in the gateway's own ledger.
struct GatewayCharge {
    std::string idempotency_key;
    domain::InvoiceId invoice_id;
    domain::PaymentId payment_id;
    domain::Money amount;
    std::string reference;
};

/// A payment service provider in memory, deterministic for a seed. Like a real
/// one it honours idempotency keys: a key that was answered is answered the
/// same way again, and never charges twice. Test payment methods:
///
/// | method                | outcome                                                  |
/// |-----------------------|----------------------------------------------------------|
/// | pm_card_ok            | charged                                                  |
/// | pm_card_declined      | DECLINED                                                 |
/// | pm_card_flaky_N       | TRANSIENT for the invoice's first N calls (1-9), then charged |
/// | pm_card_unavailable   | always TRANSIENT                                         |
/// | pm_card_timeout       | never answers, charges nothing                           |
/// | pm_card_lost_response | charges, but the first answer is lost                    |
/// | (empty), pm_card_random | the configured rates                                   |
/// | anything else         | DECLINED: unknown payment method                         |
class SimulatedGateway final : public application::PaymentGateway {
public:
    SimulatedGateway(application::Scheduler& scheduler, application::Clock const& clock,
                     SimulatedGatewayOptions options = {});

    void charge(application::ChargeRequest request,
                std::function<void(application::ChargeOutcome)> on_outcome) override;
    /// Answers from the gateway's own records, after the configured latency; never fails.
    void lookup(std::string idempotency_key,
                std::function<void(std::optional<application::ChargeOutcome>)> on_answer) override;

    /// Replaces the rates and latency (the simulation stops its faults this way);
    /// answers already given for a key stay as they were.
    void set_options(SimulatedGatewayOptions options);

    /// Every successful charge, in order.
    std::vector<GatewayCharge> ledger() const;
    /// Successful charges of one invoice: more than one is a double charge.
    std::size_t charges_for(domain::InvoiceId const& invoice) const;
    /// charge() calls received, answered or not.
    std::size_t calls() const;
    /// The idempotency keys of charge() calls in arrival order.
    std::vector<std::string> keys_seen() const;

private:
    struct Decision {
        std::optional<application::ChargeOutcome> answer; // empty: never answers
    };

    Decision decide_locked(application::ChargeRequest const& request);
    domain::Duration latency_locked();
    application::ChargeOutcome charge_locked(application::ChargeRequest const& request);

    application::Scheduler& scheduler_;
    application::Clock const& clock_;
    SimulatedGatewayOptions options_; // Owned by: mutex_
    SeededRandom random_;

    mutable std::mutex mutex_;
    std::vector<GatewayCharge> ledger_;                                     // Owned by: mutex_
    std::unordered_map<std::string, application::ChargeOutcome> answered_; // Owned by: mutex_; by key
    std::unordered_map<domain::InvoiceId, int> transient_failures_;         // Owned by: mutex_
    std::vector<std::string> keys_seen_;                                    // Owned by: mutex_
};

} // namespace payments::infrastructure
