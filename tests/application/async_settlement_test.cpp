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
            if (odd_reads) throw 42; // not a std::exception
            throw application::StorageFailure("disk gone");
        }
        return inner.payment(id);
    }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner.payments_of(id); }
    application::OpenAttemptPage open_attempts(std::optional<PaymentId> const& after, std::size_t limit) const override {
        return inner.open_attempts(after, limit);
    }
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
        if (odd_refusals > 0) {
            --odd_refusals;
            throw 42; // not a std::exception
        }
        if (unavailable > 0) {
            --unavailable;
            return done(reject(ErrorCode::storage_unavailable, "the writer did not take it in time"));
        }
        if (conflicts > 0) {
            --conflicts;
            failing_reads = reads_failing_after_conflict;
            return done(reject(ErrorCode::conflict, "moved under it"));
        }
        if (!hold) return done(inner.commit(std::move(changes)));
        held.push_back({std::move(changes), std::move(done)});
    }
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override {
        return inner.undelivered_page(from, limit);
    }
    void mark_delivered(EventId const& id) override { inner.mark_delivered(id); }
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override {
        return inner.scheduled_page(from, limit);
    }
    std::vector<Event> history(InvoiceId const& id) const override { return inner.history(id); }
    bool lease(InvoiceId const&) override { return leased; }

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
    bool leased = true;   ///< false: another live process holds every invoice's lease
    bool writer_order = false; ///< a synchronous commit answers every held one first, as one writer would
    int conflicts = 0;    ///< the next this many asynchronous commits answer conflict
    int unavailable = 0;  ///< the next this many asynchronous commits answer storage_unavailable (writer full)
    int refusals = 0;     ///< the next this many asynchronous commits throw StorageFailure
    int odd_refusals = 0; ///< the next this many asynchronous commits throw an int
    bool odd_reads = false; ///< a failing payment() read throws an int, not StorageFailure
    int reads_failing_after_conflict = 0; ///< after each conflict, the next this many payment() reads throw
    mutable int failing_reads = 0;
};

