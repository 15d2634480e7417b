#include "support/builders.hpp"

#include <payments/infrastructure/store/memory_store.hpp>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

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

SCENARIO("updates of the same invoices from several threads: one attempt each, nothing half written") {
    // Few shards: an invoice's payment lands on a lower shard as often as on
    // a higher one, so update() takes both of its lock paths.
    infrastructure::InMemoryStore store(4);
    constexpr int invoices = 200;
    constexpr int threads = 4;
    for (int i = 0; i < invoices; ++i)
        REQUIRE(store.commit({Changes::InvoiceWrite{
                                  Invoice::from(Invoice::create(iid("inv_" + std::to_string(i)), usd(100), "", meta()).value()),
                                  0},
                              {}}));
    std::atomic<int> succeeded{0}, refused{0}, other{0};
    auto apply = [](Invoice& invoice, Changes const& decided) {
        invoice.apply(std::get<PaymentRequested>(decided.events.front()));
    };
    {
        std::vector<std::jthread> workers;
        for (int t = 0; t < threads; ++t)
            workers.emplace_back([&, t] {
                for (int i = 0; i < invoices; ++i) {
                    auto decide = [&](Invoice const& stored) -> Result<Changes> {
                        auto event = stored.request_payment(attempt(t * 1000 + i), "pm_card_ok", meta());
                        if (!event) return event.error();
                        Changes changes{std::nullopt, {{Payment::from(*event), 0}}};
                        changes.events.emplace_back(std::move(*event));
                        return changes;
                    };
                    auto done = store.update(iid("inv_" + std::to_string(i)), decide, apply);
                    if (done) ++succeeded;
                    else if (done.error().code == ErrorCode::payment_in_progress || done.error().code == ErrorCode::conflict)
                        ++refused;
                    else ++other;
                }
            });
    }
    THEN("each invoice has exactly one attempt, stored, and no loser's payment is") {
        CHECK(succeeded == invoices);
        CHECK(refused == invoices * (threads - 1));
        CHECK(other == 0);
        CHECK(store.payment_count() == static_cast<std::size_t>(invoices));
        for (int i = 0; i < invoices; ++i) {
            auto invoice = store.invoice(iid("inv_" + std::to_string(i)));
            REQUIRE(invoice);
            REQUIRE(invoice->attempts().size() == 1);
            CHECK(invoice->status() == InvoiceStatus::processing);
            CHECK(store.payment(invoice->attempts().front()));
            CHECK(store.history(invoice->id()).size() == 1);
        }
    }
}

namespace {

// The first id "<prefix><n>" that lands on shard `shard` of `shards`.
template <class Id>
Id id_on_shard(std::string const& prefix, std::size_t shard, std::size_t shards) {
    for (int n = 0;; ++n) {
        Id id = Id::parse(prefix + std::to_string(n)).value();
        if (std::hash<Id>{}(id) % shards == shard) return id;
    }
}

} // namespace

SCENARIO("an update that must let go of its invoice's lock to take a lower one loses if the invoice moved meanwhile") {
    // Shards 0 < 3. B holds shard 0 (its decision waits); A decides on an
    // invoice of shard 3 a payment of shard 0, cannot take 0 at once, lets go
    // of 3 and waits for 0; meanwhile C moves A's invoice.
    infrastructure::InMemoryStore store(4);
    InvoiceId const mine = id_on_shard<InvoiceId>("inv_a", 3, 4);
    InvoiceId const blocker = id_on_shard<InvoiceId>("inv_b", 0, 4);
    PaymentId const low = id_on_shard<PaymentId>("pay_l", 0, 4);
    PaymentId const high = id_on_shard<PaymentId>("pay_h", 3, 4);
    for (InvoiceId const& id : {mine, blocker})
        REQUIRE(store.commit({Changes::InvoiceWrite{Invoice::from(Invoice::create(id, usd(100), "", meta()).value()), 0}, {}}));
    auto requesting = [](PaymentId id) {
        return [id](Invoice const& stored) -> Result<Changes> {
            auto event = stored.request_payment(attempt(id), "pm_card_ok", meta());
            if (!event) return event.error();
            Changes changes{std::nullopt, {{Payment::from(*event), 0}}};
            changes.events.emplace_back(std::move(*event));
            return changes;
        };
    };
    auto apply = [](Invoice& invoice, Changes const& decided) {
        invoice.apply(std::get<PaymentRequested>(decided.events.front()));
    };

    std::promise<void> b_holds, b_may_go, a_decided;
    std::jthread b([&] {
        (void)store.update(blocker, [&](Invoice const&) -> Result<Changes> {
            b_holds.set_value();
            b_may_go.get_future().wait();
            return reject(ErrorCode::invalid_state, "B decides nothing");
        }, apply);
    });
    b_holds.get_future().wait();
    Result<Changes> a_result = reject(ErrorCode::unavailable, "not run");
    std::jthread a([&] {
        auto decide = requesting(low);
        a_result = store.update(mine, [&](Invoice const& stored) {
            auto decided = decide(stored);
            a_decided.set_value();
            return decided;
        }, apply);
    });
    a_decided.get_future().wait();
    auto c_result = store.update(mine, requesting(high), apply); // waits for A to let go of shard 3
    b_may_go.set_value();
    a.join();

    THEN("C's attempt stands, and A's is refused as a conflict, not applied over it") {
        REQUIRE(c_result);
        CHECK(a_result.error().code == ErrorCode::conflict);
        auto invoice = store.invoice(mine);
        CHECK(invoice->attempts() == std::vector<PaymentId>{high});
        CHECK(store.payment(high));
        CHECK_FALSE(store.payment(low));
    }
}

SCENARIO("review22 G6: a scheduled event committed again is not numbered again, as it adds no row") {
    infrastructure::InMemoryStore store;
    auto const created = Invoice::create(iid("inv_1"), usd(700), "", meta()).value();
    InvoiceCreated retry = created;
    retry.envelope.id = meta().id;
    Changes first{Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
    first.scheduled.push_back({retry, t0() + 1min});
    REQUIRE(store.commit(first));
    auto const other = Invoice::create(iid("inv_2"), usd(700), "", meta()).value();
    Changes again{Changes::InvoiceWrite{Invoice::from(other), 0}, {}};
    again.scheduled.push_back({retry, t0() + 1min});
    REQUIRE(store.commit(again));
    auto const page = store.scheduled_page({}, 1);
    REQUIRE(page.next);
    CHECK(page.next->through == 1u);
}
