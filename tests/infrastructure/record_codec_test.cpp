// The durable stores' codec: every aggregate state, event kind and outcome
// reads back equal, and bytes it did not write are refused, never trusted.
#include "support/builders.hpp"

#include "infrastructure/store/record_codec.hpp"

using namespace test;
namespace codec = payments::infrastructure::codec;

namespace {

// An invoice waiting for its second attempt: a retry time, a last failure, a current method.
Invoice an_invoice_awaiting_a_retry() {
    Invoice invoice = a_processing_invoice("pm_card_flaky_1");
    auto failed = failure_of(invoice, FailureKind::transient, "issuer unavailable");
    ScriptedRandom random({0x7fffffffffffffffULL}); // a long backoff, so the retry time is in the future
    auto next = invoice.settle_failure(failed, RetryPolicy{}, random, attempt(2), meta()).value();
    invoice.apply(failed);
    invoice.apply(std::get<PaymentRequested>(next));
    return invoice;
}

Invoice an_invoice_in_review() {
    Invoice invoice = a_processing_invoice();
    invoice.apply(invoice.require_review(pid(1), "no answer", meta()).value());
    return invoice;
}

} // namespace

SCENARIO("every invoice state survives the codec unchanged") {
    for (Invoice const& invoice : {an_invoice(), a_processing_invoice(), an_invoice_awaiting_a_retry(), a_paid_invoice(),
                                   a_failed_invoice(), an_invoice_in_review()}) {
        CAPTURE(to_string(invoice.status()));
        CHECK(codec::decode_invoice(codec::encode(invoice)) == invoice);
    }
    REQUIRE(an_invoice_awaiting_a_retry().next_retry_at());
}

SCENARIO("every payment state, event kind and outcome survives the codec unchanged") {
    Invoice const invoice = a_processing_invoice();
    Payment const requested = Payment::from(current_request(invoice));
    Payment succeeded = requested;
    succeeded.apply(succeeded.succeed("ch_1", invoice.amount(), meta()).value());
    Payment unknown = requested;
    unknown.apply(unknown.fail({FailureKind::unknown_outcome, "timeout"}, meta()).value());
    Payment failed = requested;
    failed.apply(failed.fail({FailureKind::declined, "no"}, meta()).value());
    for (Payment const& payment : {requested, succeeded, unknown, failed}) {
        CAPTURE(to_string(payment.status()));
        CHECK(codec::decode_payment(codec::encode(payment)) == payment);
        CHECK(codec::decode_outcome(codec::encode(application::PaymentResult(payment))).value() == payment);
    }
    application::PaymentResult const refusal = reject(ErrorCode::invalid_argument, "bad method");
    CHECK(codec::decode_outcome(codec::encode(refusal)).error() == refusal.error());

    std::vector<Event> const events = {
        Invoice::create(iid("inv_9"), usd(5), "d", meta()).value(), current_request(invoice), success_of(invoice),
        failure_of(invoice, FailureKind::transient), InvoicePaid{current_request(invoice).envelope, usd(5)},
        InvoiceFailed{current_request(invoice).envelope, {FailureKind::declined, "no"}},
        InvoiceNeedsReview{current_request(invoice).envelope, "why"}};
    REQUIRE(events.size() == event_kinds);
    for (Event const& event : events) {
        CAPTURE(event_name(event));
        CHECK(codec::decode_event(codec::encode(event)) == event);
    }
}

SCENARIO("bytes the codec did not write are refused") {
    std::string const bytes = codec::encode(a_paid_invoice());
    CHECK_THROWS_AS(codec::decode_invoice(bytes.substr(0, bytes.size() / 2)), codec::CorruptRecord);
    CHECK_THROWS_AS(codec::decode_payment(bytes), codec::CorruptRecord); // another kind
    std::string future = bytes;
    future[0] = static_cast<char>(99); // a format version from a later release
    CHECK_THROWS_AS(codec::decode_invoice(future), codec::CorruptRecord);
    CHECK_THROWS_AS(codec::decode_event(""), codec::CorruptRecord);
}

SCENARIO("an event's bytes on disk keep the layout earlier releases wrote") {
    GIVEN("an InvoicePaid with short ids, at time 5") {
        EventEnvelope envelope{EventId::parse("evt_a").value(), Timestamp(Duration(5)),
                               CorrelationId::parse("req_b").value(), iid("inv_c"), pid(7), 2};
        Event const event = InvoicePaid{envelope, usd(300)};
        WHEN("it is encoded") {
            std::string const bytes = codec::encode(event);
            THEN("the bytes are format 1, the event tag, its kind, the envelope, then the amount") {
                std::string expected = {1, 3, static_cast<char>(event_index<InvoicePaid>())};
                for (std::string_view text : {"evt_a"}) expected += char(text.size()) + std::string(text);
                expected += char(10); // zigzag(5)
                for (std::string_view text : {"req_b", "inv_c", "pay_7"}) expected += char(text.size()) + std::string(text);
                expected += char(4);                                      // zigzag(2), the attempt
                expected += std::string{static_cast<char>(0xd8), 0x04};   // zigzag(300) as a varint
                expected += char(3) + std::string("USD");
                CHECK(bytes == expected);
                CHECK(codec::decode_event(bytes) == event);
            }
        }
    }
}

SCENARIO("a payment request written before attempts named their gateway still decodes") {
    GIVEN("a PaymentRequested whose record ends before the gateway field") {
        Invoice const invoice = a_processing_invoice();
        PaymentRequested request = current_request(invoice);
        request.gateway = "g";
        std::string bytes = codec::encode(Event{request});
        bytes.resize(bytes.size() - 2); // the gateway's length and its one character
        WHEN("it is decoded") {
            Event const decoded = codec::decode_event(bytes);
            THEN("it is the same request, with no gateway named") {
                request.gateway.clear();
                CHECK(decoded == Event{request});
            }
        }
    }
}
