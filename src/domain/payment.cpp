#include <payments/domain/payment.hpp>

#include <boost/assert.hpp>

namespace payments::domain {

std::string_view to_string(PaymentStatus status) noexcept {
    switch (status) {
    case PaymentStatus::requested: return "REQUESTED";
    case PaymentStatus::succeeded: return "SUCCEEDED";
    case PaymentStatus::failed: return "FAILED";
    case PaymentStatus::unknown: return "UNKNOWN";
    }
    return "UNKNOWN";
}

Payment::Payment(PaymentRequested const& requested)
    : id_(requested.envelope.payment_id), invoice_id_(requested.envelope.invoice_id),
      attempt_(requested.envelope.attempt), amount_(requested.amount), payment_method_(requested.payment_method),
      gateway_key_(requested.gateway_key), gateway_(requested.gateway), correlation_id_(requested.envelope.correlation_id), not_before_(requested.not_before),
      created_at_(requested.envelope.occurred_at), updated_at_(requested.envelope.occurred_at) {}

Payment Payment::from(PaymentRequested const& requested) {
    BOOST_ASSERT(!requested.envelope.payment_id.empty());
    return Payment(requested);
}

Payment::Payment(PaymentSnapshot&& s)
    : id_(std::move(s.id)), invoice_id_(std::move(s.invoice_id)), attempt_(s.attempt), amount_(s.amount),
      payment_method_(std::move(s.payment_method)), gateway_key_(std::move(s.gateway_key)),
      correlation_id_(std::move(s.correlation_id)), status_(s.status), failure_(std::move(s.failure)),
      gateway_reference_(std::move(s.gateway_reference)), unknown_since_(s.unknown_since), not_before_(s.not_before),
      created_at_(s.created_at), updated_at_(s.updated_at), version_(s.version) {
    gateway_ = std::move(s.gateway);
}

Payment Payment::restore(PaymentSnapshot snapshot) { return Payment(std::move(snapshot)); }

PaymentSnapshot Payment::snapshot() const {
    return {id_,        invoice_id_,         attempt_,      amount_,       payment_method_,
            gateway_key_, correlation_id_,   status_,       failure_,      gateway_reference_,
            unknown_since_, not_before_,     created_at_,   updated_at_,   version_,
            gateway_};
}

Result<void> Payment::require_open() const {
    if (status_ != PaymentStatus::requested && status_ != PaymentStatus::unknown)
        return reject(ErrorCode::invalid_state,
                      "payment " + std::string(id_.str()) + " is already " + std::string(to_string(status_)));
    return {};
}

EventEnvelope Payment::envelope(EventMeta const& meta) const {
    return {meta.id, meta.now, meta.correlation_id, invoice_id_, id_, attempt_};
}

Result<PaymentSucceeded> Payment::succeed(std::string gateway_reference, Money charged, EventMeta const& meta) const {
    if (auto ok = require_open(); !ok) return ok.error();
    return PaymentSucceeded{envelope(meta), charged, std::move(gateway_reference)};
}

Result<PaymentFailed> Payment::fail(Failure failure, EventMeta const& meta) const {
    if (auto ok = require_open(); !ok) return ok.error();
    // A second "we do not know" adds nothing: the payment waits for a definitive answer.
    if (failure.kind == FailureKind::unknown_outcome && status_ == PaymentStatus::unknown)
        return reject(ErrorCode::invalid_state, "payment " + std::string(id_.str()) + " is already UNKNOWN");
    return PaymentFailed{envelope(meta), std::move(failure)};
}

Result<PaymentSucceeded> Payment::confirm_charged(std::string gateway_reference, Money charged,
                                                  EventMeta const& meta) const {
    if (status_ == PaymentStatus::succeeded)
        return reject(ErrorCode::invalid_state, "payment " + std::string(id_.str()) + " is already SUCCEEDED");
    return PaymentSucceeded{envelope(meta), charged, std::move(gateway_reference)};
}

Result<PaymentFailed> Payment::confirm_not_charged(std::string reason, EventMeta const& meta) const {
    if (status_ == PaymentStatus::failed)
        return reject(ErrorCode::invalid_state, "payment " + std::string(id_.str()) + " is already FAILED");
    return PaymentFailed{envelope(meta), {FailureKind::transient, std::move(reason)}};
}

void Payment::apply(PaymentSucceeded const& event) {
    BOOST_ASSERT(event.envelope.payment_id == id_ && status_ != PaymentStatus::succeeded);
    status_ = PaymentStatus::succeeded;
    failure_.reset();
    gateway_reference_ = event.gateway_reference;
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

void Payment::apply(PaymentFailed const& event) {
    BOOST_ASSERT(event.envelope.payment_id == id_ && status_ != PaymentStatus::failed);
    if (event.failure.kind == FailureKind::unknown_outcome) {
        status_ = PaymentStatus::unknown;
        unknown_since_ = event.envelope.occurred_at;
    } else {
        status_ = PaymentStatus::failed;
    }
    failure_ = event.failure;
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

} // namespace payments::domain
