#pragma once

#include <payments/domain/events.hpp>
#include <payments/domain/random.hpp>
#include <payments/domain/retry_policy.hpp>
#include <payments/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace payments::domain {

/// PENDING → PROCESSING → PAID | FAILED; FAILED → PROCESSING on a manual retry.
/// Any status → NEEDS_REVIEW when the library cannot settle the invoice by
/// itself; an operator's decision (or a late definitive answer) takes it to
/// PAID or FAILED.
enum class InvoiceStatus { pending, processing, paid, failed, needs_review };

/// Every status, in declaration order.
inline constexpr InvoiceStatus invoice_statuses[] = {InvoiceStatus::pending, InvoiceStatus::processing,
                                                     InvoiceStatus::paid, InvoiceStatus::failed,
                                                     InvoiceStatus::needs_review};

/// "PENDING", "PROCESSING", "PAID", "FAILED", "NEEDS_REVIEW".
std::string_view to_string(InvoiceStatus status) noexcept;
/// The inverse of to_string; invalid_argument for anything else.
Result<InvoiceStatus> parse_invoice_status(std::string_view text);

/// The id and gateway key of a new payment attempt. Every attempt has a key of
/// its own: a key is never sent again for another attempt.
struct NewAttempt {
    PaymentId id;
    std::string gateway_key;
    std::string gateway = {}; ///< the name of the gateway chosen to take it
};

/// What an operator found at the provider for an invoice in NEEDS_REVIEW.
struct ReviewDecision {
    bool charged = false;
    std::string reference; ///< the provider's reference of the charge, when charged
};

/// Everything an Invoice holds, field by field: what a durable store writes
/// and reads back (Invoice::snapshot(), Invoice::restore()). A field added to
/// Invoice is added here, and to the store's codec with a new record version.
struct InvoiceSnapshot {
    InvoiceId id;
    Money amount;
    std::string description = {};
    InvoiceStatus status = InvoiceStatus::pending;
    std::vector<PaymentId> attempts = {};
    int cycle_start = 1;
    std::string current_method = {};
    std::optional<Timestamp> next_retry_at = {};
    std::optional<Failure> last_failure = {};
    PaymentId paid_by = {};
    std::string review_reason = {};
    PaymentId under_review = {};
    Timestamp created_at = {};
    Timestamp updated_at = {};
    std::uint64_t version = 1;

    friend bool operator==(InvoiceSnapshot const&, InvoiceSnapshot const&) = default;
};

/// An amount owed, settled by one of its payment attempts. Commands decide and
/// return events; apply() is the only place its state changes.
///
/// Money rule: at most one attempt's answer is unknown at a time, and only
/// the current one; while it is, no new attempt starts and no cycle ends.
class Invoice {
public:
    /// Descriptions longer than this are refused.
    static constexpr std::size_t max_description = 1024;

    /// Issues an invoice for a positive amount.
    static Result<InvoiceCreated> create(InvoiceId id, Money amount, std::string description,
                                         EventMeta const& meta);
    static Invoice from(InvoiceCreated const& created);
    /// The invoice a store kept, exactly as it was when snapshot() was taken.
    static Invoice restore(InvoiceSnapshot snapshot);
    /// Its whole state, for a store to keep.
    InvoiceSnapshot snapshot() const;

    /// Starts a cycle of attempts, from PENDING or (a manual retry) from FAILED.
    Result<PaymentRequested> request_payment(NewAttempt attempt, std::string payment_method,
                                             EventMeta const& meta) const;

    /// What follows a charge: paid, or (another amount was charged) an operator's review.
    using AfterSuccess = std::variant<InvoicePaid, InvoiceNeedsReview>;

    /// The current attempt was charged. A charge of another amount or currency
    /// never pays the invoice: it needs an operator.
    Result<AfterSuccess> settle_success(PaymentSucceeded const& succeeded, EventMeta const& meta) const;

    /// The current attempt's answer is unknown: nothing follows until an
    /// answer about its key is definitive (a late answer, a look-up).
    struct AwaitingAnswer {
        friend bool operator==(AwaitingAnswer const&, AwaitingAnswer const&) = default;
    };

