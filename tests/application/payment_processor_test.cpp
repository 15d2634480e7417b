#include "support/world.hpp"

#include <set>

using namespace test;

namespace {

// Checks each retry waited within [0, max_delay(n)] after attempt n failed.
void check_backoff(std::vector<Payment> const& attempts, RetryPolicy const& policy) {
    for (std::size_t i = 1; i < attempts.size(); ++i) {
        CAPTURE(i);
        Duration const waited = attempts[i].not_before() - attempts[i - 1].updated_at();
        CHECK(waited >= Duration::zero());
        CHECK(waited <= policy.max_delay(attempts[i - 1].attempt()));
        CHECK(attempts[i].created_at() == attempts[i - 1].updated_at()); // scheduled when the failure was recorded
    }
}

} // namespace

SCENARIO("a good card pays the invoice on the first attempt") {
    World world;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_ok");
    world.run();
    Invoice paid = world.invoice(invoice.id());
    CHECK(paid.status() == InvoiceStatus::paid);
    CHECK(paid.current_attempt() == 1);
    CHECK(world.gateway.charges_for(invoice.id()) == 1);
    auto events = world.events_of<InvoicePaid>();
    REQUIRE(events.size() == 1);
    CHECK(events[0].envelope.payment_id == paid.attempts()[0]);
    CHECK(world.service.payments_of(invoice.id()).value()[0].gateway_reference().starts_with("ch_"));
}

SCENARIO("a flaky card is paid on the third attempt, after two jittered backoffs") {
    World world;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_flaky_2");
    world.settle();
    Invoice waiting = world.invoice(invoice.id());
    CHECK(waiting.status() == InvoiceStatus::processing);
    REQUIRE(waiting.next_retry_at());
    CHECK(world.bus.stats().scheduled_pending == 1);

    world.run();
    Invoice paid = world.invoice(invoice.id());
    CHECK(paid.status() == InvoiceStatus::paid);
    auto attempts = world.service.payments_of(invoice.id()).value();
    REQUIRE(attempts.size() == 3);
    CHECK(attempts[0].failure()->kind == FailureKind::transient);
    CHECK(attempts[1].failure()->kind == FailureKind::transient);
    CHECK(attempts[2].status() == PaymentStatus::succeeded);
    check_backoff(attempts, RetryPolicy{});
    CHECK(world.gateway.charges_for(invoice.id()) == 1);
    CHECK(world.counter("payment_retries_scheduled_total") == 2);
}

SCENARIO("an unavailable gateway is tried exactly max-attempts times, then the invoice fails") {
    World world({.processor = {.retry = {.base = 100ms, .cap = 2s, .max_attempts = 4}}});
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_unavailable");
    world.run();
    Invoice failed = world.invoice(invoice.id());
    CHECK(failed.status() == InvoiceStatus::failed);
    CHECK(failed.current_attempt() == 4);
    CHECK(failed.last_failure()->reason == "gave up after 4 attempts: issuer unavailable");
    CHECK(world.gateway.calls() == 4);
    CHECK(world.gateway.charges_for(invoice.id()) == 0);
    CHECK(world.scheduler.pending() == 0);
    CHECK(world.bus.stats().scheduled_pending == 0);
    check_backoff(world.service.payments_of(invoice.id()).value(), RetryPolicy{.base = 100ms, .cap = 2s});
    CHECK(world.events_of<InvoiceFailed>().size() == 1);
}

SCENARIO("a declined card fails the invoice after one attempt, with no retry") {
    World world;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_declined");
    world.run();
    Invoice failed = world.invoice(invoice.id());
    CHECK(failed.status() == InvoiceStatus::failed);
    CHECK(failed.current_attempt() == 1);
    CHECK(failed.last_failure()->kind == FailureKind::declined);
    CHECK(world.counter("payment_retries_scheduled_total") == 0);
    CHECK(world.gateway.calls() == 1);
}

SCENARIO("a gateway that never answers: each attempt is verified, then retried under a key of its own") {
    World world({.processor = {.retry = {.max_attempts = 3}, .gateway_timeout = 5s, .settle_window = 1min}});
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_timeout");
    world.run();
    Invoice failed = world.invoice(invoice.id());
    CHECK(failed.status() == InvoiceStatus::failed);
    CHECK(failed.last_failure()->reason ==
          "gave up after 3 attempts: the gateway holds no charge for the key after the settle window");
    auto const keys = world.gateway.keys_seen();
    REQUIRE(keys.size() == 3);
    CHECK(std::set<std::string>(keys.begin(), keys.end()).size() == 3); // a key is never sent for two attempts
    for (Payment const& p : world.service.payments_of(invoice.id()).value()) {
        CHECK(p.gateway_key() == std::string(p.id().str()) + ".test");
        REQUIRE(p.unknown_since());
        CHECK(*p.unknown_since() - p.not_before() == 5s); // each attempt waited the full timeout
        CHECK(p.updated_at() - *p.unknown_since() >= 1min); // and was "not found" only after the window
    }
    CHECK(world.gateway.charges_for(invoice.id()) == 0);
}

SCENARIO("a charge whose answer was lost is found again through its key, not charged twice") {
    World world;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_lost_response");
    world.run();
    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
    CHECK(world.invoice(invoice.id()).current_attempt() == 1);
    CHECK(world.gateway.charges_for(invoice.id()) == 1);
    CHECK(world.gateway.calls() == 1); // found by a look-up, not by charging again
}