// The World's ManualScheduler seen through a wrapper whose post() can be
// watched or made to throw (a scheduler that is shutting down).
class WatchedPosts final : public application::Scheduler {
public:
    explicit WatchedPosts(infrastructure::ManualScheduler& inner) : inner_(inner) {}
    application::TimerId call_at(Timestamp at, std::function<void()> fn) override {
        if (failing_call_ats > 0) {
            --failing_call_ats;
            return {at, 0}; // refused, as AsioScheduler's after its shutdown
        }
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
    int failing_call_ats = 0;

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

// Metrics whose report of a charge's outcome throws, as an adapter with a bug may; the rest count nothing.
class ThrowingReports final : public application::Metrics {
public:
    void payment_requested() override {}
    void payment_succeeded() override { throw std::runtime_error("the metrics adapter failed"); }
    void payment_failed(FailureKind) override { throw std::runtime_error("the metrics adapter failed"); }
    void retry_scheduled() override {}
    void duplicate_delivery() override {}
    void invoice_status_changed(std::optional<InvoiceStatus>, InvoiceStatus) override {}
    void gateway_latency(Duration) override {}
    void outcome_verification() override {}
    void late_answer() override {}
    void review_required(application::ReviewCause) override {}
    void janitor_redrove(application::JanitorFinding) override {}
};

// An attempt an earlier run committed REQUESTED and never published: only recovery finds it.
InvoiceId left_requested_by_a_crash(World& world) {
    Invoice invoice = world.create();
    std::uint64_t const version = invoice.version();
    auto requested = invoice.request_payment(application::new_attempt(world.ports), "pm_card_ok", meta()).value();
    invoice.apply(requested);
    REQUIRE(world.ports.store.commit(
        {application::Changes::InvoiceWrite{invoice, version}, {{Payment::from(requested), 0}}}));
    return invoice.id();
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

// Review 19, F7: a durable commit whose continuation the scheduler refused was
// reported as "could not record a gateway outcome", and an UNKNOWN answer was
// then left for the janitor's next round to look up.
SCENARIO("review19 F7: an unknown answer whose continuation the scheduler refuses is looked up at once") {
    GIVEN("a gateway that never answers, the commit of the charge's timeout held, and a scheduler whose next post throws") {
        HeldCommits store;
        WatchedPosts* scheduler = nullptr;
        World world({.processor = {.retry = {}, .gateway_timeout = 1s, .janitor_interval = 1min},
                     .store = &store,
                     .wrap_scheduler = wrapped(scheduler)});
        world.gateway_port.mode = TestGateway::Mode::silent;
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        run_what_is_due(world);
        world.clock.advance(1s);
        run_what_is_due(world);
        REQUIRE(store.held.size() == 1);
        scheduler->failing_posts = 1;
        WHEN("the store commits the UNKNOWN and its continuation is refused") {
            CHECK_NOTHROW(store.answer_one());
            REQUIRE(scheduler->failing_posts == 0);
            THEN("the commit counts as made, and the gateway is asked what became of the charge before any janitor "
                 "round, not on the store's thread") {
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::unknown);
                CHECK(world.gateway_port.lookups == 0);
                run_what_is_due(world);
                CHECK(world.gateway_port.lookups == 1);
            }
        }
        WHEN("the store commits the UNKNOWN, its continuation is refused, and so is the timer that would verify it") {
            scheduler->failing_call_ats = 1;
            CHECK_NOTHROW(store.answer_one());
            REQUIRE(scheduler->failing_call_ats == 0);
            THEN("nothing is looked up on the store's thread, and the janitor's next round verifies it (review 23 F3)") {
                CHECK(world.gateway_port.lookups == 0);
                world.clock.advance(1min);
                run_what_is_due(world);
                CHECK(world.gateway_port.lookups == 1);
            }
        }
    }
}

// Review 24 F7: the janitor's mark was erased only by a round of this process
// that found the attempt unresolved and got its lease.
SCENARIO("review24 F7: an unknown outcome left to the janitor is forgotten once it is settled, or another process drives it") {
    GIVEN("an UNKNOWN committed on the store's thread, its continuation and its timer refused: left to the janitor") {
        HeldCommits store;
        WatchedPosts* scheduler = nullptr;
        World world({.processor = {.retry = {}, .gateway_timeout = 1s, .janitor_interval = 1min},
                     .store = &store,
                     .wrap_scheduler = wrapped(scheduler)});
        world.gateway_port.mode = TestGateway::Mode::silent;
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        run_what_is_due(world);
        world.clock.advance(1s);
        run_what_is_due(world);
        REQUIRE(store.held.size() == 1);
        scheduler->failing_posts = 1;
        scheduler->failing_call_ats = 1;
        store.answer_one();
        REQUIRE(scheduler->failing_call_ats == 0);
        REQUIRE(world.processor->verifying() == 1);
        WHEN("a notice settles the attempt (as another process would), and the janitor comes round") {
            Payment const attempt = world.service.payments_of(invoice.id()).value()[0];
            REQUIRE(world.processor->on_provider_notice("", attempt.gateway_key(),
                                                        application::ChargeStatus::booked("ch_1", invoice.amount())));
            world.clock.advance(1min);
            run_what_is_due(world);
            THEN("nothing is left marked, and nothing was looked up") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.processor->verifying() == 0);
                CHECK(world.gateway_port.lookups == 0);
            }
        }
        WHEN("another live process holds the invoice, and the janitor comes round") {
            store.leased = false;
            world.clock.advance(1min);
            run_what_is_due(world);
            THEN("the mark goes: that process verifies it, not this one") {
                CHECK(world.processor->verifying() == 0);
                CHECK(world.gateway_port.lookups == 0);
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

// Review 19, F9: a scheduler that refuses call_at() after its shutdown (as AsioScheduler does, seq 0).
TEST_CASE("review19 F9: a scheduler's default post() throws rather than drop a call its call_at() refuses") {
    class ShutDown final : public application::Scheduler {
    public:
        application::TimerId call_at(Timestamp at, std::function<void()>) override { return {at, 0}; }
        bool cancel(application::TimerId) override { return false; }
    } scheduler;
    CHECK_THROWS_AS(scheduler.post([] {}), std::runtime_error);
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

// Review 19, F1: the continuation reported outside any exception boundary, so
// a throwing metrics or logger adapter left the attempt claimed for ever.
SCENARIO("review19 F1: a settlement whose report throws still releases its claim") {
    GIVEN("a settlement whose commit is held, on metrics whose payment_succeeded() throws") {
        HeldCommits store;
        ThrowingReports metrics;
        World world({.store = &store, .metrics = &metrics});
        Invoice invoice = paid_with_commit_held(world, store);
        WHEN("the store answers the commit") {
            store.answer_one();
            CHECK_NOTHROW(run_what_is_due(world));
            THEN("the invoice is PAID, its events are published, and the claim is released") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.events_of<InvoicePaid>().size() == 1);
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
            }
        }
    }
}

SCENARIO("review19 F1: an unknown answer whose report throws is still looked up") {
    GIVEN("a gateway that never answers, and metrics whose payment_failed() throws") {
        HeldCommits store;
        store.hold = false;
        ThrowingReports metrics;
        World world({.processor = {.retry = {}, .gateway_timeout = 1s}, .store = &store, .metrics = &metrics});
        world.gateway_port.mode = TestGateway::Mode::silent;
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        run_what_is_due(world);
        REQUIRE(world.gateway_port.charges == 1);
        WHEN("the charge times out and its UNKNOWN is committed") {
            world.clock.advance(1s);
            CHECK_NOTHROW(run_what_is_due(world));
            THEN("the attempt is UNKNOWN and the gateway is asked what became of it") {
                CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::unknown);
                CHECK(world.gateway_port.lookups >= 1);
            }
        }
    }
}

SCENARIO("review19 F1: a verification whose first read throws is taken up by the janitor") {
    GIVEN("a gateway that never answers, and the commit of the charge's timeout held") {
        HeldCommits store;
        World world({.processor = {.retry = {}, .gateway_timeout = 1s, .janitor_interval = 1min}, .store = &store});
        world.gateway_port.mode = TestGateway::Mode::silent;
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        run_what_is_due(world);
        world.clock.advance(1s);
        run_what_is_due(world);
        REQUIRE(store.held.size() == 1);
        WHEN("the UNKNOWN is committed and the verification's first read of the attempt throws") {
            store.answer_one();
            store.failing_reads = 1;
            CHECK_NOTHROW(run_what_is_due(world));
            REQUIRE(store.failing_reads == 0);
            THEN("the claim is released, and the janitor's next round looks the attempt up") {
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.gateway_port.lookups == 0);
                world.clock.advance(2min);
                run_what_is_due(world);
                CHECK(world.gateway_port.lookups >= 1);
            }
        }
    }
}

// Review 19, F2: settle_async caught std::exception only.
SCENARIO("review19 F2: a settlement whose store throws something that is not a std::exception releases its claim") {
    GIVEN("a store whose first asynchronous commit throws an int") {
        HeldCommits store;
        store.hold = false;
        store.odd_refusals = 1;
        World world({.processor = {.retry = {}, .janitor_interval = 1min}, .store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        WHEN("the gateway answers") {
            CHECK_NOTHROW(run_what_is_due(world));
            THEN("nothing is left claimed or counted as committing, and the janitor settles it later, charged once") {
                CHECK(store.odd_refusals == 0);
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                world.clock.advance(2min);
                world.run();
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
            }
        }
    }
    GIVEN("a store whose settlement meets a conflict, after which a read throws an int") {
        HeldCommits store;
        store.hold = false;
        store.odd_reads = true;
        World world({.processor = {.retry = {}, .janitor_interval = 1min}, .store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        store.conflicts = 1;
        store.reads_failing_after_conflict = 1;
        WHEN("the gateway answers") {
            CHECK_NOTHROW(run_what_is_due(world));
            THEN("the claim is released, and the janitor settles it later, charged once") {
                CHECK(store.failing_reads == 0);
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

// Review 19, F3: a post refused while recovery pumps left the pump stopped for good.
SCENARIO("review19 F3: recovery whose post is refused starts again from the janitor") {
    GIVEN("an attempt a crash left REQUESTED, and a scheduler whose next post throws") {
        HeldCommits store;
        store.hold = false;
        WatchedPosts* scheduler = nullptr;
        World world({.processor = {.retry = {}, .janitor_interval = 1min}, .store = &store,
                     .wrap_scheduler = wrapped(scheduler)});
        InvoiceId const invoice = left_requested_by_a_crash(world);
        scheduler->failing_posts = 1;
        WHEN("the process recovers") {
            CHECK_NOTHROW(world.processor->recover());
            REQUIRE(scheduler->failing_posts == 0);
            run_what_is_due(world);
            THEN("the attempt is not lost: a later round of the janitor drives it, charged once") {
                for (int round = 0; round < 10 && world.invoice(invoice).status() != InvoiceStatus::paid; ++round) {
                    world.clock.advance(1min);
                    run_what_is_due(world);
                }
                CHECK(world.invoice(invoice).status() == InvoiceStatus::paid);
                CHECK(world.gateway.charges_for(invoice) == 1);
                CHECK(world.processor->in_flight() == 0);
            }
        }
    }
}

// Review 19, F3: a store that answers on the caller's thread, whose callback threw
// (a refused post, then recovery's next start refused too), made settle_async
// end the settlement twice, count its commit answered twice, and stop recovery.
SCENARIO("review19 F3: a commit answered inline whose continuation is refused ends the settlement once") {
    GIVEN("two attempts a crash left REQUESTED, recovered one at a time, on a store answering at once") {
        HeldCommits store;
        store.hold = false;
        WatchedPosts* scheduler = nullptr;
        World world({.processor = {.retry = {}, .janitor_interval = 1min, .recovery_in_flight = 1},
                     .gateway = {.latency_min = 1s, .latency_max = 1s},
                     .store = &store,
                     .wrap_scheduler = wrapped(scheduler)});
        InvoiceId const first = left_requested_by_a_crash(world);
        InvoiceId const second = left_requested_by_a_crash(world);
        world.processor->recover();
        world.scheduler.run_due(); // the first is looked up, and charged again on the same key
        run_what_is_due(world);
        REQUIRE(world.gateway_port.charges == 1);
        WHEN("its settlement commits and both its continuation and recovery's next start are refused") {
            scheduler->failing_posts = 2;
            world.clock.advance(1s);
            CHECK_NOTHROW(run_what_is_due(world));
            REQUIRE(scheduler->failing_posts == 0);
            THEN("nothing counts as committing, nothing is claimed, and the janitor drives the rest: both PAID, "
                 "each charged once") {
                CHECK(world.processor->wait_commits(std::chrono::steady_clock::now()));
                CHECK(world.processor->in_flight() == 0);
                for (int round = 0; round < 10 && world.invoice(second).status() != InvoiceStatus::paid; ++round) {
                    world.clock.advance(1min);
                    run_what_is_due(world);
                }
                CHECK(world.invoice(first).status() == InvoiceStatus::paid);
                CHECK(world.invoice(second).status() == InvoiceStatus::paid);
                CHECK(world.gateway.charges_for(first) == 1);
                CHECK(world.gateway.charges_for(second) == 1);
            }
        }
    }
}

SCENARIO("a settlement whose commit the writer refused as full or expired is tried again later, keeping its claim") {
    GIVEN("a store whose writer refuses the settlement's first commit as unavailable") {
        HeldCommits store;
        store.hold = false;
        World world({.store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        store.unavailable = 1;
        WHEN("the gateway answers") {
            run_what_is_due(world);
            THEN("the answer is not dropped: the attempt stays claimed, not settled yet") {
                CHECK(store.unavailable == 0);
                CHECK(world.processor->in_flight() == 1);
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
            }
            AND_WHEN("the clock reaches the retry") {
                world.run();
                THEN("the invoice is PAID once, charged once, and the claim is released") {
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                    CHECK(world.events_of<InvoicePaid>().size() == 1);
                    CHECK(world.gateway.charges_for(invoice.id()) == 1);
                    CHECK(world.processor->in_flight() == 0);
                }
            }
        }
    }
    GIVEN("a store whose writer refuses every commit as unavailable") {
        HeldCommits store;
        store.hold = false;
        World world({.processor = {.retry = {}, .janitor_interval = 1h}, .store = &store});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        store.unavailable = 1000;
        WHEN("the gateway answers and the retries come due") {
            run_what_is_due(world);
            for (int i = 0; i < 20 && world.processor->in_flight() != 0 && world.scheduler.advance_to_next(); ++i)
                run_what_is_due(world);
            THEN("it gives up after commit_attempts rounds and releases the claim, the attempt REQUESTED for the janitor") {
                CHECK(store.unavailable == 1000 - 8);
                CHECK(world.processor->in_flight() == 0);
                CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::requested);
            }
        }
    }
}

// The commands' asynchronous forms (a server answers from their continuation
// instead of parking a thread on each commit).

namespace {

// What an asynchronous command answered, and whether it had answered by the
// time the call returned (on the caller's thread).
template <class Reply>
struct Answer {
    std::optional<Reply> reply;
    int calls = 0;
    auto done() {
        return [this](Reply r) {
            ++calls;
            reply = std::move(r);
        };
    }
};

application::RequestPayment keyed(Invoice const& invoice, std::string const& key) {
    return {invoice.id(), "pm_card_ok", application::IdempotencyKey::make("", key).value(), {}};
}

// A repeat of `request` replays `paid`.
void check_replays(World& world, application::RequestPayment const& request, Payment const& paid) {
    auto repeat = world.service.request_payment(request);
    REQUIRE(repeat.replayed);
    CHECK(repeat.result->id() == paid.id());
}

} // namespace

SCENARIO("a payment requested without waiting is answered once its commit is durable, and holds its key until then") {
    GIVEN("an invoice, on a store that holds its commits") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        WHEN("a payment is requested with a key, without waiting") {
            Answer<application::PaymentRequestReply> answer;
            world.service.request_payment_async(keyed(invoice, "k-1"), answer.done());
            run_what_is_due(world);
            THEN("nothing is answered while its commit is held, and a repeat of the key is in use") {
                CHECK(answer.calls == 0);
                REQUIRE(store.held.size() == 1);
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::pending);
                auto repeat = world.service.request_payment(keyed(invoice, "k-1"));
                CHECK(repeat.result.error().code == ErrorCode::idempotency_key_in_use);
            }
            AND_WHEN("the commit is made durable") {
                store.answer_one();
                run_what_is_due(world);
                THEN("the payment is answered once, not as a replay, and a repeat replays it") {
                    REQUIRE(answer.calls == 1);
                    REQUIRE(answer.reply->result);
                    CHECK_FALSE(answer.reply->replayed);
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
                    check_replays(world, keyed(invoice, "k-1"), *answer.reply->result);
                }
                THEN("its event was published: the charge went out") {
                    CHECK(world.gateway_port.charges == 1);
                }
            }
        }
    }
}

SCENARIO("an asynchronous payment request whose invoice moved under it goes round again") {
    GIVEN("an invoice, and a store whose next commit answers conflict") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        store.conflicts = 1;
        WHEN("a payment is requested without waiting") {
            Answer<application::PaymentRequestReply> answer;
            world.service.request_payment_async(keyed(invoice, "k-1"), answer.done());
            run_what_is_due(world);
            THEN("it read the invoice again and committed a second time") {
                CHECK(answer.calls == 0);
                REQUIRE(store.held.size() == 1);
                store.answer_one();
                run_what_is_due(world);
                REQUIRE(answer.calls == 1);
                REQUIRE(answer.reply->result);
                CHECK(world.service.payments_of(invoice.id())->size() == 1);
            }
        }
    }
}

SCENARIO("an asynchronous payment request whose commit is refused answers so and frees its key") {
    GIVEN("an invoice, and a store whose writer refuses the next commit") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        store.unavailable = 1;
        WHEN("a payment is requested without waiting") {
            Answer<application::PaymentRequestReply> answer;
            world.service.request_payment_async(keyed(invoice, "k-1"), answer.done());
            run_what_is_due(world);
            THEN("it answers storage_unavailable, and a repeat of the key runs again") {
                REQUIRE(answer.calls == 1);
                CHECK(answer.reply->result.error().code == ErrorCode::storage_unavailable);
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::pending);
                Answer<application::PaymentRequestReply> repeat;
                world.service.request_payment_async(keyed(invoice, "k-1"), repeat.done());
                CHECK(store.held.size() == 1);
            }
        }
    }
}

SCENARIO("an asynchronous command refused before anything is committed is answered at once") {
    GIVEN("an invoice paid with a key") {
        HeldCommits store;
        store.hold = false;
        World world({.store = &store});
        Invoice invoice = world.create();
        auto const first = world.service.request_payment(keyed(invoice, "k-1"));
        REQUIRE(first.result);
        WHEN("the key is repeated without waiting") {
            Answer<application::PaymentRequestReply> answer;
            world.service.request_payment_async(keyed(invoice, "k-1"), answer.done());
            THEN("the replay is answered on the caller's thread, before the call returns") {
                REQUIRE(answer.calls == 1);
                REQUIRE(answer.reply->replayed);
                CHECK(answer.reply->result->id() == first.result->id());
            }
        }
        WHEN("the service stops accepting, then is asked to create and to pay") {
            world.service.stop_accepting();
            Answer<Result<Invoice>> created;
            Answer<application::PaymentRequestReply> paid;
            world.service.create_invoice_async({.amount = usd(500)}, created.done());
            world.service.request_payment_async(keyed(invoice, "k-2"), paid.done());
            THEN("both are refused at once, and nothing was committed") {
                REQUIRE(created.calls == 1);
                CHECK(created.reply->error().code == ErrorCode::unavailable);
                REQUIRE(paid.calls == 1);
                CHECK(paid.reply->result.error().code == ErrorCode::unavailable);
                CHECK(world.service.payments_of(invoice.id())->size() == 1);
            }
        }
    }
}

SCENARIO("an invoice created without waiting is answered once its commit is durable") {
    GIVEN("a store that holds its commits") {
        HeldCommits store;
        World world({.store = &store});
        WHEN("an invoice is created without waiting") {
            Answer<Result<Invoice>> answer;
            world.service.create_invoice_async({.id = iid("inv_async"), .amount = usd(700)}, answer.done());
            run_what_is_due(world);
            THEN("it is answered only after its commit, and the same id again is already_exists") {
                CHECK(answer.calls == 0);
                CHECK_FALSE(store.inner.invoice(iid("inv_async")));
                store.answer_one();
                run_what_is_due(world);
                REQUIRE(answer.calls == 1);
                REQUIRE(*answer.reply);
                CHECK((*answer.reply)->id() == iid("inv_async"));
                CHECK(store.inner.invoice(iid("inv_async")) == **answer.reply);
                Answer<Result<Invoice>> again;
                world.service.create_invoice_async({.id = iid("inv_async"), .amount = usd(700)}, again.done());
                store.answer_one();
                run_what_is_due(world);
                REQUIRE(again.calls == 1);
                CHECK(again.reply->error().code == ErrorCode::already_exists);
            }
        }
    }
}

SCENARIO("an asynchronous payment request answered after the scheduler refused its continuation") {
    GIVEN("an invoice, on a store that holds its commits, with a scheduler that refuses its next post") {
        HeldCommits store;
        WatchedPosts* posts = nullptr;
        World world({.store = &store, .wrap_scheduler = wrapped(posts)});
        Invoice invoice = world.create();
        Answer<application::PaymentRequestReply> answer;
        world.service.request_payment_async(keyed(invoice, "k-1"), answer.done());
        REQUIRE(store.held.size() == 1);
        posts->failing_posts = 1;
        WHEN("its commit is made durable") {
            store.answer_one();
            THEN("the payment is answered there, from the store's thread, and the key replays it") {
                REQUIRE(answer.calls == 1);
                REQUIRE(answer.reply->result);
                check_replays(world, keyed(invoice, "k-1"), *answer.reply->result);
            }
        }
    }
}

SCENARIO("a service destroyed with an asynchronous command in flight never answers it") {
    GIVEN("a service of its own whose payment request's commit is held") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        auto service = std::make_unique<application::PaymentService>(world.ports);
        Answer<application::PaymentRequestReply> answer;
        service->request_payment_async(keyed(invoice, "k-1"), answer.done());
        REQUIRE(store.held.size() == 1);
        WHEN("the service is destroyed, then the commit answers") {
            service.reset();
            store.answer_one();
            run_what_is_due(world);
            THEN("nothing is called back into it") { CHECK(answer.calls == 0); }
        }
    }
}

// Review 25 (the asynchronous commands).

namespace {

// Metrics whose reports of a new payment and an invoice's status throw.
class ThrowingRequestReports final : public application::Metrics {
public:
    void payment_requested() override { throw std::runtime_error("the metrics adapter failed"); }
    void payment_succeeded() override {}
    void payment_failed(FailureKind) override {}
    void retry_scheduled() override {}
    void duplicate_delivery() override {}
    void invoice_status_changed(std::optional<InvoiceStatus>, InvoiceStatus) override {
        throw std::runtime_error("the metrics adapter failed");
    }
    void gateway_latency(Duration) override {}
    void outcome_verification() override {}
    void late_answer() override {}
    void review_required(application::ReviewCause) override {}
    void janitor_redrove(application::JanitorFinding) override {}
};

} // namespace

SCENARIO("review25 F2: an asynchronous command whose report throws is still answered, and its key replays") {
    GIVEN("a store that holds its commits, and metrics that throw on a new invoice or payment") {
        HeldCommits store;
        ThrowingRequestReports metrics;
        World world({.store = &store, .metrics = &metrics});
        Answer<Result<Invoice>> created;
        world.service.create_invoice_async({.amount = usd(900)}, created.done());
        store.answer_one();
        CHECK_NOTHROW(run_what_is_due(world));
        REQUIRE(created.calls == 1);
        REQUIRE(*created.reply);
        Invoice const invoice = **created.reply;
        WHEN("a keyed payment is requested without waiting, and committed") {
            Answer<application::PaymentRequestReply> answer;
            world.service.request_payment_async(keyed(invoice, "k-1"), answer.done());
            store.answer_one();
            CHECK_NOTHROW(run_what_is_due(world));
            THEN("it is answered with its payment, and a repeat of the key replays it") {
                REQUIRE(answer.calls == 1);
                REQUIRE(answer.reply->result);
                check_replays(world, keyed(invoice, "k-1"), *answer.reply->result);
            }
        }
    }
}

SCENARIO("review25 F6: an asynchronous payment request whose store throws an odd exception answers and frees its key") {
    GIVEN("an invoice, on a store whose next asynchronous commit throws an int") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        store.odd_refusals = 1;
        WHEN("a keyed payment is requested without waiting") {
            Answer<application::PaymentRequestReply> answer;
            CHECK_NOTHROW(world.service.request_payment_async(keyed(invoice, "k-1"), answer.done()));
            THEN("it answers storage_unavailable at once, and the key runs again") {
                REQUIRE(answer.calls == 1);
                CHECK(answer.reply->result.error().code == ErrorCode::storage_unavailable);
                store.hold = false;
                CHECK(world.service.request_payment(keyed(invoice, "k-1")).result);
            }
        }
    }
}

SCENARIO("review25 F5: an asynchronous payment refused by its decision ends its claim on the caller's thread") {
    GIVEN("an invoice already paid, and a scheduler whose posts are counted") {
        HeldCommits store;
        store.hold = false;
        WatchedPosts* posts = nullptr;
        World world({.store = &store, .wrap_scheduler = wrapped(posts)});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_ok");
        run_what_is_due(world);
        REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
        int posted = 0;
        posts->on_post = [&] { ++posted; };
        WHEN("a keyed payment is requested without waiting") {
            Answer<application::PaymentRequestReply> answer;
            world.service.request_payment_async(keyed(invoice, "k-2"), answer.done());
            THEN("it is refused before the call returns, through no scheduler thread, and the key is free again") {
                REQUIRE(answer.calls == 1);
                CHECK(answer.reply->result.error().code == ErrorCode::invoice_already_paid);
                CHECK(posted == 0);
                Answer<application::PaymentRequestReply> again;
                world.service.request_payment_async(keyed(invoice, "k-2"), again.done());
                REQUIRE(again.calls == 1);
                CHECK(again.reply->result.error().code == ErrorCode::invoice_already_paid);
            }
        }
    }
}

SCENARIO("review25 F1: an engine's shutdown waits for the asynchronous commands it accepted") {
    GIVEN("a store that holds its commits, and a payment requested without waiting") {
        HeldCommits store;
        World world({.store = &store});
        Invoice invoice = world.create();
        Answer<application::PaymentRequestReply> answer;
        world.service.request_payment_async(keyed(invoice, "k-1"), answer.done());
        REQUIRE(store.held.size() == 1);
        THEN("it counts as in flight until it is answered") {
            CHECK(world.service.commands_in_flight() == 1);
            CHECK_FALSE(world.service.wait_commands(std::chrono::steady_clock::now()));
            store.answer_one();
            run_what_is_due(world);
            REQUIRE(answer.calls == 1);
            CHECK(world.service.commands_in_flight() == 0);
            CHECK(world.service.wait_commands(std::chrono::steady_clock::now()));
        }
    }
}
