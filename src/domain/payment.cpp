#include <payments/domain/payment.hpp>

#include <boost/assert.hpp>

namespace payments::domain {

std::string_view to_string(PaymentStatus status) noexcept {
    switch (status) {
    case PaymentStatus::requested: return "REQUESTED";
    case PaymentStatus::succeeded: return "SUCCEEDED";
    case PaymentStatus::failed: return "FAILED";
    }
    return "UNKNOWN";
}

Payment::Payment(PaymentRequested const& requested)
    : id_(requested.envelope.payment_id), invoice_id_(requested.envelope.invoice_id),
      attempt_(requested.envelope.attempt), amount_(requested.amount), payment_method_(requested.payment_method),
      gateway_key_(requested.gateway_key), not_before_(requested.not_before),
      created_at_(requested.envelope.occurred_at), updated_at_(requested.envelope.occurred_at) {}

Payment Payment::from(PaymentRequested const& requested) {
    BOOST_ASSERT(!requested.envelope.payment_id.empty());
    return Payment(requested);
}

Result<void> Payment::require_requested() const {
    if (status_ != PaymentStatus::requested)
        return reject(ErrorCode::invalid_state,
                      "payment " + std::string(id_.str()) + " is already " + std::string(to_string(status_)));
    return {};
}

EventEnvelope Payment::envelope(EventMeta const& meta) const {
    return {meta.id, meta.now, meta.correlation_id, invoice_id_, id_, attempt_};
}

Result<PaymentSucceeded> Payment::succeed(std::string gateway_reference, EventMeta const& meta) const {
    if (auto ok = require_requested(); !ok) return ok.error();
    return PaymentSucceeded{envelope(meta), amount_, std::move(gateway_reference)};
}

Result<PaymentFailed> Payment::fail(Failure failure, EventMeta const& meta) const {
    if (auto ok = require_requested(); !ok) return ok.error();
    return PaymentFailed{envelope(meta), std::move(failure)};
}

void Payment::apply(PaymentSucceeded const& event) {
    BOOST_ASSERT(event.envelope.payment_id == id_ && status_ == PaymentStatus::requested);
    status_ = PaymentStatus::succeeded;
    gateway_reference_ = event.gateway_reference;
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

void Payment::apply(PaymentFailed const& event) {
    BOOST_ASSERT(event.envelope.payment_id == id_ && status_ == PaymentStatus::requested);
    status_ = PaymentStatus::failed;
    failure_ = event.failure;
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

} // namespace payments::domain
