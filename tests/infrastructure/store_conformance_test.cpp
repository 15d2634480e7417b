// One suite, run against every Store: the in-memory one, SQLite and
// PostgreSQL, so that their behaviour cannot differ silently.
#include "support/builders.hpp"
#include "support/postgres.hpp"
#include "support/temp_dir.hpp"

#include <payments/infrastructure/store/memory_store.hpp>
#include <payments/infrastructure/store/sqlite_store.hpp>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <stdexcept>

using namespace test;
using application::Changes;
using application::IdempotencyClaim;
using application::IdempotencyKey;

namespace {

struct MemoryStores {
    infrastructure::InMemoryStore memory;
    infrastructure::InMemoryIdempotencyStore memory_keys{1h};
    application::Store& store = memory;
    application::IdempotencyStore& keys = memory_keys;
    bool ready() const { return true; }
};

struct SqliteStores {
    TempDir dir;
    std::unique_ptr<infrastructure::SqliteStore> sqlite =
        infrastructure::SqliteStore::open({.path = dir.file("payments.db"), .idempotency_ttl = 1h}).value();
    application::Store& store = *sqlite;
    application::IdempotencyStore& keys = *sqlite;
    bool ready() const { return true; }
};

// On a schema of its own on the test server; without a server (outside CI)
// ready() is false and the scenario returns at once.
struct PostgresStores {
    std::optional<std::string> uri = test_postgres_uri();
    std::optional<TestSchema> schema = uri ? std::optional<TestSchema>(std::in_place, *uri) : std::nullopt;
    std::unique_ptr<infrastructure::PostgresStore> postgres = open();
    infrastructure::InMemoryStore unused;
    infrastructure::InMemoryIdempotencyStore unused_keys{1h};
    application::Store& store = postgres ? static_cast<application::Store&>(*postgres) : unused;
    application::IdempotencyStore& keys = postgres ? static_cast<application::IdempotencyStore&>(*postgres) : unused_keys;
    bool ready() const { return postgres != nullptr; }

    std::unique_ptr<infrastructure::PostgresStore> open() {
        if (!schema) return nullptr;
        auto options = schema->options();
        options.idempotency_ttl = 1h;
        auto opened = infrastructure::PostgresStore::open(options);
        REQUIRE_MESSAGE(opened, (opened ? "" : opened.error().detail));
        return std::move(*opened);
    }
};

// The invoice made PROCESSING by attempt `payment`, its payment, and the event.
struct Requested {
    Invoice invoice;
    Payment payment;
    PaymentRequested event;
};

Requested request(Invoice invoice, int payment) {
    auto event = invoice.request_payment(attempt(payment), "pm_card_ok", meta()).value();
    invoice.apply(event);
    return {std::move(invoice), Payment::from(event), event};
}

// Commits through commit_async() and waits for its one answer (a durable
// store gives it on its writer thread).
Result<void> commit_and_wait(application::Store& store, Changes changes) {
    // Shared: a failed wait below must not leave the writer a destroyed promise.
    // A second answer would throw on the writer's thread.
    auto answered = std::make_shared<std::promise<Result<void>>>();
    auto answer = answered->get_future();
    store.commit_async(std::move(changes), [answered](Result<void> result) { answered->set_value(std::move(result)); });
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    return answer.get();
}

} // namespace

