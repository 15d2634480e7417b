#include <payments/domain/invoice.hpp>

#include <boost/assert.hpp>

#include <algorithm>

namespace payments::domain {

std::string_view to_string(InvoiceStatus status) noexcept {
    switch (status) {
    case InvoiceStatus::pending: return "PENDING";
    case InvoiceStatus::processing: return "PROCESSING";
    case InvoiceStatus::paid: return "PAID";
    case InvoiceStatus::failed: return "FAILED";
    case InvoiceStatus::needs_review: return "NEEDS_REVIEW";
    }
    return "UNKNOWN";
}

Result<InvoiceStatus> parse_invoice_status(std::string_view text) {
    for (auto status : invoice_statuses)
        if (to_string(status) == text) return status;
    return reject(ErrorCode::invalid_argument, "status must be one of PENDING, PROCESSING, PAID, FAILED, NEEDS_REVIEW");
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

Invoice::Invoice(InvoiceSnapshot&& s)
    : id_(std::move(s.id)), amount_(s.amount), description_(std::move(s.description)), status_(s.status),
      attempts_(std::move(s.attempts)), cycle_start_(s.cycle_start), current_method_(std::move(s.current_method)),
      next_retry_at_(s.next_retry_at), last_failure_(std::move(s.last_failure)), paid_by_(std::move(s.paid_by)),
      review_reason_(std::move(s.review_reason)), under_review_(std::move(s.under_review)), created_at_(s.created_at),
      updated_at_(s.updated_at), version_(s.version) {}

Invoice Invoice::restore(InvoiceSnapshot snapshot) { return Invoice(std::move(snapshot)); }

InvoiceSnapshot Invoice::snapshot() const {
    return {id_,          amount_,        description_,  status_,        attempts_,
            cycle_start_, current_method_, next_retry_at_, last_failure_, paid_by_,
            review_reason_, under_review_, created_at_,   updated_at_,    version_};
}

Result<PaymentRequested> Invoice::request_payment(NewAttempt attempt, std::string payment_method,
                                                  EventMeta const& meta) const {
    switch (status_) {
    case InvoiceStatus::paid:
        return reject(ErrorCode::invoice_already_paid, "invoice " + std::string(id_.str()) + " is already PAID");
    case InvoiceStatus::processing:
        return reject(ErrorCode::payment_in_progress, "invoice " + std::string(id_.str()) + " has a payment in progress");
    case InvoiceStatus::needs_review:
        return reject(ErrorCode::invalid_state,
                      "invoice " + std::string(id_.str()) + " needs an operator's review before it can be paid");
    case InvoiceStatus::pending:
    case InvoiceStatus::failed: break;
    }
    if (!payment_method.empty() && !is_valid_id(payment_method))
        return reject(ErrorCode::invalid_argument, "payment method must be 1-64 characters of A-Z a-z 0-9 _ -");
    BOOST_ASSERT(!attempt.gateway_key.empty());
    return PaymentRequested{event_envelope(meta, std::move(attempt.id), current_attempt() + 1), amount_,
                            std::move(payment_method), std::move(attempt.gateway_key), meta.now,
                            std::move(attempt.gateway)};
}

EventEnvelope Invoice::event_envelope(EventMeta const& meta, PaymentId payment_id, int attempt) const {
    return {meta.id, meta.now, meta.correlation_id, id_, std::move(payment_id), attempt};
}

Result<void> Invoice::require_current(EventEnvelope const& outcome) const {
    // NEEDS_REVIEW still takes the answer it waited for: a definitive answer
    // that arrives late settles the invoice without the operator.
    bool const waiting = status_ == InvoiceStatus::processing ||
                         (status_ == InvoiceStatus::needs_review && under_review_ == current_payment());
    if (!waiting)
        return reject(ErrorCode::invalid_state,
                      "invoice " + std::string(id_.str()) + " is " + std::string(to_string(status_)) + ", not PROCESSING");
    if (outcome.payment_id != current_payment())
        return reject(ErrorCode::stale_attempt, "payment " + std::string(outcome.payment_id.str()) + " is not the current attempt");
    return {};
}

Result<Invoice::AfterSuccess> Invoice::settle_success(PaymentSucceeded const& succeeded, EventMeta const& meta) const {
    if (auto ok = require_current(succeeded.envelope); !ok) return ok.error();
    EventEnvelope envelope = event_envelope(meta, succeeded.envelope.payment_id, succeeded.envelope.attempt);
    if (succeeded.amount != amount_) {
        return AfterSuccess{InvoiceNeedsReview{std::move(envelope), "the gateway charged " + succeeded.amount.to_string() +
                                                                        ", the invoice is for " + amount_.to_string()}};
    }
    return AfterSuccess{InvoicePaid{std::move(envelope), amount_}};
}

Result<Invoice::AfterFailure> Invoice::settle_failure(PaymentFailed const& failed, RetryPolicy const& policy,
                                                      Random& random, NewAttempt next, EventMeta const& meta) const {
    if (auto ok = require_current(failed.envelope); !ok) return ok.error();
    Failure const& failure = failed.failure;
    if (failure.kind == FailureKind::unknown_outcome) {
        if (status_ == InvoiceStatus::needs_review)
            return reject(ErrorCode::invalid_state, "the attempt under review is already unknown");
        return AfterFailure{AwaitingAnswer{}};
    }
    // Under review, the operator's attention has passed: a definitive failure ends the cycle.
    bool const gives_up = status_ == InvoiceStatus::needs_review || !RetryPolicy::retryable(failure.kind) ||
                          cycle_attempts() >= policy.max_attempts;
    if (gives_up) {
        Failure final_failure = failure;
        if (RetryPolicy::retryable(failure.kind) && status_ == InvoiceStatus::processing)
            final_failure.reason = "gave up after " + std::to_string(cycle_attempts()) + " attempts: " + failure.reason;
        return AfterFailure{InvoiceFailed{event_envelope(meta, failed.envelope.payment_id, failed.envelope.attempt),
                                          std::move(final_failure)}};
    }
    BOOST_ASSERT(!next.gateway_key.empty());
    Timestamp const due = meta.now + policy.delay(cycle_attempts(), random);
    return AfterFailure{PaymentRequested{event_envelope(meta, std::move(next.id), current_attempt() + 1), amount_,
                                         current_method_, std::move(next.gateway_key), due,
                                         std::move(next.gateway)}};
}

Result<InvoiceNeedsReview> Invoice::require_review(PaymentId const& payment_id, std::string reason,
                                                   EventMeta const& meta) const {
    auto const found = std::find(attempts_.begin(), attempts_.end(), payment_id);
    if (found == attempts_.end())
        return reject(ErrorCode::not_found, "invoice " + std::string(id_.str()) + " has no attempt " +
                                                std::string(payment_id.str()));
    int const attempt = static_cast<int>(found - attempts_.begin()) + 1;
    return InvoiceNeedsReview{event_envelope(meta, payment_id, attempt), std::move(reason)};
}

Result<Invoice::AfterReview> Invoice::resolve_review(ReviewDecision const& decision,
                                                     std::optional<PaymentId> const& paid_by_another,
                                                     EventMeta const& meta) const {
    if (status_ != InvoiceStatus::needs_review)
        return reject(ErrorCode::invalid_state,
                      "invoice " + std::string(id_.str()) + " is " + std::string(to_string(status_)) + ", not NEEDS_REVIEW");
    if (decision.charged && decision.reference.empty())
        return reject(ErrorCode::invalid_argument, "a charge needs the provider's reference");
    auto attempt_of = [&](PaymentId const& id) {
        return static_cast<int>(std::find(attempts_.begin(), attempts_.end(), id) - attempts_.begin()) + 1;
    };
    if (paid_by_another)
        return AfterReview{InvoicePaid{event_envelope(meta, *paid_by_another, attempt_of(*paid_by_another)), amount_}};
    EventEnvelope envelope = event_envelope(meta, under_review_, attempt_of(under_review_));
    if (decision.charged) return AfterReview{InvoicePaid{std::move(envelope), amount_}};
    return AfterReview{InvoiceFailed{std::move(envelope),
                                     {FailureKind::transient, "an operator found no charge at the provider"}}};
}

void Invoice::apply(PaymentRequested const& event) {
    BOOST_ASSERT(event.envelope.attempt == current_attempt() + 1);
    if (status_ != InvoiceStatus::processing) cycle_start_ = event.envelope.attempt;
    status_ = InvoiceStatus::processing;
    attempts_.push_back(event.envelope.payment_id);
    current_method_ = event.payment_method;
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
    BOOST_ASSERT(status_ == InvoiceStatus::processing || status_ == InvoiceStatus::needs_review);
    status_ = InvoiceStatus::paid;
    paid_by_ = event.envelope.payment_id;
    review_reason_.clear();
    under_review_ = {};
    next_retry_at_.reset();
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

void Invoice::apply(InvoiceFailed const& event) {
    BOOST_ASSERT(status_ == InvoiceStatus::processing || status_ == InvoiceStatus::needs_review);
    status_ = InvoiceStatus::failed;
    last_failure_ = event.failure;
    review_reason_.clear();
    under_review_ = {};
    next_retry_at_.reset();
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

void Invoice::apply(InvoiceNeedsReview const& event) {
    if (status_ == InvoiceStatus::needs_review) {
        review_reason_ += "; then: " + event.reason;
    } else {
        status_ = InvoiceStatus::needs_review;
        review_reason_ = event.reason;
        under_review_ = event.envelope.payment_id;
    }
    next_retry_at_.reset();
    updated_at_ = event.envelope.occurred_at;
    ++version_;
}

} // namespace payments::domain
