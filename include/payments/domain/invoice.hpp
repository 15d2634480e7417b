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
enum class InvoiceStatus { pending, processing, paid, failed };

/// "PENDING", "PROCESSING", "PAID", "FAILED".
std::string_view to_string(InvoiceStatus status) noexcept;
/// The inverse of to_string; invalid_argument for anything else.
Result<InvoiceStatus> parse_invoice_status(std::string_view text);

/// An amount owed, settled by one of its payment attempts. Commands decide and
/// return events; apply() is the only place its state changes.
class Invoice {
public:
    /// Descriptions longer than this are refused.
    static constexpr std::size_t max_description = 1024;

    /// Issues an invoice for a positive amount.
    static Result<InvoiceCreated> create(InvoiceId id, Money amount, std::string description,
                                         EventMeta const& meta);
    static Invoice from(InvoiceCreated const& created);

    /// Starts a cycle of attempts, from PENDING or (a manual retry) from FAILED.
    /// While an earlier outcome is unknown, the retry keeps its gateway key and method.
    Result<PaymentRequested> request_payment(PaymentId payment_id, std::string payment_method,
                                             EventMeta const& meta) const;

    /// The current attempt succeeded: the invoice is paid.
    Result<InvoicePaid> settle_success(PaymentSucceeded const& succeeded, EventMeta const& meta) const;

    /// What follows a failed attempt: the next attempt, scheduled after a
    /// backoff, or the end of the cycle.
    using AfterFailure = std::variant<PaymentRequested, InvoiceFailed>;

    /// Whether a failure of this kind would end the cycle with the outcome
    /// unknown: the gateway may hold a charge, so it must be asked first.
    bool must_verify(FailureKind kind, RetryPolicy const& policy) const noexcept;

    /// The current attempt failed: retry it (with `next_payment_id`) or give up.
    /// An unknown outcome cannot end a cycle: verify it, then settle what was found.
    Result<AfterFailure> settle_failure(PaymentFailed const& failed, RetryPolicy const& policy, Random& random,
                                        PaymentId next_payment_id, EventMeta const& meta) const;

    void apply(PaymentRequested const& event);
    void apply(PaymentFailed const& event);
    void apply(InvoicePaid const& event);
    void apply(InvoiceFailed const& event);

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
    Timestamp created_at() const noexcept { return created_at_; }
    Timestamp updated_at() const noexcept { return updated_at_; }
    /// Bumped by every applied event; stores compare it for optimistic concurrency.
    std::uint64_t version() const noexcept { return version_; }

    friend bool operator==(Invoice const&, Invoice const&) = default;

private:
    explicit Invoice(InvoiceCreated const& created);

    Result<void> require_current(EventEnvelope const& outcome) const;
    bool reuses_gateway_key_after(Failure const& failure) const;
    PaymentId const& current_payment() const { return attempts_.back(); }

    InvoiceId id_;
    Money amount_;
    std::string description_;
    InvoiceStatus status_ = InvoiceStatus::pending;
    std::vector<PaymentId> attempts_;
    int cycle_start_ = 1; // the attempt number that opened the current cycle
    std::string current_method_;
    std::string current_gateway_key_;
    std::optional<Timestamp> next_retry_at_;
    std::optional<Failure> last_failure_;
    PaymentId paid_by_;
    Timestamp created_at_;
    Timestamp updated_at_;
    std::uint64_t version_ = 1;
};

} // namespace payments::domain