SCENARIO_TEMPLATE("a store's asynchronous commit answers what commit would, once it can be read back", Stores,
                  MemoryStores, SqliteStores, PostgresStores) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    GIVEN("an invoice and its event committed asynchronously") {
        auto created = Invoice::create(iid(), usd(700), "", meta()).value();
        Invoice invoice = Invoice::from(created);
        Changes creation{Changes::InvoiceWrite{invoice, 0}, {}};
        creation.events.emplace_back(created);
        REQUIRE(commit_and_wait(store, creation));
        THEN("once answered, the invoice reads back and its event is in the outbox") {
            CHECK(store.invoice(invoice.id()) == invoice);
            auto undelivered = store.undelivered();
            REQUIRE(undelivered.size() == 1);
            CHECK(std::get<InvoiceCreated>(undelivered[0]) == created);
        }
        WHEN("two asynchronous commits are made from the same read") {
            auto [processing, payment, requested] = request(invoice, 1);
            Changes first{Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}};
            first.events.emplace_back(requested);
            auto const one = commit_and_wait(store, first);
            auto const two = commit_and_wait(store, {Changes::InvoiceWrite{processing, invoice.version()}, {}});
            THEN("the first is written whole, the second answers conflict and writes nothing") {
                REQUIRE(one);
                CHECK(two.error().code == ErrorCode::conflict);
                CHECK(store.invoice(invoice.id()) == processing);
                CHECK(store.payment(payment.id()) == payment);
                CHECK(store.undelivered().size() == 2);
            }
            AND_WHEN("its event is delivered") {
                store.mark_delivered(requested.envelope.id);
                // A durable store writes the mark with its next commit.
                REQUIRE(commit_and_wait(store, {Changes::InvoiceWrite{invoice_numbered(9), 0}, {}}));
                THEN("the asynchronous commit recorded where its event is: it leaves the outbox") {
                    auto undelivered = store.undelivered();
                    REQUIRE(undelivered.size() == 1);
                    CHECK(std::get<InvoiceCreated>(undelivered[0]) == created);
                }
            }
        }
    }
}

SCENARIO_TEMPLATE("a durable store's writer outlives a callback that throws", Stores, SqliteStores, PostgresStores) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    GIVEN("an asynchronous commit whose callback throws, then another commit") {
        auto calls = std::make_shared<std::atomic<int>>(0);
        store.commit_async({Changes::InvoiceWrite{invoice_numbered(1), 0}, {}}, [calls](Result<void>) {
            ++*calls;
            throw std::runtime_error("the caller's scheduler is shut down");
        });
        auto const next = commit_and_wait(store, {Changes::InvoiceWrite{invoice_numbered(2), 0}, {}});
        THEN("the writer answered the callback once and goes on answering: both commits are written") {
            CHECK(calls->load() == 1);
            CHECK(next);
            CHECK(store.invoice(invoice_numbered(1).id()));
            CHECK(store.commit({Changes::InvoiceWrite{invoice_numbered(3), 0}, {}}));
        }
    }
}

SCENARIO_TEMPLATE("a store's commits are versioned and all or nothing", Stores, MemoryStores, SqliteStores, PostgresStores) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    GIVEN("an invoice committed") {
        Invoice invoice = an_invoice();
        REQUIRE(store.commit({Changes::InvoiceWrite{invoice, 0}, {}}));
        CHECK(store.commit({Changes::InvoiceWrite{invoice, 0}, {}}).error().code == ErrorCode::already_exists);
        CHECK(store.invoice(invoice.id()) == invoice);
        auto [processing, payment, event] = request(invoice, 1);

        WHEN("a write carries a stale version") {
            auto result = store.commit({Changes::InvoiceWrite{processing, invoice.version() + 7}, {{payment, 0}}});
            THEN("nothing of it is written") {
                CHECK(result.error().code == ErrorCode::conflict);
                CHECK(store.invoice(invoice.id())->status() == InvoiceStatus::pending);
                CHECK_FALSE(store.payment(payment.id()));
            }
        }
        WHEN("the versions match") {
            REQUIRE(store.commit({Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}}));
            THEN("both are written together, and read back equal") {
                CHECK(store.invoice(invoice.id()) == processing);
                CHECK(store.payment(payment.id()) == payment);
                CHECK(store.payments_of(invoice.id()) == std::vector<Payment>{payment});
            }
            AND_THEN("a second writer from the same read loses") {
                CHECK(store.commit({Changes::InvoiceWrite{processing, invoice.version()}, {}}).error().code ==
                      ErrorCode::conflict);
                CHECK(store.commit({std::nullopt, {{payment, 0}}}).error().code == ErrorCode::already_exists);
            }
            AND_THEN("a commit whose invoice is current but whose payment is stale writes nothing") {
                Payment settled = payment;
                auto succeeded = settled.succeed("ch_1", settled.amount(), meta()).value();
                settled.apply(succeeded);
                Invoice paid = processing;
                paid.apply(std::get<InvoicePaid>(paid.settle_success(succeeded, meta()).value()));
                auto result = store.commit({Changes::InvoiceWrite{paid, processing.version()}, {{settled, 99}}});
                CHECK(result.error().code == ErrorCode::conflict);
                CHECK(store.invoice(invoice.id()) == processing);
                CHECK(store.payment(payment.id()) == payment);
            }
            AND_THEN("a payment's update at its version is written") {
                Payment settled = payment;
                settled.apply(settled.succeed("ch_1", settled.amount(), meta()).value());
                REQUIRE(store.commit({std::nullopt, {{settled, payment.version()}}}));
                CHECK(store.payment(payment.id()) == settled);
                CHECK(store.commit({std::nullopt, {{settled, payment.version()}}}).error().code == ErrorCode::conflict);
            }
        }
        WHEN("a new payment comes without its invoice") {
            THEN("it is refused") {
                CHECK(store.commit({std::nullopt, {{payment, 0}}}).error().code == ErrorCode::invalid_argument);
            }
        }
    }
    GIVEN("no invoice") {
        Payment orphan = Payment::from(current_request(a_processing_invoice()));
        THEN("a payment for it is refused") {
            CHECK(store.commit({std::nullopt, {{orphan, 0}}}).error().code == ErrorCode::not_found);
            CHECK_FALSE(store.invoice(orphan.invoice_id()));
            CHECK(store.payments_of(orphan.invoice_id()).empty());
        }
    }
}

