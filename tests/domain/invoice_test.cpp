#include "support/builders.hpp"

#include <optional>

using namespace test;

namespace {

enum class InvoiceCommand {
    request_payment,
    settle_success,
    settle_retryable_failure,
    settle_final_failure,
    settle_unknown,
    require_review,
    resolve_charged,
    resolve_not_charged,
};
constexpr std::size_t command_count = 8;

char const* name(InvoiceCommand c) {
    switch (c) {
    case InvoiceCommand::request_payment: return "request_payment";
    case InvoiceCommand::settle_success: return "settle_success";
    case InvoiceCommand::settle_retryable_failure: return "settle_retryable_failure";
    case InvoiceCommand::settle_final_failure: return "settle_final_failure";
    case InvoiceCommand::settle_unknown: return "settle_unknown";
    case InvoiceCommand::require_review: return "require_review";
    case InvoiceCommand::resolve_charged: return "resolve_charged";
    case InvoiceCommand::resolve_not_charged: return "resolve_not_charged";
    }
    return "?";
}

Invoice an_invoice_in(InvoiceStatus status) {
    switch (status) {
    case InvoiceStatus::pending: return an_invoice();
    case InvoiceStatus::processing: return a_processing_invoice();
    case InvoiceStatus::paid: return a_paid_invoice();
    case InvoiceStatus::failed: return a_failed_invoice();
    case InvoiceStatus::needs_review: {
        Invoice invoice = a_processing_invoice();
        invoice.apply(invoice.require_review(pid(1), "no answer", meta()).value());
        return invoice;
    }
    }
    FAIL("unknown status");
    return an_invoice();
}

// Decides the command and, when it is accepted, applies what it decided.
Result<void> run(Invoice& invoice, InvoiceCommand command) {
    ScriptedRandom random({0});
    RetryPolicy const policy;
    // For states without an attempt, an outcome for a payment the invoice never asked for.
    auto outcome_invoice = invoice.attempts().empty() ? a_processing_invoice() : invoice;
    if (!invoice.attempts().empty() && invoice.status() != InvoiceStatus::processing)
        outcome_invoice = a_processing_invoice("pm_card_ok", invoice.attempts().back());
    auto apply_all = [&](auto const& decided) { std::visit([&](auto const& e) { invoice.apply(e); }, decided); };
    switch (command) {
    case InvoiceCommand::request_payment: {
        auto e = invoice.request_payment(attempt(50), "pm_card_ok", meta());
        if (!e) return e.error();
        invoice.apply(*e);
        return {};
    }
    case InvoiceCommand::settle_success: {
        auto e = invoice.settle_success(success_of(outcome_invoice), meta());
        if (!e) return e.error();
        apply_all(*e);
        return {};
    }
    case InvoiceCommand::settle_retryable_failure:
    case InvoiceCommand::settle_final_failure:
    case InvoiceCommand::settle_unknown: {
        auto kind = command == InvoiceCommand::settle_final_failure ? FailureKind::declined
                    : command == InvoiceCommand::settle_unknown     ? FailureKind::unknown_outcome
                                                             : FailureKind::transient;
        auto failed = failure_of(outcome_invoice, kind);
        auto next = invoice.settle_failure(failed, policy, random, attempt(51), meta());
        if (!next) return next.error();
        invoice.apply(failed);
        std::visit(
            [&](auto const& e) {
                if constexpr (!std::is_same_v<std::decay_t<decltype(e)>, Invoice::AwaitingAnswer>) invoice.apply(e);
            },
            *next);
        return {};
    }
    case InvoiceCommand::require_review: {
        auto e = invoice.require_review(invoice.attempts().empty() ? pid(1) : invoice.attempts().back(), "why",
                                        meta());
        if (!e) return e.error();
        invoice.apply(*e);
        return {};
    }
    case InvoiceCommand::resolve_charged:
    case InvoiceCommand::resolve_not_charged: {
        auto e = invoice.resolve_review({command == InvoiceCommand::resolve_charged, "ch_op"}, std::nullopt, meta());
        if (!e) return e.error();
        apply_all(*e);
        return {};
    }
    }
    return {};
}

} // namespace

