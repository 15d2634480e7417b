#pragma once

#include <payments/application/circuit_breaker.hpp>
#include <payments/domain/events.hpp>
#include <payments/domain/invoice.hpp>
#include <payments/domain/time.hpp>

#include <optional>
#include <string_view>

namespace payments::application {

/// Why an invoice was put before an operator (NEEDS_REVIEW).
enum class ReviewCause {
    unresolved,      ///< no definitive answer within the verification limit
    amount_mismatch, ///< the gateway charged another amount or currency
    contradiction,   ///< a definitive answer contradicts what was recorded (an alert)
};

/// "unresolved", "amount_mismatch", "contradiction".
std::string_view to_string(ReviewCause cause) noexcept;

/// What the processor's janitor found that nothing was driving any more.
enum class JanitorFinding {
    stalled_attempt, ///< REQUESTED, due, and neither at the gateway nor queued (a lost or dead-lettered request)
    unverified,      ///< UNKNOWN with no look-up pending
};

/// "stalled_attempt", "unverified".
std::string_view to_string(JanitorFinding finding) noexcept;

/// What the use cases count. Implementations are thread-safe and cheap.
class Metrics {
public:
    virtual ~Metrics() = default;

    virtual void payment_requested() = 0;
    virtual void payment_succeeded() = 0;
    virtual void payment_failed(domain::FailureKind kind) = 0;
    virtual void retry_scheduled() = 0;
    /// A redelivered or duplicated PaymentRequested that did not reach the gateway.
    virtual void duplicate_delivery() = 0;
    /// An invoice entered `to` (from nothing, for a new invoice).
    virtual void invoice_status_changed(std::optional<domain::InvoiceStatus> from, domain::InvoiceStatus to) = 0;
    virtual void gateway_latency(domain::Duration elapsed) = 0;
    /// The gateway was asked what became of an attempt whose outcome was unknown.
    virtual void outcome_verification() = 0;
    /// A gateway answered a charge after its timeout; the answer was still used.
    virtual void late_answer() = 0;
    /// An invoice was put before an operator.
    virtual void review_required(ReviewCause cause) = 0;
    /// The janitor re-drove an attempt.
    virtual void janitor_redrove(JanitorFinding finding) = 0;
    // The circuits' figures; an application's Metrics may leave them out.
    /// A gateway's circuit is in `state` (at start, and after each change).
    virtual void gateway_circuit(std::string_view /*gateway*/, CircuitState /*state*/) {}
    /// A gateway's circuit changed state.
    virtual void gateway_circuit_transition(std::string_view /*gateway*/, CircuitTransition /*transition*/) {}
    /// An attempt was held back, to be charged later, because its gateway's circuit was open.
    virtual void charge_deferred(std::string_view /*gateway*/) {}
};

} // namespace payments::application
