// Two processes (two Worlds, each with its PostgresStore, processor, manual
// clock and scheduler) on one schema and one provider: the process that lost
// an invoice's lease must neither send, reroute nor commit it (issue 15,
// review finding 1: money charged twice).
#include "support/postgres.hpp"
#include "support/world.hpp"

#include <payments/infrastructure/store/postgres_store.hpp>

#include <map>

using namespace test;
using infrastructure::PostgresStore;

namespace {

// One provider shared by both processes: a charge is held until answer_all(),
// then booked once per key (a repeated key answers the booking again).
class HeldProvider final : public application::PaymentGateway {
public:
    void charge(application::ChargeRequest request, std::function<void(application::ChargeAnswer)> on_answer) override {
        held_.emplace_back(std::move(request), std::move(on_answer));
    }
    void lookup(std::string key, std::function<void(application::ChargeStatus)> on_answer) override {
        auto it = booked_.find(key);
        on_answer(it == booked_.end() ? application::ChargeStatus::not_found()
                                      : application::ChargeStatus::booked("ref-" + key, it->second));
    }
    void answer_all() {
        auto held = std::move(held_);
        held_.clear();
        for (auto& [request, on_answer] : held) {
            booked_.try_emplace(request.idempotency_key, request.amount);
            on_answer(application::ChargeAnswer::success("ref-" + request.idempotency_key, request.amount));
        }
    }
    std::size_t held() const { return held_.size(); }
    /// Keys charged: money taken once per key.
    std::size_t booked() const { return booked_.size(); }

private:
    std::vector<std::pair<application::ChargeRequest, std::function<void(application::ChargeAnswer)>>> held_;
    std::map<std::string, Money> booked_;
};

WorldOptions process(PostgresStore& store, HeldProvider& a, HeldProvider& b, std::string id, std::uint64_t seed) {
    WorldOptions options;
    options.two_gateways = true;
    options.breaker = {.window = 4, .minimum_calls = 4, .failure_ratio = 0.5, .open_for = 30s, .half_open_probes = 1};
    options.store = &store;
    options.idempotency = &store;
    options.provider_a = &a;
    options.provider_b = &b;
    options.instance_id = std::move(id);
    options.seed = seed;
    return options;
}

// A process's PostgresStore, with a moment between two reads: `before_invoice_read`
// runs (once) as the next invoice() read begins, so that another process can
// commit between the read of an attempt and the read of its invoice.
class ReadHookStore final : public application::Store {
public:
    explicit ReadHookStore(PostgresStore& inner) : inner_(inner) {}
    std::optional<Invoice> invoice(InvoiceId const& id) const override {
        if (auto hook = std::exchange(before_invoice_read, {})) hook();
        return inner_.invoice(id);
    }
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override {
        return inner_.invoices(query);
    }
    std::optional<Payment> payment(PaymentId const& id) const override { return inner_.payment(id); }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner_.payments_of(id); }
    application::OpenAttemptPage open_attempts(std::optional<PaymentId> const& after, std::size_t limit) const override {
        return inner_.open_attempts(after, limit);
    }
    Result<void> commit(application::Changes changes) override { return inner_.commit(std::move(changes)); }
    void commit_async(application::Changes changes, Committed done) override {
        inner_.commit_async(std::move(changes), std::move(done));
    }
    Result<application::Changes> update(InvoiceId const& id, Decide const& decide, Apply const& apply) override {
        return inner_.update(id, decide, apply);
    }
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override {
        return inner_.undelivered_page(from, limit);
    }
    void mark_delivered(EventId const& id) override { inner_.mark_delivered(id); }
    void left_undelivered(EventId const& id) override { inner_.left_undelivered(id); }
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override {
        return inner_.scheduled_page(from, limit);
    }
    application::StartMark start_mark() const override { return inner_.start_mark(); }
    using application::Store::take_over;
    application::TakenOver take_over(std::size_t events, std::size_t scheduled) override {
        return inner_.take_over(events, scheduled);
    }
    bool watch_work_left(std::function<void()> wake) override { return inner_.watch_work_left(std::move(wake)); }
    application::Ownership still_owns(EventId const& id) override { return inner_.still_owns(id); }
    std::vector<Event> history(InvoiceId const& id) const override { return inner_.history(id); }
    bool lease(InvoiceId const& id) override { return inner_.lease(id); }
    bool lease_to_drive(InvoiceId const& invoice, PaymentId const& attempt) override {
        return inner_.lease_to_drive(invoice, attempt);
    }
    bool held_since_attempt(InvoiceId const& id) override { return inner_.held_since_attempt(id); }

