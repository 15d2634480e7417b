#pragma once

#include <payments/domain/events.hpp>
#include <payments/domain/ids.hpp>
#include <payments/domain/money.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

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

/// What the gateway answered a charge: a reference and the amount it says it
/// took, or a failure. A non-final answer ("processing") is an
/// UNKNOWN_OUTCOME failure: the charge may still happen.
struct ChargeAnswer {
    std::string reference;
    std::optional<domain::Money> charged; ///< on success: the amount and currency the gateway took
    std::optional<domain::Failure> failure;
    /// A TRANSIENT or UNKNOWN_OUTCOME failure that is the card's or the
    /// issuer's answer (a 402 processing error), not the provider failing:
    /// the gateway's circuit breaker does not count it.
    bool card_level = false;
    /// Refused by the adapter's own limit (calls in flight) before anything
    /// was sent: a TRANSIENT failure that is neither the provider failing nor
    /// the provider working, and safe to send again, here or at another
    /// gateway. The circuit breaker does not count it; the processor holds
    /// the attempt until the gateway has room, failing nothing and using no
    /// retry (see ProcessorOptions::over_limit_wait).
    bool over_limit = false;

    static ChargeAnswer success(std::string reference, domain::Money charged) {
        return {std::move(reference), charged, std::nullopt};
    }
    static ChargeAnswer failed(domain::FailureKind kind, std::string reason) {
        return {{}, std::nullopt, domain::Failure{kind, std::move(reason)}};
    }
    /// A retryable failure the card or its issuer answered (see card_level).
    static ChargeAnswer failed_at_card(domain::FailureKind kind, std::string reason) {
        ChargeAnswer answer = failed(kind, std::move(reason));
        answer.card_level = true;
        return answer;
    }
    /// Not sent: the adapter's own limit refused the charge (see over_limit).
    static ChargeAnswer refused_over_limit(std::string reason) {
        ChargeAnswer answer = failed(domain::FailureKind::transient, std::move(reason));
        answer.over_limit = true;
        return answer;
    }
    bool succeeded() const noexcept { return !failure.has_value(); }
    /// Charged or declined: the answer settles the attempt whenever it arrives.
    bool definitive() const noexcept { return !failure || failure->kind == domain::FailureKind::declined; }
};

/// What a gateway holds for one idempotency key, as a look-up finds it.
struct ChargeStatus {
    /// The provider's record of the key.
    enum class State {
        charged,  ///< booked: `reference` and `charged` say what was taken
        declined, ///< refused for good: nothing was taken
        pending,  ///< not final yet (the provider is still processing it): ask again later
        absent,   ///< no record of the key. Providers book late and their search lags,
                  ///< so this is final only once the settle window has passed.
    };
    State state = State::absent;
    std::string reference;
    std::optional<domain::Money> charged;
    std::string reason; ///< declined: why

    static ChargeStatus booked(std::string reference, domain::Money charged) {
        return {State::charged, std::move(reference), charged, {}};
    }
    static ChargeStatus refused(std::string reason) { return {State::declined, {}, std::nullopt, std::move(reason)}; }
    static ChargeStatus processing() { return {State::pending, {}, std::nullopt, {}}; }
    static ChargeStatus not_found() { return {State::absent, {}, std::nullopt, {}}; }
};

/// "CHARGED", "DECLINED", "PENDING", "ABSENT".
std::string_view to_string(ChargeStatus::State state) noexcept;

/// A payment service provider. charge() returns at once; `on_answer` is
/// called at most once, on any thread, perhaps never, and perhaps after the
/// caller's timeout (the caller owns the timeout and still takes a late
/// answer). A repeated idempotency key must never charge twice.
class PaymentGateway {
public:
    virtual ~PaymentGateway() = default;
    virtual void charge(ChargeRequest request, std::function<void(ChargeAnswer)> on_answer) = 0;

    /// What the gateway holds for this idempotency key. Same contract as
    /// charge(): at most once, on any thread, perhaps never.
    virtual void lookup(std::string idempotency_key, std::function<void(ChargeStatus)> on_answer) = 0;
};

/// A gateway and the name it goes by in logs, metrics and configuration
/// ("stripe", "adyen", "simulated"). A list of them is in preference order.
struct NamedGateway {
    std::string name;
    std::shared_ptr<PaymentGateway> gateway;
};

} // namespace payments::application