TEST_CASE("every (invoice state, command) pair of the invoice state machine") {
    struct Row {
        InvoiceStatus from;
        InvoiceCommand command;
        std::optional<ErrorCode> error;
        InvoiceStatus to;
    };
    using S = InvoiceStatus;
    using C = InvoiceCommand;
    std::optional<ErrorCode> const ok;
    ErrorCode const invalid = ErrorCode::invalid_state;
    Row const rows[] = {
        {S::pending, C::request_payment, ok, S::processing},
        {S::pending, C::settle_success, invalid, S::pending},
        {S::pending, C::settle_retryable_failure, invalid, S::pending},
        {S::pending, C::settle_final_failure, invalid, S::pending},
        {S::pending, C::settle_unknown, invalid, S::pending},
        {S::pending, C::require_review, ErrorCode::not_found, S::pending},
        {S::pending, C::resolve_charged, invalid, S::pending},
        {S::pending, C::resolve_not_charged, invalid, S::pending},
        {S::processing, C::request_payment, ErrorCode::payment_in_progress, S::processing},
        {S::processing, C::settle_success, ok, S::paid},
        {S::processing, C::settle_retryable_failure, ok, S::processing},
        {S::processing, C::settle_final_failure, ok, S::failed},
        {S::processing, C::settle_unknown, ok, S::processing},
        {S::processing, C::require_review, ok, S::needs_review},
        {S::processing, C::resolve_charged, invalid, S::processing},
        {S::processing, C::resolve_not_charged, invalid, S::processing},
        {S::paid, C::request_payment, ErrorCode::invoice_already_paid, S::paid},
        {S::paid, C::settle_success, invalid, S::paid},
        {S::paid, C::settle_retryable_failure, invalid, S::paid},
        {S::paid, C::settle_final_failure, invalid, S::paid},
        {S::paid, C::settle_unknown, invalid, S::paid},
        {S::paid, C::require_review, ok, S::needs_review}, // a contradicting answer
        {S::paid, C::resolve_charged, invalid, S::paid},
        {S::paid, C::resolve_not_charged, invalid, S::paid},
        {S::failed, C::request_payment, ok, S::processing},
        {S::failed, C::settle_success, invalid, S::failed},
        {S::failed, C::settle_retryable_failure, invalid, S::failed},
        {S::failed, C::settle_final_failure, invalid, S::failed},
        {S::failed, C::settle_unknown, invalid, S::failed},
        {S::failed, C::require_review, ok, S::needs_review}, // a contradicting answer
        {S::failed, C::resolve_charged, invalid, S::failed},
        {S::failed, C::resolve_not_charged, invalid, S::failed},
        {S::needs_review, C::request_payment, invalid, S::needs_review},
        {S::needs_review, C::settle_success, ok, S::paid}, // the answer it waited for, late
        {S::needs_review, C::settle_retryable_failure, ok, S::failed},
        {S::needs_review, C::settle_final_failure, ok, S::failed},
        {S::needs_review, C::settle_unknown, invalid, S::needs_review},
        {S::needs_review, C::require_review, ok, S::needs_review}, // another reason, added
        {S::needs_review, C::resolve_charged, ok, S::paid},
        {S::needs_review, C::resolve_not_charged, ok, S::failed},
    };
    CHECK(std::size(rows) == std::size(invoice_statuses) * command_count);
    for (Row const& row : rows) {
        CAPTURE(to_string(row.from));
        CAPTURE(name(row.command));
        Invoice invoice = an_invoice_in(row.from);
        REQUIRE(invoice.status() == row.from);
        Invoice const before = invoice;
        auto result = run(invoice, row.command);
        REQUIRE(result.has_error() == row.error.has_value());
        if (row.error) {
            CHECK(result.error().code == *row.error);
            CHECK(invoice == before); // a refused command changes nothing
        }
        CHECK(invoice.status() == row.to);
    }
}

SCENARIO("an invoice is issued only for a positive amount and a bounded description") {
    CHECK(Invoice::create(iid(), Money::of(0, Currency::usd()).value(), "", meta()).error().code ==
          ErrorCode::invalid_amount);
    CHECK(Invoice::create(iid(), usd(1), std::string(1025, 'x'), meta()).error().code == ErrorCode::invalid_argument);
    CHECK(Invoice::create(InvoiceId{}, usd(1), "", meta()).error().code == ErrorCode::invalid_argument);
    Invoice invoice = an_invoice();
    CHECK(invoice.status() == InvoiceStatus::pending);
    CHECK(invoice.current_attempt() == 0);
    CHECK(invoice.description() == "order 42");
}

SCENARIO("a payment method must be a well-formed token") {
    CHECK(an_invoice().request_payment(attempt(1), "pm card", meta()).error().code == ErrorCode::invalid_argument);
    CHECK(an_invoice().request_payment(attempt(1), "", meta()));
}