    mutable std::function<void()> before_invoice_read;

private:
    PostgresStore& inner_;
};

void open_circuit(application::CircuitBreaker& breaker, Timestamp now) {
    for (int i = 0; i < 4; ++i) {
        auto permit = breaker.acquire(now);
        REQUIRE(permit.granted);
        breaker.record(permit.generation, true, now);
    }
    REQUIRE(breaker.state(now) == application::CircuitState::open);
}

} // namespace

SCENARIO("a process that lost an invoice's lease to a takeover neither reroutes nor commits it: one charge") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h; // the test decides when a process looks dead
    auto store_a = open_store(options);
    auto store_b = open_store(options);
    HeldProvider g1, g2;
    World a(process(*store_a, g1, g2, "proc_a", 1));
    World b(process(*store_b, g1, g2, "proc_b", 2));
    // The registration of whoever holds the lease lapses in PostgreSQL, without that process knowing.
    auto const lapse = [&] {
        std::string const& s = schema.name();
        REQUIRE(run_sql(schema.uri(), "UPDATE " + s + ".owners SET alive_until = clock_timestamp() - interval "
                                      "'1 second' WHERE owner = (SELECT owner FROM " + s + ".leases)"));
    };
    GIVEN("process A committed attempt P1 at gateway a, then deferred it: a's circuit open, and b's") {
        Invoice const invoice = a.create();
        Timestamp const start = a.clock.now();
        open_circuit(a.gateways[1].breaker, start); // b: open until t0 + 30 s
        Payment const p1 = a.pay(invoice, "pm_card_ok");
        REQUIRE(p1.gateway() == "a");
        a.clock.advance(10s);
        open_circuit(a.gateways[0].breaker, a.clock.now()); // a: open until t0 + 40 s
        a.settle();
        REQUIRE(g1.held() == 0);
        WHEN("A stalls (its liveness lapses), B takes the invoice over and sends P1's key to a, and A's deferral "
             "then fires while b is usable and a's only probe is taken") {
            lapse(); // the lease holder's registration, aged in PostgreSQL
            b.processor->recover();
            b.settle();
            REQUIRE(g1.held() == 1); // B's charge of P1's key, in flight
            a.clock.advance_to(start + 40s);
            REQUIRE(a.gateways[0].breaker.acquire(a.clock.now()).granted); // the half-open probe, taken
            REQUIRE(a.gateways[1].breaker.usable(a.clock.now()));
            a.scheduler.run_due();
            a.settle();
            for (int i = 0; i < 20 && a.scheduler.advance_to_next(); ++i) a.settle(); // whatever A would do next
            g1.answer_all();
            g2.answer_all();
            b.settle();
            a.settle();
            THEN("the money is taken once, by B's charge of P1, and A committed nothing for the invoice") {
                CHECK(g1.booked() + g2.booked() == 1);
                CHECK(g2.booked() == 0);
                auto const attempts = store_b->payments_of(invoice.id());
                REQUIRE(attempts.size() == 1);
                CHECK(attempts[0].id() == p1.id());
                CHECK(attempts[0].status() == PaymentStatus::succeeded);
                CHECK(store_b->invoice(invoice.id())->status() == InvoiceStatus::paid);
            }
        }
        WHEN("A stalls without knowing it (its row aged in PostgreSQL), B takes the invoice over and sends P1's key "
             "to a, and A's deferral then fires with a's probe free") {
            lapse(); // the lease holder's registration, aged in PostgreSQL
            b.processor->recover();
            b.settle();
            REQUIRE(g1.held() == 1); // B's charge of P1's key, in flight
            a.clock.advance_to(start + 40s);
            a.scheduler.run_due();
            a.settle();
            for (int i = 0; i < 20 && a.scheduler.advance_to_next(); ++i) a.settle(); // whatever A would do next
            THEN("A asks PostgreSQL who drives the invoice and sends nothing (review 23 F1): B's charge is the only one") {
                CHECK(g1.held() == 1);
                CHECK(g2.held() == 0);
                g1.answer_all();
                b.settle();
                CHECK(g1.booked() == 1);
                CHECK(store_b->payment(p1.id())->status() == PaymentStatus::succeeded);
            }
        }
        WHEN("B takes the invoice over and sends P1's key to a, then B stalls in turn, and A's deferral fires "
             "(A takes the lease back) while b is usable and a's only probe is taken") {
            lapse();
            b.processor->recover();
            b.settle();
            REQUIRE(g1.held() == 1);
            lapse();
            a.clock.advance_to(start + 40s);
            auto const probe = a.gateways[0].breaker.acquire(a.clock.now());
            REQUIRE(probe.granted);
            a.scheduler.run_due();
            a.settle();
            for (int i = 0; i < 20 && a.scheduler.advance_to_next(); ++i) a.settle(); // whatever A would do next
            THEN("A does not count P1's key as unsent (B may have sent it): it never reroutes, and one charge is taken") {
                CHECK(g2.held() == 0);
                CHECK(store_b->payment(p1.id())->status() == PaymentStatus::requested); // waits for its own gateway
                // The probe succeeds, a's circuit closes: A, which drives it now, sends P1's own key there.
                g1.answer_all(); // B's charge: booked; B's settlement is fenced off (A holds the lease)
                b.settle();
                a.gateways[0].breaker.record(probe.generation, false, a.clock.now());
                for (int i = 0; i < 20 && a.scheduler.advance_to_next(); ++i) {
                    a.settle();
                    g1.answer_all(); // the provider answers at once from here
                    a.settle();
                }
                CHECK(g1.booked() + g2.booked() == 1);
                auto const attempts = store_b->payments_of(invoice.id());
                REQUIRE(attempts.size() == 1);
                CHECK(attempts[0].status() == PaymentStatus::succeeded);
            }
        }
    }
}

