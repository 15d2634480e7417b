#include "settlement.hpp"

#include <type_traits>

namespace payments::application {

using namespace domain;

namespace {

struct Decider {
    Ports const& ports;
    RetryPolicy const& policy;
    Payment& payment;
    Invoice& invoice;
    CorrelationId const& correlation_id;
    Settlement settlement;

    EventMeta meta() const { return new_event_meta(ports, correlation_id); }

    template <class E>
    void record(E event) {
        invoice.apply(event);
        settlement.published.emplace_back(std::move(event));
    }

    // Puts the invoice before an operator; one already there gets the reason
    // added, unless it already says it (a repeated answer adds nothing).
    void review(ReviewCause cause, std::string reason) {
        settlement.review = cause;
        settlement.review_reason = reason;
        if (invoice.status() == InvoiceStatus::needs_review &&
            invoice.review_reason().find(reason) != std::string::npos)
            return;
        if (auto flagged = invoice.require_review(payment.id(), std::move(reason), meta())) record(std::move(*flagged));
    }

    void charged(ChargeAnswer const& outcome) {
        // A charge that does not say what it took cannot pay an invoice: zero mismatches any amount.
        Money const charged = outcome.charged.value_or(Money::of(0, payment.amount().currency()).value());
        auto succeeded = payment.succeed(outcome.reference, charged, meta());
        if (!succeeded) return;
        payment.apply(*succeeded);
        settlement.published.emplace_back(*succeeded);
        auto after = invoice.settle_success(*succeeded, meta());
        if (!after) {
            // Money was taken for an attempt the invoice no longer expects.
            review(ReviewCause::contradiction, "the gateway charged attempt " + std::to_string(payment.attempt()) +
                                                   " (" + outcome.reference + ") but the invoice is " +
                                                   std::string(to_string(invoice.status())));
            return;
        }
        if (auto* mismatch = std::get_if<InvoiceNeedsReview>(&*after)) {
            settlement.review = ReviewCause::amount_mismatch;
            settlement.review_reason = mismatch->reason;
            record(std::move(*mismatch));
        } else {
            record(std::get<InvoicePaid>(std::move(*after)));
        }
    }

    void failed(Failure const& failure) {
        auto event = payment.fail(failure, meta());
        if (!event) return; // a second "unknown" for an UNKNOWN payment: nothing new
        payment.apply(*event);
        settlement.published.emplace_back(*event);
        auto next = invoice.settle_failure(*event, policy, ports.random, new_attempt(ports, &payment), meta());
        if (!next) return; // an answer for an attempt the invoice has moved past
        invoice.apply(*event);
        std::visit(
            [&](auto& after) {
                using After = std::decay_t<decltype(after)>;
                if constexpr (std::is_same_v<After, PaymentRequested>) {
                    invoice.apply(after);
                    settlement.retry = std::move(after);
                } else if constexpr (std::is_same_v<After, InvoiceFailed>) {
                    record(std::move(after));
                }
            },
            *next);
    }

    // An answer about a payment whose outcome is already recorded.
    void recorded(ChargeAnswer const& outcome) {
        bool const contradicts =
            (outcome.succeeded() && payment.status() == PaymentStatus::failed) ||
            (outcome.definitive() && !outcome.succeeded() && payment.status() == PaymentStatus::succeeded);
        if (!contradicts) return;
        std::string const said = outcome.succeeded() ? "charged (" + outcome.reference + ")" : "declined";
        review(ReviewCause::contradiction, "the gateway answered " + said + " for attempt " +
                                               std::to_string(payment.attempt()) + ", recorded as " +
                                               std::string(to_string(payment.status())));
    }
};

} // namespace

PaymentRequested request_of(Payment const& payment, EventMeta const& meta) {
    return {{meta.id, meta.now, payment.correlation_id(), payment.invoice_id(), payment.id(), payment.attempt()},
            payment.amount(),
            payment.payment_method(),
            payment.gateway_key(),
            payment.not_before(),
            payment.gateway()};
}

std::optional<ChargeAnswer> definitive_answer(ChargeStatus const& status) {
    switch (status.state) {
    case ChargeStatus::State::charged: return ChargeAnswer{status.reference, status.charged, std::nullopt};
    case ChargeStatus::State::declined: return ChargeAnswer::failed(FailureKind::declined, status.reason);
    case ChargeStatus::State::pending:
    case ChargeStatus::State::absent: return std::nullopt;
    }
    return std::nullopt;
}

Settlement decide_settlement(Ports const& ports, RetryPolicy const& policy, Payment& payment, Invoice& invoice,
                             ChargeAnswer const& outcome, CorrelationId const& correlation_id) {
    Decider decider{ports, policy, payment, invoice, correlation_id, {}};
    if (payment.status() == PaymentStatus::succeeded || payment.status() == PaymentStatus::failed)
        decider.recorded(outcome);
    else if (outcome.succeeded())
        decider.charged(outcome);
    else
        decider.failed(*outcome.failure);
    return std::move(decider.settlement);
}

} // namespace payments::application