SCENARIO("an outcome for an attempt that is no longer current is stale") {
    GIVEN("an invoice whose first attempt failed and whose second is at the gateway") {
        Invoice invoice = a_processing_invoice();
        auto first_failure = failure_of(invoice, FailureKind::transient);
        ScriptedRandom random({0});
        auto retry = invoice.settle_failure(first_failure, RetryPolicy{}, random, attempt(2), meta()).value();
        invoice.apply(first_failure);
        invoice.apply(std::get<PaymentRequested>(retry));
        WHEN("a late success for the first attempt arrives") {
            PaymentSucceeded late = Payment::from(PaymentRequested{
                {EventId::parse("evt_x").value(), t0(), {}, invoice.id(), pid(1), 1}, usd(1000), "pm_card_ok", "pay_1",
                t0()}).succeed("ch_late", usd(1000), meta()).value();
            THEN("it is refused as stale") {
                CHECK(invoice.settle_success(late, meta()).error().code == ErrorCode::stale_attempt);
            }
        }
    }
}

SCENARIO("a charge of another amount or currency never pays the invoice: it needs an operator") {
    GIVEN("an invoice for 10.00 USD at the gateway") {
        Invoice invoice = a_processing_invoice();
        WHEN("the gateway says it charged 10.01 USD") {
            auto succeeded = Payment::from(current_request(invoice)).succeed("ch_1", usd(1001), meta()).value();
            auto after = invoice.settle_success(succeeded, meta()).value();
            THEN("the invoice goes to NEEDS_REVIEW, saying what was charged") {
                auto const& review = std::get<InvoiceNeedsReview>(after);
                CHECK(review.reason == "the gateway charged 10.01 USD, the invoice is for 10.00 USD");
                invoice.apply(review);
                CHECK(invoice.status() == InvoiceStatus::needs_review);
                CHECK(invoice.under_review() == pid(1));
            }
        }
        WHEN("the gateway says it charged 10.00 EUR") {
            auto eur = Money::positive(1000, Currency::from_code("EUR").value()).value();
            auto succeeded = Payment::from(current_request(invoice)).succeed("ch_1", eur, meta()).value();
            THEN("the invoice is not paid") {
                CHECK(std::holds_alternative<InvoiceNeedsReview>(invoice.settle_success(succeeded, meta()).value()));
            }
        }
    }
}

SCENARIO("retries are scheduled with backoff until the cycle's attempts run out") {
    GIVEN("a policy of 3 attempts and a card that keeps failing transiently") {
        RetryPolicy const policy{.base = 1s, .multiplier = 2.0, .cap = 30s, .max_attempts = 3};
        ScriptedRandom random({UINT64_MAX}); // the longest delay jitter allows
        Invoice invoice = a_processing_invoice("pm_card_unavailable");
        for (int n = 1; n <= 2; ++n) {
            auto failed = failure_of(invoice, FailureKind::transient, "busy");
            Timestamp const now = t0() + std::chrono::minutes(n);
            auto next = invoice.settle_failure(failed, policy, random, attempt(n + 1), meta(now)).value();
            auto const& retry = std::get<PaymentRequested>(next);
            CHECK(retry.envelope.attempt == n + 1);
            CHECK(retry.not_before - now == policy.max_delay(n));
            CHECK(retry.payment_method == "pm_card_unavailable");
            CHECK(retry.gateway_key == attempt(n + 1).gateway_key); // every attempt has a key of its own
            invoice.apply(failed);
            invoice.apply(retry);
            CHECK(invoice.next_retry_at() == retry.not_before);
            CHECK(invoice.last_failure()->reason == "busy");
        }
        WHEN("the third attempt fails too") {
            auto failed = failure_of(invoice, FailureKind::transient, "busy");
            auto next = invoice.settle_failure(failed, policy, random, attempt(9), meta()).value();
            THEN("the invoice gives up, saying why") {
                auto const& gave_up = std::get<InvoiceFailed>(next);
                CHECK(gave_up.failure.kind == FailureKind::transient);
                CHECK(gave_up.failure.reason == "gave up after 3 attempts: busy");
                invoice.apply(failed);
                invoice.apply(gave_up);
                CHECK(invoice.status() == InvoiceStatus::failed);
                CHECK_FALSE(invoice.next_retry_at());
            }
            AND_THEN("a manual retry opens a new cycle of 3 attempts") {
                invoice.apply(failed);
                invoice.apply(std::get<InvoiceFailed>(next));
                invoice.apply(invoice.request_payment(attempt(10), "pm_card_ok", meta()).value());
                CHECK(invoice.current_attempt() == 4);
                CHECK(invoice.cycle_attempts() == 1);
                CHECK(invoice.attempts().back() == pid(10));
            }
        }
    }
}