SCENARIO("a process that committed an attempt charges it, and another live process that finds it does not") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h; // both stay alive
    auto store_a = open_store(options);
    auto store_b = open_store(options);
    HeldProvider g1, g2;
    World a(process(*store_a, g1, g2, "proc_a", 1));
    World b(process(*store_b, g1, g2, "proc_b", 2));
    GIVEN("attempt P1 committed by process A, which holds its invoice's lease with it") {
        Invoice const invoice = a.create();
        Payment const p1 = a.pay(invoice, "pm_card_ok");
        std::uint64_t const writes = store_a->commands();
        a.settle();
        THEN("A charged it without asking PostgreSQL for the lease again") {
            CHECK(g1.held() == 1);
            CHECK(store_a->commands() == writes);
        }
        WHEN("process B finds P1 (its recovery, as after a restart) while A is alive") {
            b.processor->recover();
            b.settle();
            for (int i = 0; i < 5 && b.scheduler.advance_to_next(); ++i) b.settle(); // whatever B would do next
            THEN("B sends nothing: A's charge is the only one, and A settles it") {
                CHECK(g1.held() + g2.held() == 1);
                g1.answer_all();
                a.settle();
                b.settle();
                CHECK(g1.booked() == 1);
                CHECK(store_b->payment(p1.id())->status() == PaymentStatus::succeeded);
            }
        }
    }
}

