#include <payments/domain/invoice.hpp>

#include <boost/assert.hpp>

namespace payments::domain {

std::string_view to_string(InvoiceStatus status) noexcept {
    switch (status) {
    case InvoiceStatus::pending: return "PENDING";
    case InvoiceStatus::processing: return "PROCESSING";
    case InvoiceStatus::paid: return "PAID";
    case InvoiceStatus::failed: return "FAILED";
    }
    return "UNKNOWN";
}

Result<InvoiceStatus> parse_invoice_status(std::string_view text) {
    for (auto status : {InvoiceStatus::pending, InvoiceStatus::processing, InvoiceStatus::paid, InvoiceStatus::failed})
        if (to_string(status) == text) return status;
    return reject(ErrorCode::invalid_argument, "status must be one of PENDING, PROCESSING, PAID, FAILED");
}

Result<InvoiceCreated> Invoice::create(InvoiceId id, Money amount, std::string description, EventMeta const& meta) {
    if (id.empty()) return reject(ErrorCode::invalid_argument, "an invoice needs an id");
    if (amount.minor_units() <= 0) return reject(ErrorCode::invalid_amount, "an invoice must be for a positive amount");
    if (description.size() > max_description)
        return reject(ErrorCode::invalid_argument, "description must be at most 1024 bytes");
    return InvoiceCreated{{meta.id, meta.now, meta.correlation_id, std::move(id), {}, 0}, amount, std::move(description)};
}

Invoice::Invoice(InvoiceCreated const& created)
    : id_(created.envelope.invoice_id), amount_(created.amount), description_(created.description),
      created_at_(created.envelope.occurred_at), updated_at_(created.envelope.occurred_at) {}

Invoice Invoice::from(InvoiceCreated const& created) { return Invoice(created); }

Result<PaymentRequested> Invoice::request_payment(PaymentId payment_id, std::string payment_method,
                                                  EventMeta const& meta) const {
    switch (status_) {
    case InvoiceStatus::paid:
        return reject(ErrorCode::invoice_already_paid, "invoice " + std::string(id_.str()) + " is already PAID");
    case InvoiceStatus::processing:
        return reject(ErrorCode::payment_in_progress, "invoice " + std::string(id_.str()) + " has a payment in progress");
    case InvoiceStatus::pending:
    case InvoiceStatus::failed: break;
    }
    if (!payment_method.empty() && !is_valid_id(payment_method))
        return reject(ErrorCode::invalid_argument, "payment method must be 1-64 characters of A-Z a-z 0-9 _ -");

    std::string gateway_key(payment_id.str());
    if (last_failure_ && reuses_gateway_key_after(*last_failure_)) {
        if (payment_method.empty()) payment_method = current_method_;
        if (payment_method != current_method_)
            return reject(ErrorCode::invalid_state,
                          "the outcome of the last attempt is unknown; retry it with the same payment method");
        gateway_key = current_gateway_key_;
    }
    int const attempt = current_attempt() + 1;
    return PaymentRequested{{meta.id, meta.now, meta.correlation_id, id_, std::move(payment_id), attempt},
                            amount_,
                            std::move(payment_method),
                            std::move(gateway_key),
                            meta.now};
}

bool Invoice::must_verify(FailureKind kind, RetryPolicy const& policy) const noexcept {
    return kind == FailureKind::unknown_outcome && status_ == InvoiceStatus::processing &&
           cycle_attempts() >= policy.max_attempts;
}

bool Invoice::reuses_gateway_key_after(Failure const& failure) const {
    // The gateway may have charged an attempt whose outcome we never learnt;
    // only the same key lets it answer that charge instead of making a second
    // one. A TRANSIENT answer to a reused key says nothing about the first
    // request, so the key is kept until an answer is definitive.
    if (failure.kind == FailureKind::unknown_outcome) return true;
    return failure.kind == FailureKind::transient && current_gateway_key_ != current_payment().str();
}

Result<void> Invoice::require_current(EventEnvelope const& outcome) const {
    if (status_ != InvoiceStatus::processing)
        return reject(ErrorCode::invalid_state,
                      "invoice " + std::string(id_.str()) + " is " + std::string(to_string(status_)) + ", not PROCESSING");
    if (outcome.payment_id != current_payment())
        return reject(ErrorCode::stale_attempt, "payment " + std::string(outcome.payment_id.str()) + " is not the current attempt");
    return {};
}

Result<InvoicePaid> Invoice::settle_success(PaymentSucceeded const& succeeded, EventMeta const& meta) const {
    if (auto ok = require_current(succeeded.envelope); !ok) return ok.error();
    if (succeeded.amount != amount_)
        return reject(ErrorCode::invalid_amount, "charged " + succeeded.amount.to_string() + ", owed " + amount_.to_string());
    return InvoicePaid{{meta.id, meta.now, meta.correlation_id, id_, succeeded.envelope.payment_id,
                        succeeded.envelope.attempt},
                       amount_};
}

Result<Invoice::AfterFailure> Invoice::settle_failure(PaymentFailed const& failed, RetryPolicy const& policy,
                                                      Random& random, PaymentId next_payment_id,
                                                      EventMeta const& meta) const {
    if (auto ok = require_current(failed.envelope); !ok) return ok.error();
    Failure const& failure = failed.failure;
    if (must_verify(failure.kind, policy))
        return reject(ErrorCode::invalid_state,
                      "the outcome of the last attempt is unknown: ask the gateway before giving up");
    if (!RetryPolicy::retryable(failure.kind) || cycle_attempts() >= policy.max_attempts) {
        Failure final_failure = failure;
        if (RetryPolicy::retryable(failure.kind))
            final_failure.reason = "gave up after " + std::to_string(cycle_attempts()) + " attempts: " + failure.reason;
        return AfterFailure{InvoiceFailed{{meta.id, meta.now, meta.correlation_id, id_, failed.envelope.payment_id,
                                           failed.envelope.attempt},
                                          std::move(final_failure)}};
    }
    std::string gateway_key = reuses_gateway_key_after(failure) ? current_gateway_key_ : std::string(next_payment_id.str());
    Timestamp const due = meta.now + policy.delay(cycle_attempts(), random);
    int const attempt = current_attempt() + 1;
    return AfterFailure{PaymentRequested{
        {meta.id, meta.now, meta.correlation_id, id_, std::move(next_payment_id), attempt},
        amount_,
        current_method_,
        std::move(gateway_key),
        due}};
}

void Invoice::apply(PaymentRequested const& event) {
    BOOST_ASSERT(event.envelope.attempt == current_attempt() + 1);
    if (status_ != InvoiceStatus::processing) cycle_start_ = event.envelope.attempt;
    status_ = InvoiceStatus::processing;
    attempts_.push_back(event.envelope.payment_id);
    current_method_ = event.payment_method;
    current_gateway_key_ = event.gateway_key;
    next_retry_at_.reset();
    if (event.not_before > event.envelope.occurred_at) next_retry_at_ = event.not_before;
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

void Invoice::apply(PaymentFailed const& event) {
    BOOST_ASSERT(event.envelope.payment_id == current_payment());
    last_failure_ = event.failure;
    next_retry_at_.reset();
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

void Invoice::apply(InvoicePaid const& event) {
    BOOST_ASSERT(status_ == InvoiceStatus::processing);
    status_ = InvoiceStatus::paid;
    paid_by_ = event.envelope.payment_id;
    next_retry_at_.reset();
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

void Invoice::apply(InvoiceFailed const& event) {
    BOOST_ASSERT(status_ == InvoiceStatus::processing);
    status_ = InvoiceStatus::failed;
    last_failure_ = event.failure;
    next_retry_at_.reset();
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

} // namespace payments::domain
