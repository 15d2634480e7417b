#include "support/builders.hpp"

#include <payments/fmt.hpp>

using namespace test;

namespace {

EventEnvelope an_envelope(int attempt = 1) {
    return {EventId::parse("evt_1").value(), t0(), CorrelationId::parse("req_1").value(), iid("inv_1"),
            attempt == 0 ? PaymentId{} : pid(attempt), attempt};
}

} // namespace

SCENARIO("values print with fmt as they read") {
    CHECK(fmt::format("{}", iid("inv_42")) == "inv_42");
    CHECK(fmt::format("[{:>8}]", iid("inv_42")) == "[  inv_42]");
    CHECK(fmt::format("{}", Currency::usd()) == "USD");
    CHECK(fmt::format("{}", usd(1050)) == "10.50 USD");
    CHECK(fmt::format("{}", Money::positive(1050, Currency::from_code("JPY").value()).value()) == "1050 JPY");
    CHECK(fmt::format("{}", InvoiceStatus::needs_review) == "NEEDS_REVIEW");
    CHECK(fmt::format("{}", PaymentStatus::succeeded) == "SUCCEEDED");
    CHECK(fmt::format("{}", FailureKind::unknown_outcome) == "UNKNOWN_OUTCOME");
    CHECK(fmt::format("{}", Failure{FailureKind::declined, "insufficient funds"}) == "DECLINED: insufficient funds");
    CHECK(fmt::format("{}", t0() + 12h + 250ms + 999us) == "2026-01-01T12:00:00.250Z");
}

SCENARIO("every event prints as one line naming its kind, invoice and attempt") {
    auto const env = an_envelope(2);
    std::string const p = std::string(pid(2).str());
    CHECK(fmt::format("{}", InvoiceCreated{an_envelope(0), usd(1999), "Annual plan"}) ==
          "InvoiceCreated inv_1 19.99 USD \"Annual plan\"");
    CHECK(fmt::format("{}", PaymentRequested{env, usd(1999), "pm_card_ok", "k", t0()}) ==
          "PaymentRequested inv_1 " + p + " #2 19.99 USD pm_card_ok");
    CHECK(fmt::format("{}", PaymentRequested{env, usd(1999), "pm_card_ok", "k", t0() + 1s}) ==
          "PaymentRequested inv_1 " + p + " #2 19.99 USD pm_card_ok not before 2026-01-01T00:00:01.000Z");
    CHECK(fmt::format("{}", PaymentSucceeded{env, usd(1999), "ch_9"}) ==
          "PaymentSucceeded inv_1 " + p + " #2 19.99 USD ch_9");
    CHECK(fmt::format("{}", PaymentFailed{env, {FailureKind::transient, "busy"}}) ==
          "PaymentFailed inv_1 " + p + " #2 TRANSIENT: busy");
    CHECK(fmt::format("{}", InvoicePaid{env, usd(1999)}) == "InvoicePaid inv_1 " + p + " #2 19.99 USD");
    CHECK(fmt::format("{}", InvoiceFailed{env, {FailureKind::declined, "no"}}) ==
          "InvoiceFailed inv_1 " + p + " #2 DECLINED: no");
    CHECK(fmt::format("{}", InvoiceNeedsReview{env, "amount"}) == "InvoiceNeedsReview inv_1 " + p + " #2: amount");
    Event const any = InvoicePaid{env, usd(1999)};
    CHECK(fmt::format("{}", any) == "InvoicePaid inv_1 " + p + " #2 19.99 USD");
}
