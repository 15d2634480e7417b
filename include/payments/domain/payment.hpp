#pragma once

#include <payments/domain/events.hpp>
#include <payments/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace payments::domain {

/// REQUESTED → SUCCEEDED | FAILED | UNKNOWN; UNKNOWN → SUCCEEDED | FAILED once
/// a definitive answer about its gateway key arrives. FAILED → SUCCEEDED only
/// when a definitive charge contradicts the recorded failure (an operator
/// confirms it); SUCCEEDED → FAILED only when an operator finds no charge
/// (refunded).
enum class PaymentStatus { requested, succeeded, failed, unknown };

/// "REQUESTED", "SUCCEEDED", "FAILED", "UNKNOWN".
std::string_view to_string(PaymentStatus status) noexcept;

/// Everything a Payment holds, field by field: what a durable store writes and
/// reads back (Payment::snapshot(), Payment::restore()). A field added to
/// Payment is added here, and to the store's codec with a new record version.
struct PaymentSnapshot {
    PaymentId id;
    InvoiceId invoice_id = {};
    int attempt = 0;
    Money amount;
    std::string payment_method = {};
    std::string gateway_key = {};
    CorrelationId correlation_id = {};
    PaymentStatus status = PaymentStatus::requested;
    std::optional<Failure> failure = {};
    std::string gateway_reference = {};
    std::optional<Timestamp> unknown_since = {};
    Timestamp not_before = {};
    Timestamp created_at = {};
    Timestamp updated_at = {};
    std::uint64_t version = 1;
    std::string gateway = {}; ///< the gateway that took it (empty: the first configured one)

    friend bool operator==(PaymentSnapshot const&, PaymentSnapshot const&) = default;
};

/// One technical attempt to settle an invoice. Commands decide and return an
/// event; apply() is the only place its state changes.
class Payment {
public:
    /// The attempt an invoice requested.
    static Payment from(PaymentRequested const& requested);
    /// The payment a store kept, exactly as it was when snapshot() was taken.
    static Payment restore(PaymentSnapshot snapshot);
    /// Its whole state, for a store to keep.
    PaymentSnapshot snapshot() const;

    /// The gateway charged it, `charged` being the amount it says it took;
    /// from REQUESTED, or from UNKNOWN when a late or looked-up answer arrives.
    Result<PaymentSucceeded> succeed(std::string gateway_reference, Money charged, EventMeta const& meta) const;
    /// The gateway refused it or failed (from REQUESTED or UNKNOWN), or did
    /// not answer in time (an UNKNOWN_OUTCOME failure, from REQUESTED only:
    /// it makes the payment UNKNOWN, not FAILED).
    Result<PaymentFailed> fail(Failure failure, EventMeta const& meta) const;
    /// A charge that contradicts a recorded failure, confirmed by an operator:
    /// from FAILED (and from REQUESTED or UNKNOWN, like succeed()).
    Result<PaymentSucceeded> confirm_charged(std::string gateway_reference, Money charged,
                                             EventMeta const& meta) const;
    /// An operator found no charge for it at the provider (never made, or
    /// refunded): from any status but FAILED.
    Result<PaymentFailed> confirm_not_charged(std::string reason, EventMeta const& meta) const;

    void apply(PaymentSucceeded const& event);
    void apply(PaymentFailed const& event);

    PaymentId const& id() const noexcept { return id_; }
    InvoiceId const& invoice_id() const noexcept { return invoice_id_; }
    int attempt() const noexcept { return attempt_; }
    Money amount() const noexcept { return amount_; }
    std::string const& payment_method() const noexcept { return payment_method_; }
    std::string const& gateway_key() const noexcept { return gateway_key_; }
    /// The gateway that took the attempt (empty: the first configured one).
    std::string const& gateway() const noexcept { return gateway_; }
    PaymentStatus status() const noexcept { return status_; }
    std::optional<Failure> const& failure() const noexcept { return failure_; }
    std::string const& gateway_reference() const noexcept { return gateway_reference_; }
    /// Whether the gateway's answer is still owed: UNKNOWN.
    bool unresolved() const noexcept { return status_ == PaymentStatus::unknown; }
    /// When the answer became unknown; kept once it is known, as history.
    std::optional<Timestamp> const& unknown_since() const noexcept { return unknown_since_; }
    /// The request that caused the attempt; later work on it carries the same id.
    CorrelationId const& correlation_id() const noexcept { return correlation_id_; }
    Timestamp not_before() const noexcept { return not_before_; }
    Timestamp created_at() const noexcept { return created_at_; }
    Timestamp updated_at() const noexcept { return updated_at_; }
    /// Bumped by every applied event; stores compare it for optimistic concurrency.
    std::uint64_t version() const noexcept { return version_; }

    friend bool operator==(Payment const&, Payment const&) = default;

private:
    explicit Payment(PaymentRequested const& requested);
    explicit Payment(PaymentSnapshot&& s);

    Result<void> require_open() const;
    EventEnvelope envelope(EventMeta const& meta) const;

    PaymentId id_;
    InvoiceId invoice_id_;
    int attempt_;
    Money amount_;
    std::string payment_method_;
    std::string gateway_key_;
    std::string gateway_;
    CorrelationId correlation_id_;
    PaymentStatus status_ = PaymentStatus::requested;
    std::optional<Failure> failure_;
    std::string gateway_reference_;
    std::optional<Timestamp> unknown_since_;
    Timestamp not_before_;
    Timestamp created_at_;
    Timestamp updated_at_;
    std::uint64_t version_ = 1;
};

} // namespace payments::domain