namespace {

// How a scenario updates: store.update(), or store.update_async() waited for.
using Update = std::function<Result<Changes>(application::Store&, InvoiceId const&, application::Store::Decide const&,
                                             application::Store::Apply const&)>;

Result<Changes> update_at_once(application::Store& store, InvoiceId const& id, application::Store::Decide const& decide,
                               application::Store::Apply const& apply) {
    return store.update(id, decide, apply);
}

// update_async() and its one answer; a refusal known before any commit
// (not_found, the decision's) comes before update_async() returns.
Result<Changes> update_and_wait(application::Store& store, InvoiceId const& id, application::Store::Decide const& decide,
                                application::Store::Apply const& apply) {
    auto answered = std::make_shared<std::promise<Result<Changes>>>();
    auto answer = answered->get_future();
    store.update_async(id, decide, apply, [answered](Result<Changes> result) { answered->set_value(std::move(result)); });
    bool const at_once = answer.wait_for(0s) == std::future_status::ready;
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    auto result = answer.get();
    bool const known_before_commit = !result && (result.error().code == ErrorCode::not_found ||
                                                 result.error().code == ErrorCode::payment_in_progress);
    if (known_before_commit) CHECK_MESSAGE(at_once, "a refusal known before any commit came after update_async() returned");
    return result;
}

template <class Stores>
void update_conformance(Update const& update) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    // Requests attempt `n` of the invoice as it is stored.
    auto requesting = [](int n) {
        return [n](Invoice const& stored) -> Result<Changes> {
            auto event = stored.request_payment(attempt(n), "pm_card_ok", meta());
            if (!event) return event.error();
            Changes changes{std::nullopt, {{Payment::from(*event), 0}}};
            changes.events.emplace_back(std::move(*event));
            return changes;
        };
    };
    auto const apply = [](Invoice& invoice, Changes const& decided) {
        invoice.apply(std::get<PaymentRequested>(decided.events.front()));
    };
    GIVEN("an invoice committed") {
        Invoice invoice = an_invoice();
        REQUIRE(store.commit({Changes::InvoiceWrite{invoice, 0}, {}}));
        auto const [processing, payment, event] = request(invoice, 1);

        WHEN("a step is decided and applied on it") {
            auto done = update(store, invoice.id(), requesting(1), apply);
            THEN("the invoice, its new payment and the event are written together, and the event is handed back") {
                REQUIRE(done);
                REQUIRE(done->events.size() == 1);
                auto const& made = std::get<PaymentRequested>(done->events.front());
                Invoice expected = invoice;
                expected.apply(made);
                CHECK(store.invoice(invoice.id()) == expected);
                CHECK(store.invoice(invoice.id())->version() == processing.version());
                CHECK(store.payment(payment.id()) == Payment::from(made));
                CHECK(store.undelivered() == done->events);
                CHECK(store.history(invoice.id()) == done->events);
            }
        }
        WHEN("the decision refuses") {
            REQUIRE(update(store, invoice.id(), requesting(1), apply));
            auto const before = store.invoice(invoice.id());
            auto again = update(store, invoice.id(), requesting(2), apply);
            THEN("nothing more is written") {
                CHECK(again.error().code == ErrorCode::payment_in_progress);
                CHECK(store.invoice(invoice.id()) == before);
                CHECK_FALSE(store.payment(attempt(2).id));
            }
        }
        WHEN("the new payment's id is already taken") {
            Invoice other = invoice_numbered(2);
            REQUIRE(store.commit({Changes::InvoiceWrite{other, 0}, {}}));
            auto [other_processing, taken, unused] = request(other, 1); // attempt 1's id, on the other invoice
            REQUIRE(store.commit({Changes::InvoiceWrite{other_processing, other.version()}, {{taken, 0}}}));
            auto result = update(store, invoice.id(), requesting(1), apply);
            THEN("the invoice is left as it was") {
                CHECK(result.error().code == ErrorCode::already_exists);
                CHECK(store.invoice(invoice.id()) == invoice);
                CHECK(store.payment(taken.id()) == taken);
                CHECK(store.history(invoice.id()).empty());
            }
        }
    }
    GIVEN("no invoice") {
        THEN("an update is not_found") {
            CHECK(update(store, iid("inv_none"), requesting(1), apply).error().code == ErrorCode::not_found);
        }
    }
}

} // namespace

