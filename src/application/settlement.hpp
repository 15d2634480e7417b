#pragma once
// What one gateway answer does to an attempt and its invoice: the decision,
// apart from loading, committing and publishing (PaymentProcessor does those).

#include <payments/application/metrics.hpp>
#include <payments/application/ports.hpp>
#include <payments/domain/retry_policy.hpp>

#include <optional>
#include <string>
#include <vector>

namespace payments::application {

struct Settlement {
    std::vector<domain::Event> published;
    std::optional<domain::PaymentRequested> retry; ///< the next attempt, to schedule
    std::optional<ReviewCause> review;             ///< the invoice needs an operator
    std::string review_reason;
};

/// The event that asks for an attempt again, rebuilt from what the store keeps.
domain::PaymentRequested request_of(domain::Payment const& payment, domain::EventMeta const& meta);

/// A look-up's or a notice's status as an answer, if it is definitive
/// (charged or declined).
std::optional<ChargeAnswer> definitive_answer(ChargeStatus const& status);

/// Decides on the aggregates as loaded and applies what it decided to them.
/// An answer for a payment already settled changes nothing unless it
/// contradicts the record: then the invoice is put before an operator.
Settlement decide_settlement(Ports const& ports, domain::RetryPolicy const& policy, domain::Payment& payment,
                             domain::Invoice& invoice, ChargeAnswer const& outcome,
                             domain::CorrelationId const& correlation_id);

} // namespace payments::application
