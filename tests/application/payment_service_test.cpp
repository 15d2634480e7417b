#include "support/world.hpp"

using namespace test;
using application::IdempotencyKey;
using application::InvoiceQuery;

namespace {

IdempotencyKey key(std::string k, std::string scope = "") { return IdempotencyKey::make(scope, k).value(); }

} // namespace

SCENARIO("creating invoices") {
    World world;
    Invoice invoice = world.create(usd(2500));
    CHECK(invoice.id().str().starts_with("inv_"));
    CHECK(world.invoice(invoice.id()) == invoice);
    CHECK(world.counter("invoices{status=\"PENDING\"}") == 1);

    auto same_id = world.service.create_invoice({.id = invoice.id(), .amount = usd(1)});
    CHECK(same_id.error().code == ErrorCode::already_exists);
    world.settle();
    CHECK(world.events_of<InvoiceCreated>().size() == 1);
}

SCENARIO("requesting a payment is refused where the invoice's state says so") {
    World world;
    CHECK(world.service.request_payment({.invoice_id = iid("inv_missing")}).result.error().code ==
          ErrorCode::not_found);
    Invoice invoice = world.create();
    CHECK(world.service.request_payment({.invoice_id = invoice.id(), .payment_method = "pm card"}).result.error().code ==
          ErrorCode::invalid_argument);
    world.pay(invoice, "pm_card_ok");
    CHECK(world.service.request_payment({.invoice_id = invoice.id()}).result.error().code ==
          ErrorCode::payment_in_progress);
    world.run();
    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
    CHECK(world.service.request_payment({.invoice_id = invoice.id()}).result.error().code ==
          ErrorCode::invoice_already_paid);
}

SCENARIO("the same idempotency key twice gives an equal result and exactly one event") {
    World world;
    Invoice invoice = world.create();
    application::RequestPayment const request{invoice.id(), "pm_card_ok", key("k-1"), {}};
    auto first = world.service.request_payment(request);
    auto second = world.service.request_payment(request);
    REQUIRE(first.result);
    CHECK_FALSE(first.replayed);
    CHECK(second.replayed);
    CHECK(second.result == first.result);
    world.run();
    CHECK(world.events_of<PaymentRequested>().size() == 1);
    CHECK(world.store.payments_of(invoice.id()).size() == 1);

    AND_THEN("a replay after the payment settled still returns the first response") {
        auto third = world.service.request_payment(request);
        CHECK(third.replayed);
        CHECK(third.result == first.result);
        CHECK(third.result->status() == PaymentStatus::requested);
    }
}

SCENARIO("one key used for a different request is refused") {
    World world;
    Invoice a = world.create(), b = world.create();
    REQUIRE(world.service.request_payment({a.id(), "pm_card_ok", key("k"), {}}).result);
    CHECK(world.service.request_payment({b.id(), "pm_card_ok", key("k"), {}}).result.error().code ==
          ErrorCode::idempotency_key_reused);
    CHECK(world.service.request_payment({a.id(), "pm_card_declined", key("k"), {}}).result.error().code ==
          ErrorCode::idempotency_key_reused);
}

SCENARIO("a key still being handled is in use") {
    World world;
    Invoice invoice = world.create();
    application::RequestPayment const request{invoice.id(), "pm_card_ok", key("k"), {}};
    auto claim = world.idempotency.claim(key("k"), std::string(invoice.id().str()) + "\npm_card_ok", world.clock.now());
    REQUIRE(claim.state == application::IdempotencyClaim::State::claimed);
    CHECK(world.service.request_payment(request).result.error().code == ErrorCode::idempotency_key_in_use);
    world.idempotency.release(key("k"));
    CHECK(world.service.request_payment(request).result);
}

SCENARIO("keys are scoped to their client and expire") {
    World world;
    Invoice a = world.create(), b = world.create();
    REQUIRE(world.service.request_payment({a.id(), "pm_card_ok", key("k", "client-1"), {}}).result);
    CHECK(world.service.request_payment({b.id(), "pm_card_ok", key("k", "client-2"), {}}).result);
    world.run();

    WHEN("a day and a moment have passed") {
        world.clock.advance(24h + 1s);
        auto again = world.service.request_payment({a.id(), "pm_card_ok", key("k", "client-1"), {}});
        THEN("the key is new again, and the request is judged afresh") {
            CHECK_FALSE(again.replayed);
            CHECK(again.result.error().code == ErrorCode::invoice_already_paid);
        }
    }
}

SCENARIO("invalid idempotency keys are refused") {
    CHECK(IdempotencyKey::make("", "").error().code == ErrorCode::invalid_argument);
    CHECK(IdempotencyKey::make("", std::string(256, 'k')).error().code == ErrorCode::invalid_argument);
    CHECK(IdempotencyKey::make("", "tab\tkey").error().code == ErrorCode::invalid_argument);
    CHECK(IdempotencyKey::make("", "caf\xc3\xa9").error().code == ErrorCode::invalid_argument);
    CHECK(IdempotencyKey::make("", std::string(255, '~')));
}

SCENARIO("listing invoices by status, in creation order, a page at a time") {
    World world;
    std::vector<InvoiceId> ids;
    for (int i = 0; i < 5; ++i) ids.push_back(world.create().id());
    world.pay(world.invoice(ids[1]), "pm_card_ok");
    world.pay(world.invoice(ids[3]), "pm_card_declined");
    world.run();

    auto page = world.service.invoices({.limit = 2}).value();
    REQUIRE(page.data.size() == 2);
    CHECK(page.data[0].id() == ids[0]);
    CHECK(page.next == ids[1]);
    page = world.service.invoices({.after = page.next, .limit = 2}).value();
    CHECK(page.data[0].id() == ids[2]);
    page = world.service.invoices({.after = page.next, .limit = 2}).value();
    CHECK(page.data.size() == 1);
    CHECK_FALSE(page.next);

    auto pending = world.service.invoices({.status = InvoiceStatus::pending}).value();
    CHECK(pending.data.size() == 3);
    auto paid = world.service.invoices({.status = InvoiceStatus::paid}).value();
    REQUIRE(paid.data.size() == 1);
    CHECK(paid.data[0].id() == ids[1]);

    CHECK(world.service.invoices({.limit = 0}).error().code == ErrorCode::invalid_argument);
    CHECK(world.service.invoices({.limit = 1001}).error().code == ErrorCode::invalid_argument);
    CHECK(world.service.invoices({.after = iid("inv_nope")}).error().code == ErrorCode::invalid_argument);
}

SCENARIO("reading payments") {
    World world;
    Invoice invoice = world.create();
    Payment payment = world.pay(invoice, "pm_card_flaky_1");
    world.run();
    auto attempts = world.service.payments_of(invoice.id()).value();
    REQUIRE(attempts.size() == 2);
    CHECK(attempts[0].id() == payment.id());
    CHECK(attempts[0].attempt() == 1);
    CHECK(attempts[1].attempt() == 2);
    CHECK(world.service.payment(attempts[1].id()).value() == attempts[1]);
    CHECK(world.service.payment(pid(404)).error().code == ErrorCode::not_found);
    CHECK(world.service.payments_of(iid("inv_nope")).error().code == ErrorCode::not_found);
}