SCENARIO("a decline is final: no retry") {
    Invoice invoice = a_processing_invoice();
    ScriptedRandom random({0});
    auto next = invoice.settle_failure(failure_of(invoice, FailureKind::declined, "card declined"), RetryPolicy{},
                                       random, attempt(2), meta()).value();
    REQUIRE(std::holds_alternative<InvoiceFailed>(next));
    CHECK(std::get<InvoiceFailed>(next).failure.reason == "card declined");
}

SCENARIO("an unknown outcome neither retries nor ends the cycle, even on the last attempt") {
    GIVEN("an invoice on the last attempt of its cycle") {
        ScriptedRandom random({0});
        RetryPolicy const policy{.max_attempts = 1};
        Invoice invoice = a_processing_invoice("pm_card_timeout");
        WHEN("its answer is unknown") {
            auto failed = failure_of(invoice, FailureKind::unknown_outcome);
            auto next = invoice.settle_failure(failed, policy, random, attempt(2), meta()).value();
            THEN("the invoice waits for a definitive answer: no new key, no FAILED") {
                CHECK(std::holds_alternative<Invoice::AwaitingAnswer>(next));
                invoice.apply(failed);
                CHECK(invoice.status() == InvoiceStatus::processing);
                CHECK(invoice.current_attempt() == 1);
                AND_THEN("a manual retry is refused while it waits") {
                    CHECK(invoice.request_payment(attempt(3), "pm_card_ok", meta()).error().code ==
                          ErrorCode::payment_in_progress);
                }
                AND_THEN("a definitive answer that nothing was charged ends the cycle") {
                    auto gave_up = invoice.settle_failure(failure_of(invoice, FailureKind::transient, "no charge"),
                                                          policy, random, attempt(4), meta()).value();
                    CHECK(std::holds_alternative<InvoiceFailed>(gave_up));
                }
                AND_THEN("a definitive charge pays it") {
                    CHECK(std::holds_alternative<InvoicePaid>(invoice.settle_success(success_of(invoice), meta()).value()));
                }
            }
        }
    }
}

SCENARIO("an operator resolves an invoice that needs review") {
    GIVEN("an invoice whose answer stayed unknown past the verification limit") {
        Invoice invoice = an_invoice_in(InvoiceStatus::needs_review);
        CHECK(invoice.review_reason() == "no answer");
        WHEN("the operator found the charge") {
            auto after = invoice.resolve_review({true, "ch_found"}, std::nullopt, meta()).value();
            THEN("the invoice is PAID by the attempt under review") {
                auto const& paid = std::get<InvoicePaid>(after);
                CHECK(paid.envelope.payment_id == pid(1));
                invoice.apply(paid);
                CHECK(invoice.paid_by() == pid(1));
                CHECK(invoice.review_reason().empty());
            }
        }
        WHEN("the operator found no charge") {
            invoice.apply(std::get<InvoiceFailed>(invoice.resolve_review({false, ""}, std::nullopt, meta()).value()));
            THEN("the invoice is FAILED and payable again") {
                CHECK(invoice.status() == InvoiceStatus::failed);
                CHECK(invoice.request_payment(attempt(2), "pm_card_ok", meta()));
            }
        }
        WHEN("the operator says charged without a reference") {
            THEN("it is refused") {
                CHECK(invoice.resolve_review({true, ""}, std::nullopt, meta()).error().code ==
                      ErrorCode::invalid_argument);
            }
        }
        WHEN("another attempt was recorded as charged before the review") {
            auto after = invoice.resolve_review({false, ""}, pid(7), meta()).value();
            THEN("the invoice stays PAID by that attempt, whatever the decision") {
                CHECK(std::get<InvoicePaid>(after).envelope.payment_id == pid(7));
            }
        }
        WHEN("a second reason arrives while the invoice is in review") {
            invoice.apply(invoice.require_review(pid(1), "charged twice", meta()).value());
            THEN("both reasons are kept, and the attempt under review stays the first") {
                CHECK(invoice.review_reason() == "no answer; then: charged twice");
                CHECK(invoice.under_review() == pid(1));
            }
        }
    }
}

TEST_CASE("invoice statuses round-trip through their names") {
    for (auto s : invoice_statuses) CHECK(parse_invoice_status(to_string(s)).value() == s);
    CHECK(parse_invoice_status("paid").error().code == ErrorCode::invalid_argument);
}