SCENARIO_TEMPLATE("a store's update decides on the stored invoice and commits it whole", Stores, MemoryStores,
                  SqliteStores, PostgresStores) {
    update_conformance<Stores>(update_at_once);
}

SCENARIO_TEMPLATE("a store's asynchronous update answers what its update would", Stores, MemoryStores, SqliteStores,
                  PostgresStores) {
    update_conformance<Stores>(update_and_wait);
}

SCENARIO_TEMPLATE("a store pages invoices in creation order, filtered by status", Stores, MemoryStores, SqliteStores, PostgresStores) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    GIVEN("five invoices, the even ones PROCESSING") {
        for (int n = 1; n <= 5; ++n) {
            Invoice invoice = invoice_numbered(n);
            REQUIRE(store.commit({Changes::InvoiceWrite{invoice, 0}, {}}));
            if (n % 2 == 0) {
                auto [processing, payment, event] = request(invoice, n);
                REQUIRE(store.commit({Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}}));
            }
        }
        THEN("pages of two follow creation order and name the next") {
            auto first = store.invoices({.limit = 2});
            REQUIRE(first.data.size() == 2);
            CHECK(first.data[0].id() == iid("inv_1"));
            CHECK(first.next == iid("inv_2"));
            auto second = store.invoices({.after = first.next, .limit = 2});
            CHECK(second.data[0].id() == iid("inv_3"));
            auto last = store.invoices({.after = iid("inv_4"), .limit = 2});
            CHECK(last.data.size() == 1);
            CHECK_FALSE(last.next);
        }
        THEN("a status filter keeps the order") {
            auto processing = store.invoices({.status = InvoiceStatus::processing, .limit = 10});
            REQUIRE(processing.data.size() == 2);
            CHECK(processing.data[0].id() == iid("inv_2"));
            CHECK(processing.data[1].id() == iid("inv_4"));
        }
        THEN("after an unknown id the page is empty") {
            CHECK(store.invoices({.after = iid("inv_99"), .limit = 2}).data.empty());
        }
    }
}

