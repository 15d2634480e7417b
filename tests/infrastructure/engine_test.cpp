#include "support/builders.hpp"

#include <payments/application/outbox_relay.hpp>
#include <payments/engine.hpp>
#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/store/memory_store.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

using namespace test;

namespace {

std::unique_ptr<Engine> an_engine(EngineOptions options = {}) {
    options.log_output = nullptr;
    options.threads = 2;
    options.seed = 11;
    return Engine::create(options).value();
}

} // namespace

SCENARIO("the engine runs a whole flow on its own threads") {
    auto engine = an_engine();
    auto invoice = engine->service().create_invoice({.amount = usd(1999)}).value();
    REQUIRE(engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_ok"}).result);
    REQUIRE(engine->wait_idle(std::chrono::seconds(10)));
    CHECK(engine->service().invoice(invoice.id()).value().status() == InvoiceStatus::paid);
    std::string const metrics = engine->metrics().render();
    CHECK(metrics.find("payments_succeeded_total 1\n") != std::string::npos);
    CHECK(metrics.find("invoices{status=\"PAID\"} 1\n") != std::string::npos);
    CHECK(metrics.find("bus_events_delivered_total") != std::string::npos);
    auto const report = engine->shutdown(std::chrono::seconds(5));
    CHECK(report.scheduled_dropped == 0);
    CHECK(report.unsettled.total() == 0);
    CHECK(engine->shutdown(std::chrono::seconds(5)).scheduled_dropped == 0); // idempotent
}

SCENARIO("shutdown refuses new requests at once, drops retries that are not due and says what is unsettled") {
    EngineOptions options;
    // Full jitter may draw any delay up to 500 h: one under a minute is a 1-in-30000 chance.
    options.processor.retry = {.base = std::chrono::hours(500), .cap = std::chrono::hours(500)};
    auto engine = an_engine(options);
    auto invoice = engine->service().create_invoice({.amount = usd(500)}).value();
    engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_unavailable"});
    REQUIRE(engine->wait_idle(std::chrono::seconds(10)));
    CHECK(engine->asio_bus().stats().scheduled_pending == 1);
    auto other = engine->service().create_invoice({.amount = usd(700)}).value();
    auto const report = engine->shutdown(std::chrono::seconds(5));
    CHECK(report.scheduled_dropped == 1);
    CHECK(report.unsettled.retry_due == 1);
    CHECK(report.unsettled.total() == 1);
    auto refused = engine->service().request_payment({.invoice_id = other.id(), .payment_method = "pm_card_ok"});
    CHECK(refused.result.error().code == ErrorCode::unavailable);
    CHECK(engine->service().invoice(other.id()).value().status() == InvoiceStatus::pending);
}

SCENARIO("an engine with an invalid policy is refused") {
    EngineOptions options;
    options.processor.retry.max_attempts = 0;
    CHECK(Engine::create(options).error().code == ErrorCode::invalid_argument);
}

namespace {

// A provider that charges what it is asked, at once, and remembers the keys.
class InstantGateway final : public application::PaymentGateway {
public:
    void charge(application::ChargeRequest request, std::function<void(application::ChargeAnswer)> on_answer) override {
        {
            std::lock_guard lock(mutex_);
            keys_.push_back(request.idempotency_key);
        }
        on_answer(application::ChargeAnswer::success("ch_" + request.idempotency_key, request.amount));
    }
    void lookup(std::string, std::function<void(application::ChargeStatus)> on_answer) override {
        on_answer(application::ChargeStatus::not_found());
    }
    std::size_t charges() const {
        std::lock_guard lock(mutex_);
        return keys_.size();
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::string> keys_;
};

// Keeps every message it is given.
class RecordingLogger final : public application::Logger {
public:
    bool enabled(application::LogLevel) const noexcept override { return true; }
    void write(application::LogLevel, std::string_view message, std::span<application::LogField const>) override {
        std::lock_guard lock(mutex_);
        messages_.emplace_back(message);
    }
    std::size_t count() const {
        std::lock_guard lock(mutex_);
        return messages_.size();
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::string> messages_;
};

// Counts what the use cases report, nothing more.
class CountingMetrics final : public application::Metrics {
public:
    std::atomic<int> succeeded{0};
    std::atomic<int> status_changes{0};
    void payment_requested() override {}
    void payment_succeeded() override { ++succeeded; }
    void payment_failed(FailureKind) override {}
    void retry_scheduled() override {}
    void duplicate_delivery() override {}
    void invoice_status_changed(std::optional<InvoiceStatus>, InvoiceStatus) override { ++status_changes; }
    void gateway_latency(Duration) override {}
    void outcome_verification() override {}
    void late_answer() override {}
    void review_required(application::ReviewCause) override {}
    void janitor_redrove(application::JanitorFinding) override {}
};

EngineOptions quiet_options() {
    EngineOptions options;
    options.log_output = nullptr;
    options.threads = 2;
    options.seed = 11;
    return options;
}

} // namespace

SCENARIO("an engine built with the application's adapters uses them and no default") {
    GIVEN("a gateway, a store, a logger, metrics and a clock of the application's") {
        auto gateway = std::make_shared<InstantGateway>();
        auto store = std::make_shared<infrastructure::InMemoryStore>();
        auto logger = std::make_shared<RecordingLogger>();
        auto metrics = std::make_shared<CountingMetrics>();
        auto clock = std::make_shared<infrastructure::ManualClock>(t0() + 7h);
        auto engine = Engine::builder(quiet_options())
                          .gateway("instant", gateway)
                          .store(store)
                          .logger(logger)
                          .metrics(metrics)
                          .clock(clock)
                          .build()
                          .value();
        WHEN("an invoice is paid") {
            auto invoice = engine->service().create_invoice({.amount = usd(1999)}).value();
            REQUIRE(engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_x"}).result);
            REQUIRE(engine->wait_settled(10s));
            THEN("the application's gateway charged it, its store holds it and its clock dated it") {
                CHECK(gateway->charges() == 1);
                CHECK(store->invoice(invoice.id())->status() == InvoiceStatus::paid);
                CHECK(invoice.created_at() == t0() + 7h);
                CHECK(engine->simulated_gateway() == nullptr);
                REQUIRE(engine->gateways().size() == 1);
                CHECK(engine->gateways()[0].name == "instant");
            }
            THEN("its metrics counted and its logger wrote; the engine's registry has no use-case counters") {
                CHECK(metrics->succeeded == 1);
                CHECK(metrics->status_changes >= 3); // PENDING, PROCESSING, PAID
                CHECK(engine->metrics().render().find("payments_succeeded_total") == std::string::npos);
                CHECK(logger->count() > 0u);
            }
        }
    }
}

SCENARIO("several gateways are kept in preference order and the first one charges") {
    auto first = std::make_shared<InstantGateway>();
    auto second = std::make_shared<InstantGateway>();
    auto engine =
        Engine::builder(quiet_options()).gateway("primary", first).gateway("fallback", second).build().value();
    auto invoice = engine->service().create_invoice({.amount = usd(500)}).value();
    REQUIRE(engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_x"}).result);
    REQUIRE(engine->wait_settled(10s));
    REQUIRE(engine->gateways().size() == 2);
    CHECK(engine->gateways()[0].name == "primary");
    CHECK(engine->gateways()[1].name == "fallback");
    CHECK(first->charges() == 1);
    CHECK(second->charges() == 0);
}

SCENARIO("the builder refuses a null adapter and a bad or repeated gateway name") {
    auto gateway = std::make_shared<InstantGateway>();
    CHECK(Engine::builder(quiet_options()).store(nullptr).build().error().code == ErrorCode::invalid_argument);
    CHECK(Engine::builder(quiet_options()).gateway("a", nullptr).build().error().code == ErrorCode::invalid_argument);
    CHECK(Engine::builder(quiet_options()).gateway("", gateway).build().error().code == ErrorCode::invalid_argument);
    CHECK(Engine::builder(quiet_options()).gateway("has space", gateway).build().error().code ==
          ErrorCode::invalid_argument);
    CHECK(Engine::builder(quiet_options()).gateway("a", gateway).gateway("a", gateway).build().error().code ==
          ErrorCode::invalid_argument);
    CHECK(Engine::builder(quiet_options()).gateway("a", gateway).gateway("b", gateway).build());
}

SCENARIO("an engine runs on the application's io_context") {
    GIVEN("an io_context the application runs on two threads of its own") {
        boost::asio::io_context io;
        auto work = boost::asio::make_work_guard(io);
        std::vector<std::jthread> threads;
        for (int i = 0; i < 2; ++i) threads.emplace_back([&io] { io.run(); });
        auto engine = Engine::builder(quiet_options()).run_on(io).build().value();
        WHEN("an invoice is paid") {
            std::mutex mutex;
            std::thread::id handled_on;
            auto on_paid = engine->bus().subscribe<InvoicePaid>("test", [&](InvoicePaid const&) {
                std::lock_guard lock(mutex);
                handled_on = std::this_thread::get_id();
            });
            auto invoice = engine->service().create_invoice({.amount = usd(700)}).value();
            REQUIRE(engine->service()
                        .request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_ok"})
                        .result);
            THEN("the work ran on the application's threads and the invoice is PAID") {
                REQUIRE(engine->wait_settled(10s));
                CHECK(engine->service().invoice(invoice.id()).value().status() == InvoiceStatus::paid);
                std::lock_guard lock(mutex);
                CHECK((handled_on == threads[0].get_id() || handled_on == threads[1].get_id()));
            }
        }
        engine.reset();
        work.reset();
        io.stop();
    }
}

SCENARIO("wait_idle says nothing is happening now, and wait_settled waits for the retries") {
    GIVEN("a card that fails twice before it is charged") {
        WHEN("the retries are far away") {
            EngineOptions options = quiet_options();
            // Full jitter may draw any delay up to 500 h: one under a minute is a 1-in-30000 chance.
            options.processor.retry = {.base = 500h, .cap = 500h};
            auto engine = Engine::create(options).value();
            auto invoice = engine->service().create_invoice({.amount = usd(300)}).value();
            engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_flaky_2"});
            THEN("wait_idle returns with the invoice PROCESSING, and wait_settled does not return true") {
                REQUIRE(engine->wait_idle(10s));
                CHECK(engine->service().invoice(invoice.id()).value().status() == InvoiceStatus::processing);
                CHECK_FALSE(engine->wait_settled(50ms));
            }
        }
        WHEN("the retries are near") {
            EngineOptions options = quiet_options();
            options.processor.retry = {.base = 5ms, .multiplier = 2.0, .cap = 20ms, .max_attempts = 5};
            auto engine = Engine::create(options).value();
            auto invoice = engine->service().create_invoice({.amount = usd(300)}).value();
            engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_flaky_2"});
            THEN("wait_settled returns once the third attempt has paid it") {
                REQUIRE(engine->wait_settled(10s));
                auto const settled = engine->service().invoice(invoice.id()).value();
                CHECK(settled.status() == InvoiceStatus::paid);
                CHECK(settled.current_attempt() == 3);
            }
        }
    }
    GIVEN("a charge of another amount, which needs an operator") {
        auto engine = Engine::create(quiet_options()).value();
        auto invoice = engine->service().create_invoice({.amount = usd(300)}).value();
        engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_amount_mismatch"});
        THEN("wait_settled returns with the invoice in NEEDS_REVIEW") {
            REQUIRE(engine->wait_settled(10s));
            CHECK(engine->service().invoice(invoice.id()).value().status() == InvoiceStatus::needs_review);
        }
    }
}

namespace {

// The in-memory store, whose asynchronous commits wait in a queue until the
// test answers them (a durable store's writer, behind an fsync).
class HeldStore final : public application::Store {
public:
    std::optional<Invoice> invoice(InvoiceId const& id) const override { return inner.invoice(id); }
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override {
        return inner.invoices(query);
    }
    std::optional<Payment> payment(PaymentId const& id) const override { return inner.payment(id); }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner.payments_of(id); }
    application::OpenAttemptPage open_attempts(std::optional<PaymentId> const& after, std::size_t limit) const override {
        return inner.open_attempts(after, limit);
    }
    Result<void> commit(application::Changes changes) override { return inner.commit(std::move(changes)); }
    void commit_async(application::Changes changes, Committed done) override {
        {
            std::lock_guard lock(mutex_);
            held_.push_back({std::move(changes), std::move(done)});
        }
        arrived_.notify_all();
    }
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override {
        if (outbox_unreadable) throw application::StorageFailure("the outbox cannot be read");
        return inner.undelivered_page(from, limit);
    }
    void mark_delivered(EventId const& id) override { inner.mark_delivered(id); }
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override {
        return inner.scheduled_page(from, limit);
    }
    std::vector<Event> history(InvoiceId const& id) const override { return inner.history(id); }

    bool wait_held(std::chrono::steady_clock::duration timeout) {
        std::unique_lock lock(mutex_);
        return arrived_.wait_for(lock, timeout, [this] { return !held_.empty(); });
    }
    // Commits every held commit and answers it, on the caller's thread; how many.
    std::size_t answer_all() {
        std::vector<std::pair<application::Changes, Committed>> taken;
        {
            std::lock_guard lock(mutex_);
            taken.swap(held_);
        }
        for (auto& [changes, done] : taken) done(inner.commit(std::move(changes)));
        return taken.size();
    }

    infrastructure::InMemoryStore inner;
    std::atomic<bool> outbox_unreadable{false}; ///< undelivered_page() throws StorageFailure

private:
    std::mutex mutex_;
    std::condition_variable arrived_;
    std::vector<std::pair<application::Changes, Committed>> held_; // Owned by: mutex_
};

} // namespace

SCENARIO("an engine destroyed while a settlement's commit waits in the store's queue") {
    GIVEN("a store that outlives the engine and holds the settlement's commit") {
        auto store = std::make_shared<HeldStore>();
        auto gateway = std::make_shared<InstantGateway>();
        InvoiceId id = iid();
        {
            auto engine = Engine::builder(quiet_options()).store(store).gateway("instant", gateway).build().value();
            id = engine->service().create_invoice({.amount = usd(900)}).value().id();
            REQUIRE(engine->service().request_payment({.invoice_id = id, .payment_method = "pm_card_ok"}).result);
            REQUIRE(store->wait_held(std::chrono::seconds(10)));
            engine->shutdown(std::chrono::milliseconds(0));
        }
        WHEN("the store answers the commit after the engine is destroyed") {
            CHECK(store->answer_all() == 1); // the engine's scheduler, bus and logger are gone: none is touched
            THEN("the settlement is durable and its events wait in the outbox for the next start") {
                CHECK(store->invoice(id)->status() == InvoiceStatus::paid);
                bool paid_in_outbox = false;
                for (auto const& e : store->undelivered()) paid_in_outbox |= std::holds_alternative<InvoicePaid>(e);
                CHECK(paid_in_outbox);
            }
        }
    }
}

SCENARIO("an engine is ready once an earlier run's outbox is handed over, whatever retries are due later") {
    GIVEN("a store an earlier run left with more retries due in an hour than the bus takes at once") {
        auto store = std::make_shared<infrastructure::InMemoryStore>();
        auto clock = std::make_shared<infrastructure::ManualClock>(t0());
        std::size_t const retries = application::OutboxRelay::max_scheduled + 200;
        for (std::size_t i = 0; i < retries; ++i) {
            auto created = Invoice::create(iid("inv_" + std::to_string(i)), usd(700), "", meta()).value();
            application::Changes changes{application::Changes::InvoiceWrite{Invoice::from(created), 0}, {}};
            InvoiceCreated retry = created;
            retry.envelope.id = meta().id;
            changes.scheduled.push_back({retry, t0() + 1h});
            REQUIRE(store->commit(changes));
        }
        WHEN("an engine starts on it") {
            auto engine = Engine::builder(quiet_options()).store(store).clock(clock).build().value();
            THEN("it is not recovering (review 21 F1: readiness waited an hour), and the retries wait for their time") {
                CHECK(engine->recovery().rearmed == application::OutboxRelay::max_scheduled);
                CHECK_FALSE(engine->recovering());
                CHECK(store->scheduled().size() == retries);
            }
        }
    }
}

// Review 21, F6: one catch around the relay's start and recovery: an outbox
// that could not be read at start skipped recovery's first page too.
SCENARIO("an engine whose store cannot read the outbox at start still recovers the attempts an earlier run left") {
    GIVEN("an attempt an earlier run left REQUESTED, and an outbox that cannot be read") {
        auto store = std::make_shared<HeldStore>();
        auto gateway = std::make_shared<InstantGateway>();
        Invoice invoice = Invoice::from(Invoice::create(iid(), usd(700), "", meta()).value());
        REQUIRE(store->commit({application::Changes::InvoiceWrite{invoice, 0}, {}}));
        std::uint64_t const version = invoice.version();
        auto requested = invoice.request_payment({pid(1), "k.earlier-run", "instant"}, "pm_card_ok", meta()).value();
        invoice.apply(requested);
        REQUIRE(store->commit({application::Changes::InvoiceWrite{invoice, version}, {{Payment::from(requested), 0}}}));
        store->outbox_unreadable = true;
        WHEN("an engine starts on it") {
            {
                auto engine = Engine::builder(quiet_options()).store(store).gateway("instant", gateway).build().value();
                THEN("the attempt is recovered, and the outbox is read again by the relay's rounds") {
                    CHECK(engine->recovery().redriven == 1);
                    CHECK(engine->recovering());
                }
                engine->shutdown(std::chrono::milliseconds(0));
            }
            store->answer_all();
        }
    }
}