SCENARIO("a process whose liveness renewals fail starts no charge, and charges again once they succeed") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h; // the test renews by hand
    auto store = open_store(options);
    HeldProvider g1, g2;
    World a(process(*store, g1, g2, "proc_a", 1));
    GIVEN("an invoice, and renewals that PostgreSQL refuses (its lease may lapse unseen)") {
        Invoice const invoice = a.create();
        std::string const& s = schema.name();
        REQUIRE(run_sql(schema.uri(), "ALTER TABLE " + s + ".owners ADD CONSTRAINT no_renewal CHECK (false) NOT VALID"));
        REQUIRE_FALSE(store->renew());
        REQUIRE_FALSE(store->renewing());
        WHEN("a payment is requested") {
            Payment const p1 = a.pay(invoice, "pm_card_ok");
            a.settle();
            THEN("the attempt is committed but no charge is sent, and the store grants no lease") {
                CHECK(store->payment(p1.id())->status() == PaymentStatus::requested);
                CHECK(g1.held() + g2.held() == 0);
                CHECK_FALSE(store->lease(invoice.id()));
            }
            AND_WHEN("renewals succeed again and the janitor comes round") {
                REQUIRE(run_sql(schema.uri(), "ALTER TABLE " + s + ".owners DROP CONSTRAINT no_renewal"));
                REQUIRE(store->renew());
                CHECK(store->renewing());
                a.processor->recover();
                a.settle();
                THEN("the attempt is charged, on its own key") {
                    REQUIRE(g1.held() == 1);
                    g1.answer_all();
                    a.settle();
                    CHECK(g1.booked() == 1);
                    CHECK(store->invoice(invoice.id())->status() == InvoiceStatus::paid);
                }
            }
        }
    }
}

// Review 23 F4: with the fast path, on_requested's "is it the latest attempt"
// read is all that keeps A from sending P1 once another process committed P2
// (A's memory still says it committed P1 with the lease).
SCENARIO("a process that read its attempt open, while another settled it and committed the next, sends nothing") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    auto options = schema.options();
    options.lease_timeout = 1h; // both stay alive
    auto store_a = open_store(options);
    auto store_b = open_store(options);
    ReadHookStore hooked_a(*store_a);
    HeldProvider g1, g2;
    auto a_options = process(*store_a, g1, g2, "proc_a", 1);
    a_options.store = &hooked_a;
    World a(a_options);
    World b(process(*store_b, g1, g2, "proc_b", 2));
    GIVEN("attempt P1 committed by process A, its request not yet delivered there") {
        Invoice const invoice = a.create();
        Payment const p1 = a.pay(invoice, "pm_card_ok");
        WHEN("A reads P1 REQUESTED, and before it reads the invoice B settles P1 declined (a notice) and commits P2") {
            std::optional<Payment> p2;
            hooked_a.before_invoice_read = [&] {
                REQUIRE(b.processor->on_provider_notice("", p1.gateway_key(), application::ChargeStatus::refused("declined")));
                b.settle();
                REQUIRE(store_b->invoice(invoice.id())->status() == InvoiceStatus::failed);
                p2 = b.pay(invoice, "pm_card_ok"); // its request waits on B's bus
            };
            a.settle();
            THEN("A sends nothing: P1 is not the invoice's latest attempt") {
                REQUIRE(p2);
                CHECK_FALSE(hooked_a.before_invoice_read);
                CHECK(g1.held() + g2.held() == 0);
                AND_THEN("B's charge of P2 is the only one") {
                    b.settle();
                    CHECK(g1.held() + g2.held() == 1);
                    g1.answer_all();
                    g2.answer_all();
                    b.settle();
                    CHECK(store_b->payment(p2->id())->status() == PaymentStatus::succeeded);
                    CHECK(store_b->payment(p1.id())->status() == PaymentStatus::failed);
                }
            }
        }
    }
}
