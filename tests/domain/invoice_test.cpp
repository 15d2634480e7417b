#include "support/builders.hpp"

#include <optional>

using namespace test;

namespace {

enum class Command { request_payment, settle_success, settle_retryable_failure, settle_final_failure };

char const* name(Command c) {
    switch (c) {
    case Command::request_payment: return "request_payment";
    case Command::settle_success: return "settle_success";
    case Command::settle_retryable_failure: return "settle_retryable_failure";
    case Command::settle_final_failure: return "settle_final_failure";
    }
    return "?";
}

Invoice an_invoice_in(InvoiceStatus status) {
    switch (status) {
    case InvoiceStatus::pending: return an_invoice();
    case InvoiceStatus::processing: return a_processing_invoice();
    case InvoiceStatus::paid: return a_paid_invoice();
    case InvoiceStatus::failed: return a_failed_invoice();
    }
    FAIL("unknown status");
    return an_invoice();
}

// Decides the command and, when it is accepted, applies what it decided.
Result<void> run(Invoice& invoice, Command command) {
    ScriptedRandom random({0});
    RetryPolicy const policy;
    // For states without an attempt, an outcome for a payment the invoice never asked for.
    auto outcome_invoice = invoice.attempts().empty() ? a_processing_invoice() : invoice;
    if (!invoice.attempts().empty() && invoice.status() != InvoiceStatus::processing)
        outcome_invoice = a_processing_invoice("pm_card_ok", invoice.attempts().back());
    switch (command) {
    case Command::request_payment: {
        auto e = invoice.request_payment(pid(50), "pm_card_ok", meta());
        if (!e) return e.error();
        invoice.apply(*e);
        return {};
    }
    case Command::settle_success: {
        auto e = invoice.settle_success(success_of(outcome_invoice), meta());
        if (!e) return e.error();
        invoice.apply(*e);
        return {};
    }
    case Command::settle_retryable_failure:
    case Command::settle_final_failure: {
        auto kind = command == Command::settle_final_failure ? FailureKind::declined : FailureKind::transient;
        auto failed = failure_of(outcome_invoice, kind);
        auto next = invoice.settle_failure(failed, policy, random, pid(51), meta());
        if (!next) return next.error();
        invoice.apply(failed);
        std::visit([&](auto const& e) { invoice.apply(e); }, *next);
        return {};
    }
    }
    return {};
}

} // namespace

TEST_CASE("every (invoice state, command) pair of the invoice state machine") {
    struct Row {
        InvoiceStatus from;
        Command command;
        std::optional<ErrorCode> error;
        InvoiceStatus to;
    };
    using S = InvoiceStatus;
    using C = Command;
    std::optional<ErrorCode> const ok;
    Row const rows[] = {
        {S::pending, C::request_payment, ok, S::processing},
        {S::pending, C::settle_success, ErrorCode::invalid_state, S::pending},
        {S::pending, C::settle_retryable_failure, ErrorCode::invalid_state, S::pending},
        {S::pending, C::settle_final_failure, ErrorCode::invalid_state, S::pending},
        {S::processing, C::request_payment, ErrorCode::payment_in_progress, S::processing},
        {S::processing, C::settle_success, ok, S::paid},
        {S::processing, C::settle_retryable_failure, ok, S::processing},
        {S::processing, C::settle_final_failure, ok, S::failed},
        {S::paid, C::request_payment, ErrorCode::invoice_already_paid, S::paid},
        {S::paid, C::settle_success, ErrorCode::invalid_state, S::paid},
        {S::paid, C::settle_retryable_failure, ErrorCode::invalid_state, S::paid},
        {S::paid, C::settle_final_failure, ErrorCode::invalid_state, S::paid},
        {S::failed, C::request_payment, ok, S::processing},
        {S::failed, C::settle_success, ErrorCode::invalid_state, S::failed},
        {S::failed, C::settle_retryable_failure, ErrorCode::invalid_state, S::failed},
        {S::failed, C::settle_final_failure, ErrorCode::invalid_state, S::failed},
    };
    CHECK(std::size(rows) == 4 * 4);
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
    CHECK(an_invoice().request_payment(pid(1), "pm card", meta()).error().code == ErrorCode::invalid_argument);
    CHECK(an_invoice().request_payment(pid(1), "", meta()));
}

SCENARIO("an outcome for an attempt that is no longer current is stale") {
    GIVEN("an invoice whose first attempt failed and whose second is at the gateway") {
        Invoice invoice = a_processing_invoice();
        auto first_failure = failure_of(invoice, FailureKind::transient);
        ScriptedRandom random({0});
        auto retry = invoice.settle_failure(first_failure, RetryPolicy{}, random, pid(2), meta()).value();
        invoice.apply(first_failure);
        invoice.apply(std::get<PaymentRequested>(retry));
        WHEN("a late success for the first attempt arrives") {
            PaymentSucceeded late = Payment::from(PaymentRequested{
                {EventId::parse("evt_x").value(), t0(), {}, invoice.id(), pid(1), 1}, usd(1000), "pm_card_ok", "pay_1",
                t0()}).succeed("ch_late", meta()).value();
            THEN("it is refused as stale") {
                CHECK(invoice.settle_success(late, meta()).error().code == ErrorCode::stale_attempt);
            }
        }
    }
}

