#pragma once
// The domain events: facts the aggregates decided, in one variant so that the
// bus, the stores and (later) the outbox handle every kind the same way.

#include <payments/domain/ids.hpp>
#include <payments/domain/money.hpp>
#include <payments/domain/time.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

namespace payments::domain {

/// What a caller supplies to every decision: the new event's id, the
/// correlation id of the request that caused it, and the current time.
struct EventMeta {
    EventId id;
    CorrelationId correlation_id;
    Timestamp now;
};

/// The header every event carries.
struct EventEnvelope {
    EventId id;
    Timestamp occurred_at;
    CorrelationId correlation_id;
    InvoiceId invoice_id;
    PaymentId payment_id; ///< empty for events of the invoice alone
    int attempt = 0;      ///< the attempt number, 1-based; 0 where none applies

    friend bool operator==(EventEnvelope const&, EventEnvelope const&) = default;
};

/// How a payment attempt failed, which decides whether it may be retried.
enum class FailureKind {
    declined,        ///< final: the issuer said no
    transient,       ///< retryable: nothing was charged (gateway unavailable, rate limited)
    unknown_outcome, ///< not known: the gateway may have charged; only a definitive answer about its key settles it
};

/// "DECLINED", "TRANSIENT", "UNKNOWN_OUTCOME".
std::string_view to_string(FailureKind kind) noexcept;

/// Why an attempt or an invoice failed.
struct Failure {
    FailureKind kind{};
    std::string reason;

    friend bool operator==(Failure const&, Failure const&) = default;
};

/// An invoice was issued.
struct InvoiceCreated {
    EventEnvelope envelope;
    Money amount;
    std::string description;

    friend bool operator==(InvoiceCreated const&, InvoiceCreated const&) = default;
};

/// A payment attempt was requested; delivered at `not_before` (later than
/// `occurred_at` for a scheduled retry).
struct PaymentRequested {
    EventEnvelope envelope;
    Money amount;
    std::string payment_method;
    std::string gateway_key; ///< the idempotency key sent to the gateway
    Timestamp not_before;
    /// The name of the gateway that takes the attempt, chosen before it was
    /// requested and recorded with it: its charge, look-ups and late answers
    /// all go to that gateway (empty: the first configured one).
    std::string gateway = {};

    friend bool operator==(PaymentRequested const&, PaymentRequested const&) = default;
};

/// The gateway charged the attempt.
struct PaymentSucceeded {
    EventEnvelope envelope;
    Money amount; ///< what the gateway says it charged
    std::string gateway_reference;

    friend bool operator==(PaymentSucceeded const&, PaymentSucceeded const&) = default;
};

/// The attempt failed.
struct PaymentFailed {
    EventEnvelope envelope;
    Failure failure;

    friend bool operator==(PaymentFailed const&, PaymentFailed const&) = default;
};

/// The invoice was settled by the payment in the envelope.
struct InvoicePaid {
    EventEnvelope envelope;
    Money amount;

    friend bool operator==(InvoicePaid const&, InvoicePaid const&) = default;
};

/// The invoice gave up: a decline, or retries exhausted.
struct InvoiceFailed {
    EventEnvelope envelope;
    Failure failure;

    friend bool operator==(InvoiceFailed const&, InvoiceFailed const&) = default;
};

/// The invoice needs an operator: its outcome could not be settled by the
/// library (an answer never became definitive within the verification limit,
/// the provider charged another amount, or a definitive answer contradicted
/// what was recorded). The envelope names the attempt in question.
struct InvoiceNeedsReview {
    EventEnvelope envelope;
    std::string reason;

    friend bool operator==(InvoiceNeedsReview const&, InvoiceNeedsReview const&) = default;
};

/// Any domain event.
using Event = std::variant<InvoiceCreated, PaymentRequested, PaymentSucceeded, PaymentFailed, InvoicePaid,
                           InvoiceFailed, InvoiceNeedsReview>;

/// The number of event kinds, and the index of each in `Event`.
inline constexpr std::size_t event_kinds = std::variant_size_v<Event>;

template <class E, std::size_t I = 0>
constexpr std::size_t event_index() {
    static_assert(I < event_kinds, "not a domain event");
    if constexpr (std::is_same_v<E, std::variant_alternative_t<I, Event>>)
        return I;
    else
        return event_index<E, I + 1>();
}

EventEnvelope const& envelope_of(Event const& event) noexcept;

/// "PaymentRequested" and so on: for logs and metrics labels.
std::string_view event_name(Event const& event) noexcept;

} // namespace payments::domain
