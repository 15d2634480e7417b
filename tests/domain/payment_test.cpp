#include "support/builders.hpp"

#include <optional>

using namespace test;

namespace {

enum class Command { succeed, fail };

Payment a_payment_in(PaymentStatus status) {
    Payment payment = Payment::from(current_request(a_processing_invoice()));
    if (status == PaymentStatus::succeeded) payment.apply(payment.succeed("ch_1", meta()).value());
    if (status == PaymentStatus::failed)
        payment.apply(payment.fail({FailureKind::transient, "busy"}, meta()).value());
    return payment;
}

} // namespace

TEST_CASE("every (payment state, command) pair of the payment state machine") {
    struct Row {
        PaymentStatus from;
        Command command;
        std::optional<ErrorCode> error;
        PaymentStatus to;
    };
    using S = PaymentStatus;
    Row const rows[] = {
        {S::requested, Command::succeed, std::nullopt, S::succeeded},
        {S::requested, Command::fail, std::nullopt, S::failed},
        {S::succeeded, Command::succeed, ErrorCode::invalid_state, S::succeeded},
        {S::succeeded, Command::fail, ErrorCode::invalid_state, S::succeeded},
        {S::failed, Command::succeed, ErrorCode::invalid_state, S::failed},
        {S::failed, Command::fail, ErrorCode::invalid_state, S::failed},
    };
    CHECK(std::size(rows) == 3 * 2);
    for (Row const& row : rows) {
        CAPTURE(to_string(row.from));
        CAPTURE(static_cast<int>(row.command));
        Payment payment = a_payment_in(row.from);
        std::uint64_t const version = payment.version();
        if (row.command == Command::succeed) {
            auto event = payment.succeed("ch_9", meta());
            REQUIRE(event.has_error() == row.error.has_value());
            if (event) payment.apply(*event);
            else CHECK(event.error().code == *row.error);
        } else {
            auto event = payment.fail({FailureKind::declined, "no"}, meta());
            REQUIRE(event.has_error() == row.error.has_value());
            if (event) payment.apply(*event);
            else CHECK(event.error().code == *row.error);
        }
        CHECK(payment.status() == row.to);
        CHECK(payment.version() == version + (row.error ? 0 : 1));
    }
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
