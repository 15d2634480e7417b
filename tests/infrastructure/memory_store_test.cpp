#include "support/builders.hpp"

#include <payments/infrastructure/memory_store.hpp>

using namespace test;
using application::Changes;
using application::IdempotencyClaim;
using application::IdempotencyKey;

SCENARIO("commits are versioned and all or nothing") {
    infrastructure::InMemoryStore store;
    Invoice invoice = an_invoice();
    REQUIRE(store.commit({Changes::InvoiceWrite{invoice, 0}, {}}));
    CHECK(store.commit({Changes::InvoiceWrite{invoice, 0}, {}}).error().code == ErrorCode::already_exists);

    Invoice processing = invoice;
    auto requested = processing.request_payment(attempt(1), "pm_card_ok", meta()).value();
    processing.apply(requested);
    Payment payment = Payment::from(requested);

    WHEN("the invoice's expected version is stale") {
        auto result = store.commit({Changes::InvoiceWrite{processing, invoice.version() + 7}, {{payment, 0}}});
        THEN("nothing is written") {
            CHECK(result.error().code == ErrorCode::conflict);
            CHECK(store.invoice(invoice.id())->status() == InvoiceStatus::pending);
            CHECK_FALSE(store.payment(payment.id()));
        }
    }
    WHEN("the versions match") {
        REQUIRE(store.commit({Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}}));
        THEN("both are written together") {
            CHECK(store.invoice(invoice.id())->status() == InvoiceStatus::processing);
            CHECK(store.payments_of(invoice.id()) == std::vector<Payment>{payment});
        }
        AND_THEN("a second writer from the same read loses") {
            CHECK(store.commit({Changes::InvoiceWrite{processing, invoice.version()}, {}}).error().code ==
                  ErrorCode::conflict);
            CHECK(store.commit({std::nullopt, {{payment, 0}}}).error().code == ErrorCode::already_exists);
        }
    }
}

SCENARIO("a payment for an unknown invoice is refused") {
    infrastructure::InMemoryStore store;
    Payment orphan = Payment::from(current_request(a_processing_invoice()));
    CHECK(store.commit({std::nullopt, {{orphan, 0}}}).error().code == ErrorCode::not_found);
}

SCENARIO("idempotency records: claim, in use, replay, mismatch, release, expiry") {
    using State = IdempotencyClaim::State;
    infrastructure::InMemoryIdempotencyStore store(1h);
    auto const key = IdempotencyKey::make("client", "k").value();
    CHECK(store.claim(key, "req-a", t0()).state == State::claimed);
    CHECK(store.claim(key, "req-a", t0()).state == State::in_use);
    CHECK(store.claim(key, "req-b", t0()).state == State::mismatch);

    application::PaymentOutcome const outcome = reject(ErrorCode::not_found, "no invoice");
    store.complete(key, outcome, t0());
    auto replay = store.claim(key, "req-a", t0() + 59min);
    CHECK(replay.state == State::replay);
    CHECK(replay.stored == outcome);
    CHECK(store.claim(key, "req-a", t0() + 1h).state == State::replay); // exactly the TTL: not yet expired
    CHECK(store.claim(key, "req-a", t0() + 1h + 1us).state == State::claimed); // expired: a fresh claim

    auto const other = IdempotencyKey::make("", "k2").value();
    CHECK(store.claim(other, "x", t0()).state == State::claimed);
    store.release(other);
    CHECK(store.claim(other, "y", t0()).state == State::claimed);

    CHECK(store.purge_expired(t0() + 3h) == 2);
    CHECK(store.size() == 0);
}

SCENARIO("an idempotency record expires ttl after its completion, not after its claim") {
    using State = IdempotencyClaim::State;
    infrastructure::InMemoryIdempotencyStore store(1h);
    auto const slow = IdempotencyKey::make("", "slow").value();
    auto const quick = IdempotencyKey::make("", "quick").value();
    application::PaymentOutcome const outcome = reject(ErrorCode::not_found, "no invoice");
    CHECK(store.claim(slow, "a", t0()).state == State::claimed);
    CHECK(store.claim(quick, "a", t0() + 1min).state == State::claimed);
    store.complete(quick, outcome, t0() + 1min);
    store.complete(slow, outcome, t0() + 50min);

    CHECK(store.purge_expired(t0() + 1h) == 0);
    CHECK(store.purge_expired(t0() + 1h + 1min) == 0);       // quick, exactly its TTL: kept
    CHECK(store.purge_expired(t0() + 1h + 1min + 1us) == 1); // quick
    CHECK(store.claim(slow, "a", t0() + 1h + 49min).state == State::replay);
    // Each claim looks at what is due, so no explicit purge is needed.
    CHECK(store.claim(IdempotencyKey::make("", "later").value(), "a", t0() + 1h + 50min + 1us).state ==
          State::claimed);
    CHECK(store.size() == 1);
}
