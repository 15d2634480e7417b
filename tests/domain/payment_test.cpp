#include "support/builders.hpp"

#include <optional>

using namespace test;

namespace {

enum class PaymentCommand { succeed, fail, fail_unknown, confirm_charged, confirm_not_charged };

Payment a_payment_in(PaymentStatus status) {
    Payment payment = Payment::from(current_request(a_processing_invoice()));
    if (status == PaymentStatus::succeeded) payment.apply(payment.succeed("ch_1", usd(1000), meta()).value());
    if (status == PaymentStatus::failed)
        payment.apply(payment.fail({FailureKind::transient, "busy"}, meta()).value());
    if (status == PaymentStatus::unknown)
        payment.apply(payment.fail({FailureKind::unknown_outcome, "no answer"}, meta()).value());
    return payment;
}

Result<void> run(Payment& payment, PaymentCommand command) {
    auto apply = [&](auto event) -> Result<void> {
        if (!event) return event.error();
        payment.apply(*event);
        return {};
    };
    switch (command) {
    case PaymentCommand::succeed: return apply(payment.succeed("ch_9", usd(1000), meta()));
    case PaymentCommand::fail: return apply(payment.fail({FailureKind::declined, "no"}, meta()));
    case PaymentCommand::fail_unknown: return apply(payment.fail({FailureKind::unknown_outcome, "timeout"}, meta()));
    case PaymentCommand::confirm_charged: return apply(payment.confirm_charged("ch_op", usd(1000), meta()));
    case PaymentCommand::confirm_not_charged: return apply(payment.confirm_not_charged("refunded", meta()));
    }
    return {};
}

} // namespace

TEST_CASE("every (payment state, command) pair of the payment state machine") {
    struct Row {
        PaymentStatus from;
        PaymentCommand command;
        std::optional<ErrorCode> error;
        PaymentStatus to;
    };
    using S = PaymentStatus;
    using C = PaymentCommand;
    std::optional<ErrorCode> const ok;
    ErrorCode const invalid = ErrorCode::invalid_state;
    Row const rows[] = {
        {S::requested, C::succeed, ok, S::succeeded},
        {S::requested, C::fail, ok, S::failed},
        {S::requested, C::fail_unknown, ok, S::unknown},
        {S::requested, C::confirm_charged, ok, S::succeeded},
        {S::requested, C::confirm_not_charged, ok, S::failed},
        {S::succeeded, C::succeed, invalid, S::succeeded},
        {S::succeeded, C::fail, invalid, S::succeeded},
        {S::succeeded, C::fail_unknown, invalid, S::succeeded},
        {S::succeeded, C::confirm_charged, invalid, S::succeeded},
        {S::succeeded, C::confirm_not_charged, ok, S::failed}, // refunded, an operator says
        {S::failed, C::succeed, invalid, S::failed},
        {S::failed, C::fail, invalid, S::failed},
        {S::failed, C::fail_unknown, invalid, S::failed},
        {S::failed, C::confirm_charged, ok, S::succeeded}, // a contradiction an operator confirmed
        {S::failed, C::confirm_not_charged, invalid, S::failed},
        {S::unknown, C::succeed, ok, S::succeeded},        // a late or looked-up charge
        {S::unknown, C::fail, ok, S::failed},              // a late or looked-up refusal
        {S::unknown, C::fail_unknown, invalid, S::unknown}, // nothing new
        {S::unknown, C::confirm_charged, ok, S::succeeded},
        {S::unknown, C::confirm_not_charged, ok, S::failed},
    };
    CHECK(std::size(rows) == 4 * 5);
    for (Row const& row : rows) {
        CAPTURE(to_string(row.from));
        CAPTURE(static_cast<int>(row.command));
        Payment payment = a_payment_in(row.from);
        REQUIRE(payment.status() == row.from);
        std::uint64_t const version = payment.version();
        auto result = run(payment, row.command);
        REQUIRE(result.has_error() == row.error.has_value());
        if (row.error) CHECK(result.error().code == *row.error);
        CHECK(payment.status() == row.to);
        CHECK(payment.version() == version + (row.error ? 0 : 1));
    }
}

TEST_CASE("an unknown answer is kept as history once the payment settles") {
    Payment payment = a_payment_in(PaymentStatus::unknown);
    CHECK(payment.unresolved());
    REQUIRE(payment.unknown_since());
    payment.apply(payment.succeed("ch_late", usd(1000), meta(t0() + 30s)).value());
    CHECK_FALSE(payment.unresolved());
    CHECK(payment.unknown_since() == t0());
    CHECK(payment.gateway_reference() == "ch_late");
    CHECK_FALSE(payment.failure());
}

TEST_CASE("a settled payment records its outcome") {
    Payment ok = a_payment_in(PaymentStatus::succeeded);
    CHECK(ok.gateway_reference() == "ch_1");
    CHECK_FALSE(ok.failure());
    Payment failed = a_payment_in(PaymentStatus::failed);
    REQUIRE(failed.failure());
    CHECK(failed.failure()->kind == FailureKind::transient);
    CHECK(failed.attempt() == 1);
    CHECK(failed.amount() == usd(1000));
}