SCENARIO_TEMPLATE("a store's outbox keeps events until they are delivered, and their history",
                  Stores, MemoryStores, SqliteStores, PostgresStores) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    GIVEN("an invoice created and requested, with their events, and a retry scheduled") {
        auto created = Invoice::create(iid(), usd(700), "", meta()).value();
        Invoice invoice = Invoice::from(created);
        Changes creation{Changes::InvoiceWrite{invoice, 0}, {}};
        creation.events.emplace_back(created);
        REQUIRE(store.commit(creation));
        auto [processing, payment, requested] = request(invoice, 1);
        Changes request_changes{Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}};
        request_changes.events.emplace_back(requested);
        PaymentRequested retry = requested;
        retry.envelope.id = EventId::parse("evt_retry").value();
        request_changes.scheduled.push_back({retry, t0() + 30s});
        REQUIRE(store.commit(request_changes));

        THEN("both events are undelivered, in commit order, and the retry is scheduled: the process that committed "
             "them delivers them, nothing of its own is there to take over") {
            CHECK(store.take_over(100).empty());
            auto undelivered = store.undelivered();
            REQUIRE(undelivered.size() == 2);
            CHECK(std::get<InvoiceCreated>(undelivered[0]) == created);
            CHECK(std::get<PaymentRequested>(undelivered[1]) == requested);
            auto scheduled = store.scheduled();
            REQUIRE(scheduled.size() == 1);
            CHECK(std::get<PaymentRequested>(scheduled[0].event) == retry);
            CHECK(scheduled[0].at == t0() + 30s);
        }
        WHEN("the first event and the retry are delivered") {
            store.mark_delivered(created.envelope.id);
            store.mark_delivered(retry.envelope.id);
            store.mark_delivered(EventId::parse("evt_unknown").value()); // ignored
            // A durable store writes the marks with its next commit.
            REQUIRE(store.commit({Changes::InvoiceWrite{invoice_numbered(9), 0}, {}}));
            THEN("only the second stays in the outbox, and nothing is scheduled") {
                auto undelivered = store.undelivered();
                REQUIRE(undelivered.size() == 1);
                CHECK(std::get<PaymentRequested>(undelivered[0]) == requested);
                CHECK(store.scheduled().empty());
            }
            THEN("the history keeps both, delivered or not") {
                auto history = store.history(invoice.id());
                REQUIRE(history.size() == 2);
                CHECK(std::get<InvoiceCreated>(history[0]) == created);
                CHECK(std::get<PaymentRequested>(history[1]) == requested);
                CHECK(store.history(iid("inv_99")).empty());
            }
        }
        WHEN("a commit fails") {
            Changes stale{Changes::InvoiceWrite{processing, invoice.version()}, {}};
            stale.events.emplace_back(requested);
            REQUIRE_FALSE(store.commit(stale));
            THEN("its events are not in the outbox") { CHECK(store.undelivered().size() == 2); }
        }
    }
}

SCENARIO_TEMPLATE("a store's idempotency records: claim, in use, mismatch, replay, release, expiry",
                  Stores, MemoryStores, SqliteStores, PostgresStores) {
    using State = IdempotencyClaim::State;
    Stores s;
    if (!s.ready()) return;
    auto const key = IdempotencyKey::make("client", "k").value();
    GIVEN("a key claimed") {
        REQUIRE(s.keys.claim(key, "req-a", t0()).state == State::claimed);
        THEN("it is in use for the same request and a mismatch for another") {
            CHECK(s.keys.claim(key, "req-a", t0()).state == State::in_use);
            CHECK(s.keys.claim(key, "req-b", t0()).state == State::mismatch);
        }
        WHEN("its payment commits with the completion, and the request completes") {
            Invoice invoice = an_invoice();
            REQUIRE(s.store.commit({Changes::InvoiceWrite{invoice, 0}, {}}));
            auto [processing, payment, event] = request(invoice, 1);
            Changes changes{Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}};
            changes.idempotency = application::IdempotencyCompletion{key, payment, t0()};
            REQUIRE(s.store.commit(changes));
            s.keys.complete(key, payment, t0());
            THEN("a repeat replays the payment until the time to live has passed") {
                auto replay = s.keys.claim(key, "req-a", t0() + 1h);
                REQUIRE(replay.state == State::replay);
                CHECK(replay.stored->value() == payment);
                CHECK(s.keys.claim(key, "req-b", t0() + 1h).state == State::mismatch);
                CHECK(s.keys.claim(key, "req-a", t0() + 1h + 1us).state == State::claimed);
            }
        }
        WHEN("a refusal completes it") {
            application::PaymentResult const refusal = reject(ErrorCode::invalid_argument, "bad method");
            s.keys.complete(key, refusal, t0());
            THEN("the refusal is replayed") {
                auto replay = s.keys.claim(key, "req-a", t0());
                REQUIRE(replay.state == State::replay);
                CHECK(replay.stored->error() == refusal.error());
            }
        }
        WHEN("it is released") {
            s.keys.release(key);
            THEN("it can be claimed again") { CHECK(s.keys.claim(key, "req-b", t0()).state == State::claimed); }
        }
    }
}