SCENARIO("redelivered PaymentRequested events never reach the gateway twice") {
    World world;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_ok");
    WHEN("the event is delivered twice before the gateway answers") {
        world.io.poll(); // first delivery: the charge is out, its answer not yet run
        world.io.restart();
        REQUIRE(world.processor->in_flight() == 1);
        world.bus.publish(world.events_of<PaymentRequested>().at(0));
        world.run();
        THEN("only one charge was attempted") {
            CHECK(world.gateway.calls() == 1);
            CHECK(world.counter("payment_duplicate_deliveries_total") == 1);
        }
    }
    WHEN("the event is delivered again after the attempt settled") {
        world.run();
        REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
        auto again = world.events_of<PaymentRequested>();
        REQUIRE(again.size() == 1);
        world.bus.publish(again[0]);
        world.run();
        THEN("it is ignored") {
            CHECK(world.gateway.calls() == 1);
            CHECK(world.gateway.charges_for(invoice.id()) == 1);
            CHECK(world.counter("payment_duplicate_deliveries_total") == 1);
        }
    }
}

SCENARIO("a FAILED invoice can be retried by hand and paid") {
    World world;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_declined");
    world.run();
    REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::failed);
    world.pay(invoice, "pm_card_ok");
    world.run();
    Invoice paid = world.invoice(invoice.id());
    CHECK(paid.status() == InvoiceStatus::paid);
    CHECK(paid.current_attempt() == 2);
    CHECK(paid.last_failure()->kind == FailureKind::declined); // history is kept
}

SCENARIO("metrics count what happened") {
    World world({.processor = {.retry = {.max_attempts = 2}}});
    std::vector<std::string> const methods = {"pm_card_ok", "pm_card_ok", "pm_card_declined", "pm_card_flaky_1",
                                              "pm_card_unavailable", "pm_card_timeout"};
    for (auto const& method : methods) world.pay(world.create(), method);
    world.create(); // stays PENDING
    world.run();

    auto all = world.service.invoices({.limit = 1000}).value().data;
    std::map<InvoiceStatus, int> by_status;
    int succeeded = 0, retries = 0, settled = 0;
    std::map<FailureKind, int> failed;
    for (Invoice const& invoice : all) {
        ++by_status[invoice.status()];
        for (Payment const& p : world.store.payments_of(invoice.id())) {
            if (p.status() == PaymentStatus::succeeded) ++succeeded;
            if (p.failure()) ++failed[p.failure()->kind];
            if (p.unknown_since()) ++failed[FailureKind::unknown_outcome]; // counted when it became unknown
            if (p.attempt() > 1) ++retries;
            if (!p.unknown_since()) ++settled; // answered in time: its latency was observed
        }
    }
    CHECK(by_status[InvoiceStatus::paid] == 3);
    CHECK(by_status[InvoiceStatus::failed] == 3);
    CHECK(world.counter("payments_requested_total") == static_cast<double>(methods.size()));
    CHECK(world.counter("payments_succeeded_total") == succeeded);
    CHECK(world.counter("payments_failed_total{kind=\"DECLINED\"}") == failed[FailureKind::declined]);
    CHECK(world.counter("payments_failed_total{kind=\"TRANSIENT\"}") == failed[FailureKind::transient]);
    CHECK(world.counter("payments_failed_total{kind=\"UNKNOWN_OUTCOME\"}") == failed[FailureKind::unknown_outcome]);
    CHECK(world.counter("payment_retries_scheduled_total") == retries);
    for (auto status : invoice_statuses)
        CHECK(world.counter("invoices{status=\"" + std::string(to_string(status)) + "\"}") == by_status[status]);
    CHECK(world.counter("payment_gateway_latency_seconds_count") == settled);
}

SCENARIO("the correlation id of the request follows every event it caused") {
    World world;
    Invoice invoice = world.create();
    auto correlation = CorrelationId::parse("req_abc").value();
    world.service.request_payment({invoice.id(), "pm_card_flaky_1", std::nullopt, correlation});
    world.run();
    std::set<std::string> seen;
    for (auto const& e : world.events)
        if (envelope_of(e).invoice_id == invoice.id() && !std::holds_alternative<InvoiceCreated>(e))
            seen.insert(std::string(envelope_of(e).correlation_id.str()));
    CHECK(seen == std::set<std::string>{"req_abc"});
}

SCENARIO("a last attempt whose answer was lost is verified at the gateway, and the invoice paid") {
    World world({.processor = {.retry = {.max_attempts = 1}, .gateway_timeout = 5s}});
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_lost_response");
    world.run();
    Invoice paid = world.invoice(invoice.id());
    CHECK(paid.status() == InvoiceStatus::paid);
    CHECK(paid.current_attempt() == 1);
    CHECK(world.gateway.charges_for(invoice.id()) == 1);
    CHECK(world.gateway.calls() == 1); // verified by a look-up, not by charging again
    CHECK(world.counter("payment_outcome_verifications_total") == 1);
    CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::succeeded);
}

SCENARIO("a look-up that goes unanswered is asked again") {
    World world({.processor = {.retry = {.cap = 30s, .max_attempts = 1}, .gateway_timeout = 5s}});
    world.gateway_port.unanswered_lookups = 1;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_lost_response");
    world.settle();
    world.clock.advance(5s); // the charge times out; the first look-up goes out and is never answered
    world.settle();
    CHECK(world.processor->in_flight() == 1); // the look-up is out
    world.clock.advance(5s); // the look-up times out
    world.settle();
    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
    world.bus.publish(world.events_of<PaymentRequested>().at(0)); // a redelivery meanwhile changes nothing
    world.run();
    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
    CHECK(world.gateway_port.lookups == 2);
    CHECK(world.gateway.calls() == 1);
    CHECK(world.processor->in_flight() == 0);
}
