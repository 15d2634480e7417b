// A charge's settlement commits without holding a thread: the claim on the
// attempt and the events wait for the commit's answer, and a conflict is
// read and decided again in its continuation.
#include "support/world.hpp"

#include <deque>
#include <optional>
#include <stdexcept>

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
    std::optional<Payment> payment(PaymentId const& id) const override {
        if (failing_reads > 0) {
            --failing_reads;
            throw application::StorageFailure("disk gone");
        }
        return inner.payment(id);
    }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner.payments_of(id); }
    Result<void> commit(application::Changes changes) override {
        // One writer, first in first out: what was queued before is answered first.
        while (writer_order && !held.empty()) answer_one();
        return inner.commit(std::move(changes));
    }
    void commit_async(application::Changes changes, Committed done) override {
        if (refusals > 0) {
            --refusals;
            throw application::StorageFailure("the commit queue refused it");
        }
        if (conflicts > 0) {
            --conflicts;
            failing_reads = reads_failing_after_conflict;
            return done(reject(ErrorCode::conflict, "moved under it"));
        }
        if (!hold) return done(inner.commit(std::move(changes)));
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
    bool hold = true;     ///< false: commit_async answers at once, on the caller's thread
    bool writer_order = false; ///< a synchronous commit answers every held one first, as one writer would
    int conflicts = 0;    ///< the next this many asynchronous commits answer conflict
    int refusals = 0;     ///< the next this many asynchronous commits throw StorageFailure
    int reads_failing_after_conflict = 0; ///< after each conflict, the next this many payment() reads throw
    mutable int failing_reads = 0;
};

// The World's ManualScheduler seen through a wrapper whose post() can be
// watched or made to throw (a scheduler that is shutting down).
class WatchedPosts final : public application::Scheduler {
public:
    explicit WatchedPosts(infrastructure::ManualScheduler& inner) : inner_(inner) {}
    application::TimerId call_at(Timestamp at, std::function<void()> fn) override {
        return inner_.call_at(at, std::move(fn));
    }
    bool cancel(application::TimerId id) override { return inner_.cancel(id); }
    void post(std::function<void()> fn) override {
        if (on_post) on_post();
        if (failing_posts > 0) {
            --failing_posts;
            throw std::runtime_error("the scheduler is shut down");
        }
        inner_.post(std::move(fn));
    }
    std::function<void()> on_post;
    int failing_posts = 0;

private:
    infrastructure::ManualScheduler& inner_;
};

// An application's scheduler written before post() existed: it has only call_at and cancel.
class WithoutPost final : public application::Scheduler {
public:
    explicit WithoutPost(infrastructure::ManualScheduler& inner) : inner_(inner) {}
    application::TimerId call_at(Timestamp at, std::function<void()> fn) override {
        return inner_.call_at(at, std::move(fn));
    }
    bool cancel(application::TimerId id) override { return inner_.cancel(id); }

private:
    infrastructure::ManualScheduler& inner_;
};

template <class S>
auto wrapped(S*& made) {
    return [&made](infrastructure::ManualScheduler& inner) -> std::unique_ptr<application::Scheduler> {
        auto scheduler = std::make_unique<S>(inner);
        made = scheduler.get();
        return scheduler;
    };
}

// Whether an event of type E waits in the store's outbox.
template <class E>
bool in_outbox(HeldCommits const& store) {
    for (auto const& e : store.inner.undelivered())
        if (std::holds_alternative<E>(e)) return true;
    return false;
}

// Runs what is due now, until nothing is, without waiting for held commits
// (World::settle() waits for every commit to be answered).
void run_what_is_due(World& world) {
    while (world.io.poll() + world.scheduler.run_due() != 0) world.io.restart();
    world.io.restart();
}