    /// What follows a failed attempt: the next attempt, scheduled after a
    /// backoff; the end of the cycle; or, for an unknown outcome, a wait.
    using AfterFailure = std::variant<PaymentRequested, InvoiceFailed, AwaitingAnswer>;

    /// The current attempt failed: retry it (as `next`) or give up. An unknown
    /// outcome neither retries nor gives up: the gateway may hold a charge.
    Result<AfterFailure> settle_failure(PaymentFailed const& failed, RetryPolicy const& policy, Random& random,
                                        NewAttempt next, EventMeta const& meta) const;

    /// Puts the invoice before an operator, about attempt `payment_id`. One
    /// already in review keeps its attempt under review and adds the reason:
    /// nothing the operator must see is dropped.
    Result<InvoiceNeedsReview> require_review(PaymentId const& payment_id, std::string reason,
                                              EventMeta const& meta) const;

    /// An operator's decision on a NEEDS_REVIEW invoice, about the attempt
    /// under review. `paid_by_another` names an attempt recorded as charged
    /// besides it, if any: the invoice stays PAID by that one whatever the
    /// decision (a second charge is the operator's to refund). Otherwise
    /// "charged" makes it PAID by the attempt under review, "not charged"
    /// FAILED (and payable again).
    using AfterReview = std::variant<InvoicePaid, InvoiceFailed>;
    Result<AfterReview> resolve_review(ReviewDecision const& decision, std::optional<PaymentId> const& paid_by_another,
                                       EventMeta const& meta) const;

    void apply(PaymentRequested const& event);
    void apply(PaymentFailed const& event);
    void apply(InvoicePaid const& event);
    void apply(InvoiceFailed const& event);
    void apply(InvoiceNeedsReview const& event);

    InvoiceId const& id() const noexcept { return id_; }
    Money amount() const noexcept { return amount_; }
    std::string const& description() const noexcept { return description_; }
    InvoiceStatus status() const noexcept { return status_; }
    /// Every attempt's payment id, in order; attempt n is attempts()[n - 1].
    std::vector<PaymentId> const& attempts() const noexcept { return attempts_; }
    /// The number of the latest attempt, 0 before the first.
    int current_attempt() const noexcept { return static_cast<int>(attempts_.size()); }
    /// Attempts made in the current cycle (a manual retry starts a new one).
    int cycle_attempts() const noexcept { return current_attempt() - cycle_start_ + 1; }
    /// When the scheduled retry is due, while one is.
    std::optional<Timestamp> const& next_retry_at() const noexcept { return next_retry_at_; }
    std::optional<Failure> const& last_failure() const noexcept { return last_failure_; }
    /// The payment that settled a PAID invoice.
    PaymentId const& paid_by() const noexcept { return paid_by_; }
    /// Why the invoice needs an operator, while it is NEEDS_REVIEW (else empty).
    std::string const& review_reason() const noexcept { return review_reason_; }
    /// The attempt in question, while the invoice is NEEDS_REVIEW.
    PaymentId const& under_review() const noexcept { return under_review_; }
    Timestamp created_at() const noexcept { return created_at_; }
    Timestamp updated_at() const noexcept { return updated_at_; }
    /// Bumped by every applied event; stores compare it for optimistic concurrency.
    std::uint64_t version() const noexcept { return version_; }

    friend bool operator==(Invoice const&, Invoice const&) = default;

private:
    explicit Invoice(InvoiceCreated const& created);
    explicit Invoice(InvoiceSnapshot&& s);

    Result<void> require_current(EventEnvelope const& outcome) const;
    EventEnvelope event_envelope(EventMeta const& meta, PaymentId payment_id, int attempt) const;
    PaymentId const& current_payment() const { return attempts_.back(); }

    InvoiceId id_;
    Money amount_;
    std::string description_;
    InvoiceStatus status_ = InvoiceStatus::pending;
    std::vector<PaymentId> attempts_;
    int cycle_start_ = 1; // the attempt number that opened the current cycle
    std::string current_method_;
    std::optional<Timestamp> next_retry_at_;
    std::optional<Failure> last_failure_;
    PaymentId paid_by_;
    std::string review_reason_;
    PaymentId under_review_;
    Timestamp created_at_;
    Timestamp updated_at_;
    std::uint64_t version_ = 1;
};

} // namespace payments::domain