// Review 18, B-4: the relay reads the outbox and the scheduled events a page
// at a time at start, so every store pages them on a keyset.
SCENARIO_TEMPLATE("a store pages its outbox on the commit order and its scheduled events on their time",
                  Stores, MemoryStores, SqliteStores, PostgresStores) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    GIVEN("five events committed and five retries scheduled, two of them at the same time") {
        std::vector<EventId> events;
        std::vector<std::pair<Timestamp, EventId>> retries;
        Timestamp const dues[] = {t0() + 3min, t0() + 1min, t0() + 2min, t0() + 1min, t0() + 5min};
        for (int i = 0; i < 5; ++i) {
            auto created = Invoice::create(iid("inv_page" + std::to_string(i)), usd(700), "", meta()).value();
            Changes changes{Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
            changes.events.emplace_back(created);
            InvoiceCreated retry = created;
            retry.envelope.id = meta().id;
            changes.scheduled.push_back({retry, dues[i]});
            REQUIRE(store.commit(changes));
            events.push_back(created.envelope.id);
            retries.emplace_back(dues[i], retry.envelope.id);
        }
        std::sort(retries.begin(), retries.end());
        auto id = [](Event const& event) { return envelope_of(event).id; };

        WHEN("the outbox is read two at a time, with one more event committed after the first page") {
            auto const first = store.undelivered_page({}, 2);
            auto created = Invoice::create(iid("inv_page_late"), usd(700), "", meta()).value();
            Changes late{Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
            late.events.emplace_back(created);
            REQUIRE(store.commit(late));
            REQUIRE(first.next);
            auto const second = store.undelivered_page(*first.next, 2);
            REQUIRE(second.next);
            auto const third = store.undelivered_page(*second.next, 2);
            THEN("the pages hold the five in commit order, and the pass leaves out the one committed during it") {
                REQUIRE(first.events.size() == 2);
                REQUIRE(second.events.size() == 2);
                REQUIRE(third.events.size() == 1);
                CHECK_FALSE(third.next);
                std::vector<EventId> const paged = {id(first.events[0]), id(first.events[1]), id(second.events[0]),
                                                    id(second.events[1]), id(third.events[0])};
                CHECK(paged == events);
                CHECK(store.undelivered().size() == 6); // a new pass sees it
            }
        }
        // Review 21, F2: a retry committed during a pass is its use case's to arm.
        WHEN("the scheduled events are read two at a time, two retries committed after the first page, one of them "
             "delivered (its mark not yet written)") {
            auto const first = store.scheduled_page({}, 2);
            auto late = [&](std::string const& name, Timestamp due) {
                auto created = Invoice::create(iid(name), usd(700), "", meta()).value();
                Changes changes{Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
                InvoiceCreated retry = created;
                retry.envelope.id = meta().id;
                changes.scheduled.push_back({retry, due});
                REQUIRE(store.commit(changes));
                return retry.envelope.id;
            };
            late("inv_late_armed", t0() + 4min);
            store.mark_delivered(late("inv_late_delivered", t0() + 2min));
            REQUIRE(first.next);
            auto const second = store.scheduled_page(*first.next, 2);
            REQUIRE(second.next);
            auto const third = store.scheduled_page(*second.next, 2);
            THEN("the pass holds the five it began with, and a new pass sees the one not delivered") {
                std::vector<std::pair<Timestamp, EventId>> paged;
                for (auto const* page : {&first, &second, &third})
                    for (auto const& [event, at] : page->events) paged.emplace_back(at, id(event));
                CHECK(paged == retries);
                CHECK_FALSE(third.next);
                REQUIRE(store.commit({Changes::InvoiceWrite{invoice_numbered(9), 0}, {}})); // writes the mark
                CHECK(store.scheduled().size() == 6);
            }
        }
        WHEN("the scheduled events are read two at a time, one delivered between the pages") {
            auto const first = store.scheduled_page({}, 2);
            store.mark_delivered(retries[2].second);
            REQUIRE(store.commit({Changes::InvoiceWrite{invoice_numbered(9), 0}, {}})); // writes the mark
            REQUIRE(first.next);
            auto const second = store.scheduled_page(*first.next, 2);
            REQUIRE(second.next);
            auto const third = store.scheduled_page(*second.next, 2);
            THEN("they come in order of their time, then id, each once, the delivered one left out") {
                std::vector<std::pair<Timestamp, EventId>> paged;
                for (auto const* page : {&first, &second, &third})
                    for (auto const& [event, at] : page->events) paged.emplace_back(at, id(event));
                retries.erase(retries.begin() + 2);
                CHECK(paged == retries);
                CHECK_FALSE(third.next);
            }
        }
    }
}

// Review 16, B3: a janitor's round paged every NEEDS_REVIEW invoice and read
// its attempt; open_attempts() answers only what a round can act on.
SCENARIO_TEMPLATE("a store finds the open attempts a janitor can act on, and none an operator has",
                  Stores, MemoryStores, SqliteStores, PostgresStores) {
    Stores s;
    if (!s.ready()) return;
    application::Store& store = s.store;
    // Commits invoice `name` with attempt `n` REQUESTED; `then` changes both before the commit.
    auto commit = [&](std::string const& name, int n, auto then) {
        auto created = Invoice::create(iid(name), usd(700), "", meta()).value();
        Invoice invoice = Invoice::from(created);
        REQUIRE(store.commit({Changes::InvoiceWrite{invoice, 0}, {}}));
        auto [processing, payment, event] = request(invoice, n);
        then(processing, payment);
        REQUIRE(store.commit({Changes::InvoiceWrite{processing, invoice.version()}, {{payment, 0}}}));
    };
    auto unknown = [](Payment& payment) {
        payment.apply(payment.fail({FailureKind::unknown_outcome, "timeout"}, meta()).value());
    };
    auto review = [](Invoice& invoice) {
        invoice.apply(invoice.require_review(invoice.attempts().back(), "checks", meta()).value());
    };
    GIVEN("attempts REQUESTED and UNKNOWN of PROCESSING invoices, in review and not, and settled ones") {
        commit("inv_requested", 1, [](Invoice&, Payment&) {});
        commit("inv_unknown", 2, [&](Invoice&, Payment& p) { unknown(p); });
        commit("inv_review_requested", 3, [&](Invoice& i, Payment&) { review(i); });
        commit("inv_review_unknown", 4, [&](Invoice& i, Payment& p) { unknown(p); review(i); });
        commit("inv_review_settled", 5, [&](Invoice& i, Payment& p) {
            p.apply(p.succeed("ch_1", usd(500), meta()).value());
            review(i);
        });
        commit("inv_paid", 6, [&](Invoice& i, Payment& p) {
            auto succeeded = p.succeed("ch_2", usd(700), meta()).value();
            p.apply(succeeded);
            i.apply(std::get<InvoicePaid>(i.settle_success(succeeded, meta()).value()));
        });
        WHEN("they are read two at a time") {
            std::vector<PaymentId> found;
            std::optional<PaymentId> after;
            int pages = 0;
            do {
                auto page = store.open_attempts(after, 2);
                for (auto const& [invoice, payment] : page.data) {
                    CHECK(invoice.attempts().back() == payment.id());
                    found.push_back(payment.id());
                }
                after = page.next;
                ++pages;
            } while (after && pages < 10);
            THEN("the REQUESTED and UNKNOWN ones come in id order, with their invoices, but not the one under review") {
                CHECK(found == std::vector<PaymentId>{pid(1), pid(2), pid(3)});
            }
        }
    }
}
