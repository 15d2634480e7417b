// A charge's settlement commits without holding a thread: the claim on the
// attempt and the events wait for the commit's answer, and a conflict is
// read and decided again in its continuation.
#include "support/world.hpp"

#include <deque>

using namespace test;

namespace {

// The in-memory store, whose asynchronous commits wait until the test answers
// them (as a durable store's writer answers after its fsync), or are refused
// with a conflict the first `conflicts` times.
class HeldCommits final : public application::Store {
public:
    std::optional<Invoice> invoice(InvoiceId const& id) const override { return inner.invoice(id); }
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override {
        return inner.invoices(query);
    }
    std::optional<Payment> payment(PaymentId const& id) const override { return inner.payment(id); }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner.payments_of(id); }
    Result<void> commit(application::Changes changes) override { return inner.commit(std::move(changes)); }
    void commit_async(application::Changes changes, Committed done) override {
        if (conflicts > 0) {
            --conflicts;
            return done(reject(ErrorCode::conflict, "moved under it"));
        }
        held.push_back({std::move(changes), std::move(done)});
    }
    std::vector<Event> undelivered() const override { return inner.undelivered(); }
    void mark_delivered(EventId const& id) override { inner.mark_delivered(id); }
    std::vector<application::ScheduledEvent> scheduled() const override { return inner.scheduled(); }
    std::vector<Event> history(InvoiceId const& id) const override { return inner.history(id); }

    // Commits the oldest held commit and answers it.
    void answer_one() {
        REQUIRE(!held.empty());
        auto [changes, done] = std::move(held.front());
        held.pop_front();
        done(inner.commit(std::move(changes)));
    }

    infrastructure::InMemoryStore inner;
    std::deque<std::pair<application::Changes, Committed>> held;
    int conflicts = 0;
};

// Runs what is due now, until nothing is, without waiting for held commits
// (World::settle() waits for every commit to be answered).
void run_what_is_due(World& world) {
    while (world.io.poll() + world.scheduler.run_due() != 0) world.io.restart();
    world.io.restart();
}

} // namespace

SCENARIO("a charge's settlement holds its claim and its events until its commit is answered") {
    GIVEN("an invoice being paid by a good card, on a store that holds its commits") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        WHEN("the gateway has answered and the settlement's commit is not answered yet") {
            run_what_is_due(world);
            THEN("the thread went on, the attempt stays claimed, and nothing of the answer is published or stored") {
                REQUIRE(store.held.size() == 1);
                CHECK(world.processor->in_flight() == 1);
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
                CHECK(world.events_of<PaymentSucceeded>().empty());
                CHECK(world.events_of<InvoicePaid>().empty());
            }
            AND_WHEN("the commit is answered") {
                store.answer_one();
                run_what_is_due(world);
                THEN("the invoice is PAID, its events are published once, and the claim is released") {
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                    CHECK(world.events_of<PaymentSucceeded>().size() == 1);
                    CHECK(world.events_of<InvoicePaid>().size() == 1);
                    CHECK(world.processor->in_flight() == 0);
                    CHECK(world.counter("payments_succeeded_total") == 1);
                    CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                }
            }
        }
    }
}

SCENARIO("a settlement whose commit meets a conflict is read and decided again in its continuation") {
    GIVEN("a store that refuses the settlement's first two commits with a conflict") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        store.conflicts = 2;
        WHEN("the gateway answers and the third commit is answered") {
            run_what_is_due(world);
            REQUIRE(store.held.size() == 1);
            store.answer_one();
            run_what_is_due(world);
            THEN("the invoice is PAID once, and the claim is released") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.events_of<InvoicePaid>().size() == 1);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
                CHECK(world.processor->in_flight() == 0);
            }
        }
    }
    GIVEN("a store that refuses every commit with a conflict") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        store.conflicts = 1000;
        WHEN("the gateway answers") {
            run_what_is_due(world);
            THEN("it gives up after commit_attempts rounds, releases the claim, and the attempt stays REQUESTED for "
                 "the janitor") {
                CHECK(store.conflicts == 1000 - 8);
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::requested);
                CHECK(world.events_of<InvoicePaid>().empty());
            }
        }
    }
}