// An invoice paid, the gateway's answer in, and its settlement's commit held by the store.
Invoice paid_with_commit_held(World& world, HeldCommits const& store) {
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_ok");
    run_what_is_due(world);
    REQUIRE(store.held.size() == 1);
    return invoice;
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

SCENARIO("a settlement whose retry round cannot read releases its claim and is re-driven") {
    GIVEN("a store whose first settlement commit meets a conflict, after which a read fails") {
        HeldCommits store;
        store.hold = false;
        World world({.processor = {.retry = {}, .janitor_interval = 1min}, .store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        store.conflicts = 1;
        store.reads_failing_after_conflict = 1;
        WHEN("the gateway answers") {
            CHECK_NOTHROW(run_what_is_due(world));
            THEN("the claim is released, and the janitor later settles the attempt on the same key, charged once") {
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                world.clock.advance(2min);
                world.run();
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.events_of<InvoicePaid>().size() == 1);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
            }
        }
    }
}

SCENARIO("a settlement whose commit the store refuses by throwing releases its claim and counts no commit") {
    GIVEN("a store whose first asynchronous commit throws") {
        HeldCommits store;
        store.hold = false;
        store.refusals = 1;
        World world({.processor = {.retry = {}, .janitor_interval = 1min}, .store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        WHEN("the gateway answers") {
            CHECK_NOTHROW(run_what_is_due(world));
            THEN("nothing is left claimed or counted as committing, and the janitor settles it later") {
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                world.clock.advance(2min);
                world.run();
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
            }
        }
    }
}

SCENARIO("a commit answered after the processor is gone touches nothing of its wiring") {
    GIVEN("a settlement whose commit is held, and a processor that is then destroyed") {
        HeldCommits store;
        World world({.store = &store});
        paid_with_commit_held(world, store);
        std::size_t const pending = world.scheduler.pending();
        world.processor.reset();
        WHEN("the store answers the commit") {
            store.answer_one();
            THEN("nothing is posted to the scheduler and nothing is published: the events stay in the outbox") {
                CHECK(world.scheduler.pending() == pending);
                run_what_is_due(world);
                CHECK(world.events_of<InvoicePaid>().empty());
                CHECK(in_outbox<InvoicePaid>(store));
            }
        }
    }
}

TEST_CASE("a commit answered after its World is gone touches nothing of it") {
    HeldCommits store;
    {
        World world({.store = &store});
        paid_with_commit_held(world, store);
    }
    store.answer_one(); // the World's scheduler, bus and logger are gone
    CHECK(store.held.empty());
}

SCENARIO("a settlement's commit counts as answered only once its continuation is posted") {
    GIVEN("a settlement whose commit is held, on a scheduler whose posts are watched") {
        HeldCommits store;
        WatchedPosts* scheduler = nullptr;
        World world({.store = &store, .wrap_scheduler = wrapped(scheduler)});
        paid_with_commit_held(world, store);
        std::optional<bool> counted_at_post;
        scheduler->on_post = [&] {
            counted_at_post = !world.processor->wait_commits(std::chrono::steady_clock::now());
        };
        WHEN("the store answers") {
            store.answer_one();
            THEN("the commit still counted when its continuation was posted (World::settle cannot return "
                 "before it), and no more after") {
                CHECK(counted_at_post == std::optional<bool>(true));
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                run_what_is_due(world);
                CHECK(world.events_of<InvoicePaid>().size() == 1);
            }
        }
    }
}

SCENARIO("a scheduler without its own post() never runs a settlement's continuation on the store's thread") {
    GIVEN("a settlement whose commit is held, on a scheduler that has only call_at and cancel") {
        HeldCommits store;
        WithoutPost* scheduler = nullptr;
        World world({.store = &store, .wrap_scheduler = wrapped(scheduler)});
        paid_with_commit_held(world, store);
        WHEN("the store answers, on its own thread") {
            store.answer_one();
            THEN("nothing of the continuation ran there: it runs when the scheduler's thread runs what is due") {
                CHECK(world.processor->in_flight() == 1);
                run_what_is_due(world);
                CHECK(world.events_of<InvoicePaid>().size() == 1);
                CHECK(world.processor->in_flight() == 0);
            }
        }
    }
}

SCENARIO("a scheduler that throws when the store hands it a settlement's continuation loses nothing") {
    GIVEN("a settlement whose commit is held, on a scheduler whose next post throws") {
        HeldCommits store;
        WatchedPosts* scheduler = nullptr;
        World world({.store = &store, .wrap_scheduler = wrapped(scheduler)});
        Invoice invoice = paid_with_commit_held(world, store);
        scheduler->failing_posts = 1;
        WHEN("the store answers") {
            CHECK_NOTHROW(store.answer_one());
            THEN("the claim is released and the commit answered; the committed events are published once") {
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                run_what_is_due(world);
                CHECK(world.events_of<InvoicePaid>().size() == 1);
            }
        }
    }
}

TEST_CASE("a scheduler's default post() runs nothing on the caller's thread") {
    infrastructure::ManualClock clock;
    infrastructure::ManualScheduler inner(clock);
    WithoutPost scheduler(inner);
    bool ran = false;
    scheduler.post([&] { ran = true; });
    CHECK_FALSE(ran);
    CHECK(inner.run_due() == 1);
    CHECK(ran);
}

SCENARIO("a payment's events are published in the order of their commits") {
    GIVEN("a charge answered only after the timeout, on one writer that holds the timeout's commit") {
        HeldCommits store;
        store.writer_order = true;
        World world({.processor = {.retry = {}, .gateway_timeout = 5s}, .store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_late_answer"); // answers after 30 s
        run_what_is_due(world);
        world.clock.advance(5s);
        run_what_is_due(world); // the timeout settles it UNKNOWN: that commit is held
        REQUIRE(store.held.size() == 1);
        WHEN("the late \"charged\" commits after it, on the same writer") {
            world.clock.advance(30s);
            run_what_is_due(world);
            REQUIRE(store.held.empty());
            world.settle();
            THEN("the timeout's PaymentFailed comes before InvoicePaid, as its commit did") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                std::optional<std::size_t> failed;
                std::optional<std::size_t> paid;
                for (std::size_t i = 0; i < world.events.size(); ++i) {
                    if (std::holds_alternative<PaymentFailed>(world.events[i])) failed = i;
                    if (std::holds_alternative<InvoicePaid>(world.events[i])) paid = i;
                }
                REQUIRE(failed);
                REQUIRE(paid);
                CHECK(*failed < *paid);
            }
        }
    }
}
