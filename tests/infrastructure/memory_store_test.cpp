#include "support/builders.hpp"

#include <payments/infrastructure/store/memory_store.hpp>

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

    application::PaymentResult const outcome = reject(ErrorCode::not_found, "no invoice");
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
    application::PaymentResult const outcome = reject(ErrorCode::not_found, "no invoice");
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

SCENARIO("at the idempotency cap, the client holding the most records loses its oldest completed one") {
    using State = IdempotencyClaim::State;
    infrastructure::InMemoryIdempotencyStore store(1h, 4);
    application::PaymentResult const outcome = reject(ErrorCode::invalid_state, "x");
    auto const key = [](char const* scope, char const* k) { return IdempotencyKey::make(scope, k).value(); };
    GIVEN("client a with one completed record and client b with three: the store is full") {
        for (auto const& k : {key("a", "1"), key("b", "1"), key("b", "2"), key("b", "3")}) {
            REQUIRE(store.claim(k, "f", t0()).state == State::claimed);
            store.complete(k, outcome, t0());
        }
        WHEN("b claims a fresh key") {
            REQUIRE(store.claim(key("b", "4"), "f", t0()).state == State::claimed);
            THEN("b's oldest record is evicted, a's is kept, and the store stays at the cap") {
                CHECK(store.size() == 4);
                CHECK(store.evictions() == 1);
                CHECK(store.claim(key("a", "1"), "f", t0()).state == State::replay);
                CHECK(store.claim(key("b", "2"), "f", t0()).state == State::replay);
                CHECK(store.claim(key("b", "1"), "f", t0()).state == State::claimed); // forgotten
            }
        }
        WHEN("a claims fresh keys until it holds the most") {
            for (auto const& k : {key("a", "2"), key("a", "3"), key("a", "4")}) {
                REQUIRE(store.claim(k, "f", t0()).state == State::claimed);
                store.complete(k, outcome, t0());
            }
            THEN("b lost records while it held the most, then a lost its own") {
                CHECK(store.size() == 4);
                CHECK(store.evictions() == 3);
                CHECK(store.claim(key("b", "3"), "f", t0()).state == State::replay);
                CHECK(store.claim(key("a", "4"), "f", t0()).state == State::replay);
            }
        }
    }
}

SCENARIO("idempotency records of requests still running are never evicted") {
    using State = IdempotencyClaim::State;
    infrastructure::InMemoryIdempotencyStore store(1h, 2);
    auto const key = [](char const* k) { return IdempotencyKey::make("", k).value(); };
    GIVEN("two requests running, holding the whole cap") {
        REQUIRE(store.claim(key("1"), "f", t0()).state == State::claimed);
        REQUIRE(store.claim(key("2"), "f", t0()).state == State::claimed);
        WHEN("a third claims a key") {
            auto const third = store.claim(key("3"), "f", t0());
            THEN("it runs too: the store exceeds the cap by the requests in flight, evicting none") {
                CHECK(third.state == State::claimed);
                CHECK(store.size() == 3);
                CHECK(store.evictions() == 0);
                CHECK(store.claim(key("1"), "f", t0()).state == State::in_use);
            }
        }
    }
}