SCENARIO("a charge of another amount does not settle the invoice") {
    Invoice invoice = a_processing_invoice();
    auto request = current_request(invoice);
    request.amount = usd(1);
    auto succeeded = Payment::from(request).succeed("ch_1", meta()).value();
    CHECK(invoice.settle_success(succeeded, meta()).error().code == ErrorCode::invalid_amount);
}

SCENARIO("retries are scheduled with backoff until the cycle's attempts run out") {
    GIVEN("a policy of 3 attempts and a card that keeps failing transiently") {
        RetryPolicy const policy{.base = 1s, .multiplier = 2.0, .cap = 30s, .max_attempts = 3};
        ScriptedRandom random({UINT64_MAX}); // the longest delay jitter allows
        Invoice invoice = a_processing_invoice("pm_card_unavailable");
        for (int attempt = 1; attempt <= 2; ++attempt) {
            auto failed = failure_of(invoice, FailureKind::transient, "busy");
            Timestamp const now = t0() + std::chrono::minutes(attempt);
            auto next = invoice.settle_failure(failed, policy, random, pid(attempt + 1), meta(now)).value();
            auto const& retry = std::get<PaymentRequested>(next);
            CHECK(retry.envelope.attempt == attempt + 1);
            CHECK(retry.not_before - now == policy.max_delay(attempt));
            CHECK(retry.payment_method == "pm_card_unavailable");
            CHECK(retry.gateway_key == pid(attempt + 1).str()); // nothing was charged: a fresh key
            invoice.apply(failed);
            invoice.apply(retry);
            CHECK(invoice.next_retry_at() == retry.not_before);
            CHECK(invoice.last_failure()->reason == "busy");
        }
        WHEN("the third attempt fails too") {
            auto failed = failure_of(invoice, FailureKind::transient, "busy");
            auto next = invoice.settle_failure(failed, policy, random, pid(9), meta()).value();
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
                invoice.apply(invoice.request_payment(pid(10), "pm_card_ok", meta()).value());
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
                                       random, pid(2), meta()).value();
    REQUIRE(std::holds_alternative<InvoiceFailed>(next));
    CHECK(std::get<InvoiceFailed>(next).failure.reason == "card declined");
}

SCENARIO("after an unknown outcome every retry reuses the gateway key until an answer is definitive") {
    ScriptedRandom random({0});
    RetryPolicy const policy{.max_attempts = 3};
    Invoice invoice = a_processing_invoice("pm_card_timeout", pid(1));
    auto retry = [&](FailureKind kind, int next) {
        auto failed = failure_of(invoice, kind);
        auto decided = invoice.settle_failure(failed, policy, random, pid(next), meta()).value();
        invoice.apply(failed);
        std::visit([&](auto const& e) { invoice.apply(e); }, decided);
        return decided;
    };
    auto second = std::get<PaymentRequested>(retry(FailureKind::unknown_outcome, 2));
    CHECK(second.gateway_key == "pay_1");
    // The gateway was unavailable for the repeat: the first charge may still exist.
    auto third = std::get<PaymentRequested>(retry(FailureKind::transient, 3));
    CHECK(third.gateway_key == "pay_1");
    // The last attempt's outcome is unknown too: it cannot end the cycle until the gateway is asked.
    CHECK(invoice.must_verify(FailureKind::unknown_outcome, policy));
    CHECK_FALSE(invoice.must_verify(FailureKind::transient, policy));
    CHECK(invoice.settle_failure(failure_of(invoice, FailureKind::unknown_outcome), policy, random, pid(4), meta())
              .error()
              .code == ErrorCode::invalid_state);
    // Asked, the gateway holds no charge: that is definitive, and the cycle ends.
    auto gave_up = retry(FailureKind::transient, 4);
    REQUIRE(std::holds_alternative<InvoiceFailed>(gave_up));

    WHEN("the invoice is retried by hand") {
        THEN("the retry keeps the key and the payment method") {
            auto manual = invoice.request_payment(pid(5), "", meta()).value();
            CHECK(manual.gateway_key == "pay_1");
            CHECK(manual.payment_method == "pm_card_timeout");
        }
        THEN("a different payment method is refused: it could charge twice") {
            CHECK(invoice.request_payment(pid(5), "pm_card_ok", meta()).error().code == ErrorCode::invalid_state);
        }
    }
}

TEST_CASE("invoice statuses round-trip through their names") {
    for (auto s : {InvoiceStatus::pending, InvoiceStatus::processing, InvoiceStatus::paid, InvoiceStatus::failed})
        CHECK(parse_invoice_status(to_string(s)).value() == s);
    CHECK(parse_invoice_status("paid").error().code == ErrorCode::invalid_argument);
}
