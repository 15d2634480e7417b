#pragma once

#include <payments/domain/events.hpp>
#include <payments/domain/ids.hpp>
#include <payments/domain/money.hpp>

#include <functional>
#include <optional>
#include <string>

namespace payments::application {

/// One charge, identified at the gateway by its idempotency key.
struct ChargeRequest {
    domain::PaymentId payment_id;
    domain::InvoiceId invoice_id;
    std::string idempotency_key;
    domain::Money amount;
    std::string payment_method;
    domain::CorrelationId correlation_id;
};

/// What the gateway answered: a reference on success, else a failure.
struct ChargeOutcome {
    std::string reference;
    std::optional<domain::Failure> failure;

    static ChargeOutcome charged(std::string reference) { return {std::move(reference), std::nullopt}; }
    static ChargeOutcome failed(domain::FailureKind kind, std::string reason) {
        return {{}, domain::Failure{kind, std::move(reason)}};
    }
    bool succeeded() const noexcept { return !failure.has_value(); }
};

/// A payment service provider. charge() returns at once; `on_outcome` is
/// called at most once, on any thread, and perhaps never (the caller owns the
/// timeout). A repeated idempotency key must never charge twice.
class PaymentGateway {
public:
    virtual ~PaymentGateway() = default;
    virtual void charge(ChargeRequest request, std::function<void(ChargeOutcome)> on_outcome) = 0;

    /// What became of the charge with this idempotency key: its final answer
    /// (charged or declined), or nothing if the gateway holds no such charge.
    /// Same contract as charge(): at most once, on any thread, perhaps never.
    virtual void lookup(std::string idempotency_key,
                        std::function<void(std::optional<ChargeOutcome>)> on_answer) = 0;
};

} // namespace payments::application
