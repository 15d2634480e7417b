// The money rules of docs/decisions.md, one scenario per finding of the
// review that found nine ways to lose money, charge twice or strand an
// invoice when the gateway's answer is late, missing or ambiguous.
#include "support/world.hpp"

#include <payments/application/outbox_relay.hpp>

#include <map>
#include <set>

using namespace test;

namespace {

// A request committed whose event was lost (a crash between commit and
// publish, a dead letter): nothing will deliver it.
PaymentRequested commit_without_publishing(World& world, Invoice invoice, std::string const& method) {
    std::uint64_t const version = invoice.version();
    auto requested = invoice.request_payment(application::new_attempt(world.ports), method, meta()).value();
    invoice.apply(requested);
    REQUIRE(world.store.commit({application::Changes::InvoiceWrite{invoice, version}, {{Payment::from(requested), 0}}}));
    return requested;
}

WorldOptions unkind(infrastructure::SimulatedGatewayOptions gateway = {}) {
    return {.processor = {.retry = {.max_attempts = 5}, .gateway_timeout = 5s, .settle_window = 2min},
            .gateway = gateway};
}

// Attempts an earlier run left REQUESTED on "a" (keys of another run), their
// PaymentRequested left in the outbox too if `published`.
std::vector<InvoiceId> left_by_an_earlier_run(World& world, int count, bool published = false) {
    std::vector<InvoiceId> invoices;
    for (int i = 0; i < count; ++i) {
        Invoice invoice = world.create();
        std::uint64_t const version = invoice.version();
        PaymentId const id = PaymentId::generate(world.random);
        auto requested = invoice
                             .request_payment({id, std::string(id.str()) + ".earlier-run", "a"}, "pm_card_ok",
                                              meta(world.clock.now()))
                             .value();
        invoice.apply(requested);
        application::Changes changes{application::Changes::InvoiceWrite{invoice, version}, {{Payment::from(requested), 0}}};
        if (published) changes.events.emplace_back(requested);
        REQUIRE(world.store.commit(std::move(changes)));
        invoices.push_back(invoice.id());
    }
    return invoices;
}

} // namespace

SCENARIO("finding 1: an answer that arrives after the timeout still settles the attempt") {
    GIVEN("a gateway that charges, then answers 30 s later, past a 5 s timeout; its search lags an hour") {
        World world(unkind({.late_answer_delay = 30s, .search_lag = 1h}));
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_late_answer");
        WHEN("the timeout fires") {
            world.settle();
            world.clock.advance(5s);
            world.settle();
            THEN("the attempt is UNKNOWN, not failed, and the invoice waits") {
                CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::unknown);
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
            }
        }
        WHEN("everything has run") {
            world.run();
            THEN("the late answer made the invoice PAID by its one charge, and nothing is left scheduled") {
                CHECK(world.counter("payment_gateway_late_answers_total") == 1);
                Invoice paid = world.invoice(invoice.id());
                CHECK(world.service.payments_of(invoice.id()).value()[0].updated_at() - t0() == 30s);
                CHECK(paid.status() == InvoiceStatus::paid);
                CHECK(paid.current_attempt() == 1);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
                CHECK(world.scheduler.pending() == 0);
                CHECK(world.processor->in_flight() == 0);
                AND_THEN("a manual retry is refused as already paid") {
                    CHECK(world.service.request_payment({invoice.id(), "pm_card_ok"}).result.error().code ==
                          ErrorCode::invoice_already_paid);
                }
            }
        }
    }
}

SCENARIO("finding 2: an unknown outcome never ends a cycle FAILED while the provider holds the charge") {
    GIVEN("a charge booked whose answer is lost, and a gateway whose look-ups go unanswered for a while") {
        World world(unkind());
        world.gateway_port.unanswered_lookups = 6;
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_lost_response");
        WHEN("everything has run") {
            world.run();
            THEN("the invoice is PAID by the one key it ever sent, never FAILED on the way") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.events_of<InvoiceFailed>().empty());
                CHECK(world.gateway.keys_seen().size() == 1);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
                CHECK(world.gateway_port.lookups == 7);
            }
        }
    }
}

SCENARIO("finding 3: \"not found\" right after a timeout is not taken as \"not charged\"") {
    GIVEN("a provider that books a timed-out charge 20 s late, within the 2 min settle window") {
        World world(unkind({.booking_delay = 20s}));
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_late_booking");
        WHEN("the timeout fires and the first look-up finds nothing") {
            world.settle();
            world.clock.advance(5s);
            world.settle();
            world.clock.advance(1s);
            world.settle();
            THEN("no new key is issued and a manual retry is refused") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
                CHECK(world.service.request_payment({invoice.id(), "pm_card_ok"}).result.error().code ==
                      ErrorCode::payment_in_progress);
            }
        }
        WHEN("everything has run") {
            world.run();
            THEN("the late booking is found: PAID, one charge, one key") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
                CHECK(world.gateway.keys_seen().size() == 1);
            }
        }
    }
}

SCENARIO("finding 4: a look-up that answers \"still processing\" is asked again until it is final") {
    GIVEN("a charge whose answer is lost and which the provider reports as processing for 60 s") {
        WorldOptions options = unkind();
        options.processor.janitor_interval = Duration::zero(); // the verification alone must see it through
        World world(options);
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_processing");
        WHEN("the first look-up says PENDING") {
            world.settle();
            world.clock.advance(5s);
            world.settle();
            THEN("another look-up is scheduled: the invoice is not stranded") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
                CHECK(world.scheduler.pending() > 0);
            }
        }
        WHEN("everything has run") {
            world.run();
            THEN("the invoice is PAID") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway_port.lookups >= 2);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
            }
        }
    }
}

SCENARIO("finding 5: once shutdown begins, new requests are refused before anything is committed") {
    GIVEN("a service that stopped accepting") {
        World world;
        Invoice invoice = world.create();
        world.service.stop_accepting();
        auto key = application::IdempotencyKey::make("client", "k-shutdown").value();
        WHEN("a payment is requested with a key") {
            auto answer = world.service.request_payment({invoice.id(), "pm_card_ok", key});
            THEN("it is unavailable, nothing is stored, and the key stays free") {
                CHECK(answer.result.error().code == ErrorCode::unavailable);
                CHECK(world.store.payments_of(invoice.id()).empty());
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::pending);
                CHECK(world.idempotency.claim(key, "x", world.clock.now()).state ==
                      application::IdempotencyClaim::State::claimed);
            }
        }
        WHEN("an invoice is created") {
            THEN("it is unavailable too") {
                CHECK(world.service.create_invoice({.amount = usd(1)}).error().code == ErrorCode::unavailable);
            }
        }
    }
    GIVEN("accepted work that has not settled") {
        World world({.processor = {.retry = {.base = 1h, .cap = 1h}}});
        world.pay(world.create(), "pm_card_flaky_1"); // a retry scheduled for later
        world.pay(world.create(), "pm_card_timeout");  // an answer that will be unknown
        world.settle();
        world.clock.advance(10s);
        world.settle();
        THEN("the processor counts it by kind") {
            auto const work = world.processor->unsettled();
            CHECK(work.retry_due == 1);
            CHECK(work.unknown + work.at_gateway == 1);
            CHECK(work.total() == 2);
        }
    }
}

SCENARIO("finding 6: gateway keys never repeat across runs, and a charge of another amount never pays") {
    GIVEN("runs with no instance id given") {
        auto key_of_a_run = [](std::uint64_t seed, std::string instance) {
            World world({.seed = seed, .instance_id = std::move(instance)});
            world.pay(world.create(), "pm_card_ok");
            world.run();
            REQUIRE(world.gateway.keys_seen().size() == 1);
            std::string key = world.gateway.keys_seen()[0];
            auto const dot = key.find('.');
            REQUIRE(dot != std::string::npos);
            return std::pair{key.substr(0, dot), key.substr(dot + 1)};
        };
        auto const [id_1, instance_1] = key_of_a_run(1, "");
        auto const [id_2, instance_2] = key_of_a_run(2, "");
        auto const [id_1_again, instance_1_again] = key_of_a_run(1, "");
        THEN("the key's instance part comes from the process, not the seed, and never repeats in it") {
            CHECK(id_1 != id_2);
            CHECK(id_1_again == id_1);             // the same seed: the same payment id
            CHECK(instance_1_again != instance_1); // but not the same key
            CHECK(instance_1.substr(0, 16) == instance_2.substr(0, 16)); // one process id, whatever the seed
            CHECK(instance_1[16] == '-');
        }
        THEN("the same seed in another process (another instance id) sends other keys") {
            auto const [id_3, instance_3] = key_of_a_run(1, "another-process");
            CHECK(id_3 == id_1);
            CHECK(instance_3 != instance_1);
        }
    }
    GIVEN("a provider that charges one cent more than asked") {
        World world;
        Invoice invoice = world.create(usd(99900));
        world.pay(invoice, "pm_card_amount_mismatch");
        world.run();
        THEN("the invoice is not PAID: it needs an operator, and the alert is counted") {
            Invoice review = world.invoice(invoice.id());
            CHECK(review.status() == InvoiceStatus::needs_review);
            CHECK(review.review_reason() == "the gateway charged 999.01 USD, the invoice is for 999.00 USD");
            CHECK(world.counter("invoices_review_required_total{cause=\"amount_mismatch\"}") == 1);
            CHECK(world.counter("invoices{status=\"NEEDS_REVIEW\"}") == 1);
            CHECK(world.events_of<InvoicePaid>().empty());
        }
    }
}

SCENARIO("finding 7: state-dependent refusals are not stored, and keys expire strictly after the TTL") {
    GIVEN("a key first used for an invoice that does not exist yet") {
        World world;
        auto const key = application::IdempotencyKey::make("client", "k-404").value();
        auto const id = iid("inv_later");
        CHECK(world.service.request_payment({id, "pm_card_ok", key}).result.error().code == ErrorCode::not_found);
        WHEN("the invoice is created and the request repeated") {
            REQUIRE(world.service.create_invoice({.id = id, .amount = usd(500)}));
            auto again = world.service.request_payment({id, "pm_card_ok", key});
            THEN("it runs, instead of replaying the 404") {
                CHECK_FALSE(again.replayed);
                CHECK(again.result);
            }
        }
    }
    GIVEN("a key refused with payment_in_progress") {
        World world;
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_declined");
        auto const key = application::IdempotencyKey::make("client", "k-409").value();
        CHECK(world.service.request_payment({invoice.id(), "pm_card_ok", key}).result.error().code ==
              ErrorCode::payment_in_progress);
        WHEN("the invoice failed meanwhile and the request is repeated") {
            world.run();
            auto again = world.service.request_payment({invoice.id(), "pm_card_ok", key});
            THEN("it runs and is accepted") {
                CHECK_FALSE(again.replayed);
                CHECK(again.result);
            }
        }
    }
    GIVEN("a refusal of the request's own arguments") {
        World world;
        Invoice invoice = world.create();
        auto const key = application::IdempotencyKey::make("client", "k-400").value();
        auto first = world.service.request_payment({invoice.id(), "bad method!", key});
        THEN("it is replayed: it depends on the request alone") {
            CHECK(first.result.error().code == ErrorCode::invalid_argument);
            CHECK(world.service.request_payment({invoice.id(), "bad method!", key}).replayed);
        }
    }
    GIVEN("a key used exactly 24 h ago") {
        World world;
        Invoice invoice = world.create();
        auto const key = application::IdempotencyKey::make("client", "k-ttl").value();
        REQUIRE(world.service.request_payment({invoice.id(), "pm_card_declined", key}).result);
        world.run();
        world.clock.advance(24h - (world.clock.now() - t0()));
        THEN("it still replays at exactly the TTL, and runs again just after it") {
            CHECK(world.service.request_payment({invoice.id(), "pm_card_declined", key}).replayed);
            world.clock.advance(1us);
            CHECK_FALSE(world.service.request_payment({invoice.id(), "pm_card_declined", key}).replayed);
        }
    }
    THEN("a key can only be made through make(), which checks it") {
        static_assert(!std::is_aggregate_v<application::IdempotencyKey>);
        static_assert(!std::is_constructible_v<application::IdempotencyKey, std::string, std::string>);
        CHECK(application::IdempotencyKey::make("", std::string(8 << 20, 'k')).error().code == ErrorCode::invalid_argument);
    }
}

SCENARIO("a definitive answer that contradicts the record puts the invoice before an operator") {
    GIVEN("a provider whose answer comes 10 min late and whose search lags an hour, past a 2 min settle window") {
        World world({.processor = {.retry = {.max_attempts = 1}, .gateway_timeout = 5s, .settle_window = 2min},
                     .gateway = {.late_answer_delay = 10min, .search_lag = 1h}});
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_late_answer");
        WHEN("the window passes with nothing found, and the charge answer comes after that") {
            world.run();
            THEN("the invoice was FAILED, and the late charge takes it to NEEDS_REVIEW with an alert") {
                CHECK(world.events_of<InvoiceFailed>().size() == 1);
                Invoice flagged = world.invoice(invoice.id());
                CHECK(flagged.status() == InvoiceStatus::needs_review);
                CHECK(flagged.review_reason().starts_with("the gateway answered charged"));
                CHECK(world.counter("invoices_review_required_total{cause=\"contradiction\"}") == 1);
                AND_THEN("the operator confirms the charge: PAID, and the attempt says so") {
                    auto resolved = world.service.resolve_review({invoice.id(), {true, "ch_confirmed"}}).value();
                    CHECK(resolved.status() == InvoiceStatus::paid);
                    auto const attempt = world.service.payment(resolved.paid_by()).value();
                    CHECK(attempt.status() == PaymentStatus::succeeded);
                    CHECK(attempt.gateway_reference() == "ch_confirmed");
                }
            }
        }
    }
}

SCENARIO("an answer unknown past the verification limit needs an operator, who can settle it either way") {
    GIVEN("a gateway that never answers and whose look-ups never answer either") {
        World world({.processor = {.retry = {}, .gateway_timeout = 5s, .verification_limit = 1h}});
        world.gateway_port.unanswered_lookups = 1'000'000;
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_timeout");
        world.run();
        THEN("the invoice is NEEDS_REVIEW, look-ups stopped, and nothing is left scheduled") {
            Invoice review = world.invoice(invoice.id());
            CHECK(review.status() == InvoiceStatus::needs_review);
            CHECK(world.counter("invoices_review_required_total{cause=\"unresolved\"}") == 1);
            CHECK(world.scheduler.pending() == 0);
            CHECK(world.processor->unsettled().needs_review == 1);
        }
        WHEN("the operator found no charge") {
            auto resolved = world.service.resolve_review({invoice.id(), {false, ""}}).value();
            THEN("the invoice is FAILED, its attempt FAILED, and it is payable again") {
                CHECK(resolved.status() == InvoiceStatus::failed);
                CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::failed);
                world.pay(invoice, "pm_card_ok");
                world.run();
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
            }
        }
        WHEN("the operator asks for an invoice that is not in review") {
            THEN("it is refused") {
                Invoice other = world.create();
                CHECK(world.service.resolve_review({other.id(), {true, "ch_x"}}).error().code ==
                      ErrorCode::invalid_state);
            }
        }
    }
}

SCENARIO("the janitor re-drives attempts that nothing drives any more") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min}});
    GIVEN("an attempt REQUESTED whose PaymentRequested was lost") {
        Invoice invoice = world.create();
        commit_without_publishing(world, invoice, "pm_card_ok");
        WHEN("it is not yet overdue") {
            THEN("the janitor leaves it alone") { CHECK(world.processor->run_janitor() == 0); }
        }
        WHEN("it is overdue by more than the timeout and the janitor interval") {
            world.clock.advance(6min);
            CHECK(world.processor->run_janitor() == 1);
            world.run();
            THEN("it is charged once under its own key, and the invoice is PAID") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway.calls() == 1);
                CHECK(world.counter("payment_janitor_redriven_total{finding=\"stalled_attempt\"}") == 1);
            }
        }
    }
    GIVEN("an attempt UNKNOWN that no look-up is verifying (the process that knew was restarted)") {
        Invoice invoice = world.create();
        auto requested = commit_without_publishing(world, invoice, "pm_card_ok");
        // The provider did charge it: a charge whose answer was lost.
        world.gateway.charge({requested.envelope.payment_id, invoice.id(), requested.gateway_key, invoice.amount(),
                              "pm_card_ok", {}},
                             [](application::ChargeAnswer) {});
        Payment payment = world.store.payment(requested.envelope.payment_id).value();
        Invoice stored = world.invoice(invoice.id());
        auto const versions = std::pair{payment.version(), stored.version()};
        auto unknown = payment.fail({FailureKind::unknown_outcome, "restarted"}, meta()).value();
        payment.apply(unknown);
        stored.apply(unknown);
        REQUIRE(world.store.commit({application::Changes::InvoiceWrite{stored, versions.second},
                                    {{payment, versions.first}}}));
        WHEN("the janitor runs") {
            CHECK(world.processor->run_janitor() == 1);
            world.run();
            THEN("it verifies the key and the invoice is PAID, not charged again") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
                CHECK(world.counter("payment_janitor_redriven_total{finding=\"unverified\"}") == 1);
            }
        }
    }
}

// What a hostile review of the rules above found; each failed before its fix.
namespace {

// A provider whose charge answers come 10 min late and whose search lags an
// hour: past a 2 min settle window, a charge is recorded as not made.
WorldOptions late_past_the_window(int max_attempts) {
    return {.processor = {.retry = {.max_attempts = max_attempts}, .gateway_timeout = 5s, .settle_window = 2min},
            .gateway = {.late_answer_delay = 10min, .search_lag = 1h}};
}

} // namespace

SCENARIO("review 1: a second contradicting answer is an alert too, and the operator is told of both") {
    World world(late_past_the_window(2));
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_late_answer");
    world.run();
    REQUIRE(world.gateway.charges_for(invoice.id()) == 2);
    CHECK(world.counter("invoices_review_required_total{cause=\"contradiction\"}") == 2);
    Invoice flagged = world.invoice(invoice.id());
    CHECK(flagged.status() == InvoiceStatus::needs_review);
    CHECK(flagged.review_reason().find("attempt 1") != std::string::npos);
    CHECK(flagged.review_reason().find("attempt 2") != std::string::npos);
}

SCENARIO("review 2: an operator's \"not charged\" about one attempt keeps an invoice PAID by another") {
    GIVEN("an invoice PAID by a manual retry, then a late charge for its first attempt") {
        World world(late_past_the_window(1));
        Invoice invoice = world.create();
        world.pay(invoice, "pm_card_late_answer");
        world.settle();
        world.clock.advance(5s);
        world.settle();
        world.clock.advance(3min);
        world.settle();
        REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::failed);
        world.pay(invoice, "pm_card_ok");
        world.run();
        REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::needs_review);
        WHEN("the operator refunds the first charge and says \"not charged\"") {
            auto resolved = world.service.resolve_review({invoice.id(), {false, ""}}).value();
            THEN("the invoice is PAID by the manual retry, and a new request is refused") {
                CHECK(resolved.status() == InvoiceStatus::paid);
                CHECK(resolved.paid_by() == resolved.attempts()[1]);
                CHECK(world.service.request_payment({invoice.id(), "pm_card_ok"}).result.error().code ==
                      ErrorCode::invoice_already_paid);
                CHECK(world.gateway.charges_for(invoice.id()) == 2);
            }
        }
    }
}

SCENARIO("review 3: an operator can end FAILED an invoice whose odd charge was refunded") {
    World world;
    Invoice invoice = world.create(usd(99900));
    world.pay(invoice, "pm_card_amount_mismatch");
    world.run();
    REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::needs_review);
    auto resolved = world.service.resolve_review({invoice.id(), {false, ""}}).value();
    CHECK(resolved.status() == InvoiceStatus::failed);
    CHECK(world.service.payments_of(invoice.id()).value()[0].status() == PaymentStatus::failed);
    CHECK(world.counter("invoices{status=\"FAILED\"}") == 1);
    CHECK(world.counter("invoices{status=\"NEEDS_REVIEW\"}") == 0);
}

SCENARIO("review 4: a charge of another amount that comes while the invoice is in review says so") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .verification_limit = 1h},
                 .gateway = {.latency_min = 2h, .latency_max = 2h, .search_lag = 10h}});
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_amount_mismatch");
    world.run();
    CHECK(world.counter("invoices_review_required_total{cause=\"unresolved\"}") == 1);
    CHECK(world.counter("invoices_review_required_total{cause=\"amount_mismatch\"}") == 1);
    CHECK(world.counter("invoices_review_required_total{cause=\"contradiction\"}") == 0);
    CHECK(world.invoice(invoice.id()).review_reason().find("charged 10.01 USD") != std::string::npos);
}

SCENARIO("review 5: durations that would overflow a timestamp are refused") {
    CHECK(application::ProcessorOptions{.retry = {}, .settle_window = Duration::max()}.validate().error().code ==
          ErrorCode::invalid_argument);
    CHECK(application::ProcessorOptions{.retry = {}, .gateway_timeout = 2h}.validate().error().code == ErrorCode::invalid_argument);
    CHECK(application::ProcessorOptions{.retry = {}, .verification_limit = Duration::max()}.validate().error().code ==
          ErrorCode::invalid_argument);
    CHECK(application::ProcessorOptions{.retry = {}, .janitor_interval = -1s}.validate().error().code == ErrorCode::invalid_argument);
    CHECK(application::ProcessorOptions{}.validate());
}

SCENARIO("review 6 and 9: the janitor runs from the start, and nothing is charged after stop()") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min}});
    Invoice stalled = world.create();
    commit_without_publishing(world, stalled, "pm_card_ok");
    WHEN("time runs with no other request") {
        world.run();
        THEN("the first janitor round finds it") {
            CHECK(world.invoice(stalled.id()).status() == InvoiceStatus::paid);
            CHECK(world.gateway.calls() == 1);
        }
    }
    WHEN("the processor is stopped first") {
        world.processor->stop();
        world.run();
        THEN("nothing is charged") {
            CHECK(world.gateway.calls() == 0);
            CHECK(world.processor->run_janitor() == 0);
        }
    }
}

SCENARIO("review 7: the verification limit holds whatever the backoff") {
    World world({.processor = {.retry = {.base = 1h, .cap = 24h * 7}, .gateway_timeout = 5s}});
    world.gateway_port.unanswered_lookups = 1'000'000;
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_timeout");
    world.run();
    auto const reviews = world.events_of<InvoiceNeedsReview>();
    REQUIRE(reviews.size() == 1);
    CHECK(reviews[0].envelope.occurred_at - t0() <= 24h + 5s + 5s);
}

SCENARIO("review 10 and 11: an operator's decision is counted, and refused once shutdown began") {
    World world(late_past_the_window(1));
    Invoice invoice = world.create();
    world.pay(invoice, "pm_card_late_answer");
    world.run();
    REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::needs_review);
    double const succeeded = world.counter("payments_succeeded_total");
    WHEN("shutdown began") {
        world.service.stop_accepting();
        THEN("the decision is refused") {
            CHECK(world.service.resolve_review({invoice.id(), {true, "ch_1"}}).error().code == ErrorCode::unavailable);
        }
    }
    WHEN("the operator confirms the charge") {
        REQUIRE(world.service.resolve_review({invoice.id(), {true, "ch_1"}}));
        THEN("the attempt's success is counted") { CHECK(world.counter("payments_succeeded_total") == succeeded + 1); }
    }
}

namespace {

// A store whose page reads fail while `failing` is set (a disk or a database
// that cannot be read for a while); everything else goes to an in-memory one.
// It counts the pages and payments read.
struct UnreadablePages final : application::Store {
    infrastructure::InMemoryStore inner;
    bool failing = false;
    mutable std::size_t reads = 0;

    std::optional<Invoice> invoice(InvoiceId const& id) const override { return inner.invoice(id); }
    application::InvoicePage invoices(application::InvoiceQuery const& query) const override {
        if (failing) throw application::StorageFailure("disk I/O error");
        ++reads;
        return inner.invoices(query);
    }
    std::optional<Payment> payment(PaymentId const& id) const override {
        ++reads;
        return inner.payment(id);
    }
    std::vector<Payment> payments_of(InvoiceId const& id) const override { return inner.payments_of(id); }
    application::OpenAttemptPage open_attempts(std::optional<PaymentId> const& after, std::size_t limit) const override {
        if (failing) throw application::StorageFailure("disk I/O error");
        ++reads;
        return inner.open_attempts(after, limit);
    }
    Result<void> commit(application::Changes changes) override { return inner.commit(std::move(changes)); }
    application::OutboxPage undelivered_page(application::OutboxCursor const& from, std::size_t limit) const override {
        return inner.undelivered_page(from, limit);
    }
    void mark_delivered(EventId const& id) override { inner.mark_delivered(id); }
    application::ScheduledPage scheduled_page(application::ScheduledCursor const& from,
                                              std::size_t limit) const override {
        return inner.scheduled_page(from, limit);
    }
    std::vector<Event> history(InvoiceId const& id) const override { return inner.history(id); }
};

} // namespace

SCENARIO("a janitor round the store cannot read is tried again at the next interval, not dropped for good") {
    UnreadablePages store;
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min}, .store = &store});
    GIVEN("an attempt REQUESTED whose PaymentRequested was lost, and reads that fail") {
        Invoice invoice = world.create();
        std::uint64_t const version = invoice.version();
        auto requested = invoice.request_payment(application::new_attempt(world.ports), "pm_card_ok", meta()).value();
        invoice.apply(requested);
        REQUIRE(store.commit({application::Changes::InvoiceWrite{invoice, version}, {{Payment::from(requested), 0}}}));
        store.failing = true;
        WHEN("the janitor's round comes while the store cannot be read") {
            world.clock.advance(6min);
            world.settle(); // before the fix, the failure left the scheduler (ending an engine's thread)
            THEN("nothing is charged yet") { CHECK(world.gateway.calls() == 0); }
            AND_WHEN("the store can be read again") {
                store.failing = false;
                world.clock.advance(1min);
                world.run();
                THEN("the next round re-drives the attempt: charged once, the invoice PAID") {
                    CHECK(world.gateway.calls() == 1);
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                }
            }
        }
    }
}

// Review 16, B3: every janitor round paged every NEEDS_REVIEW invoice and
// read its attempt, though an operator has them all.
SCENARIO("review16 B3: a janitor's round reads what it can act on, not every invoice an operator has") {
    UnreadablePages store;
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min}, .store = &store});
    GIVEN("a hundred invoices in review over their unknown attempts, and one attempt whose request was lost") {
        for (int i = 0; i < 100; ++i) {
            Invoice invoice = world.create();
            std::uint64_t const version = invoice.version();
            auto requested = invoice.request_payment(application::new_attempt(world.ports), "pm_card_ok", meta()).value();
            invoice.apply(requested);
            Payment payment = Payment::from(requested);
            payment.apply(payment.fail({FailureKind::unknown_outcome, "timeout"}, meta()).value());
            invoice.apply(invoice.require_review(payment.id(), "unknown past the verification limit", meta()).value());
            REQUIRE(store.commit({application::Changes::InvoiceWrite{invoice, version}, {{payment, 0}}}));
        }
        Invoice stalled = world.create();
        std::uint64_t const version = stalled.version();
        auto requested = stalled.request_payment(application::new_attempt(world.ports), "pm_card_ok", meta()).value();
        stalled.apply(requested);
        REQUIRE(store.commit({application::Changes::InvoiceWrite{stalled, version}, {{Payment::from(requested), 0}}}));
        WHEN("a janitor round runs") {
            world.clock.advance(6min);
            store.reads = 0;
            std::size_t const redriven = world.processor->run_janitor();
            THEN("it re-drives the stalled attempt after a read or two, none of the hundred") {
                CHECK(redriven == 1);
                CHECK(store.reads <= 3);
            }
            world.run();
            THEN("the stalled attempt is charged, and the invoices in review stay the operator's") {
                CHECK(world.invoice(stalled.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway.calls() == 1);
            }
        }
    }
}

// Issue 14's review, finding 2: an attempt out when its invoice went into
// review is still owed its answer, whoever started it.
namespace {

// Attempt 1 failed TRANSIENT, attempt 2 was REQUESTED under a key ending in
// `key_suffix`, then a late "charged" for attempt 1 put the invoice in review.
PaymentRequested in_review_with_a_second_attempt(World& world, Invoice& invoice, std::string const& key_suffix) {
    std::uint64_t const version = invoice.version();
    auto first = invoice.request_payment(application::new_attempt(world.ports), "pm_card_ok", meta()).value();
    invoice.apply(first);
    Payment one = Payment::from(first);
    auto failed = one.fail({FailureKind::transient, "provider answered 503"}, meta()).value();
    one.apply(failed);
    PaymentId const second_id = PaymentId::generate(world.random);
    NewAttempt const next{second_id, std::string(second_id.str()) + "." + key_suffix, "a"};
    auto after = invoice.settle_failure(failed, RetryPolicy{.max_attempts = 3}, world.random, next, meta()).value();
    invoice.apply(failed);
    auto second = std::get<PaymentRequested>(after);
    invoice.apply(second);
    invoice.apply(invoice.require_review(one.id(), "the gateway answered charged for attempt 1, recorded as FAILED",
                                         meta())
                      .value());
    REQUIRE(world.store.commit({application::Changes::InvoiceWrite{invoice, version},
                                {{one, 0}, {Payment::from(second), 0}}}));
    REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::needs_review);
    return second;
}

} // namespace

SCENARIO("review14 finding 2: an attempt out when its invoice went into review is looked up and settled") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min}});
    Invoice invoice = world.create();
    GIVEN("attempt 2 sent by an earlier run, which the provider charged") {
        auto const second = in_review_with_a_second_attempt(world, invoice, "earlier-run");
        world.gateway.charge({second.envelope.payment_id, invoice.id(), second.gateway_key, invoice.amount(),
                              "pm_card_ok", {}},
                             [](application::ChargeAnswer) {});
        world.settle();
        WHEN("two janitor intervals pass") {
            world.clock.advance(1min);
            world.settle();
            world.clock.advance(1min);
            world.settle();
            THEN("its key was looked up, never charged again, and attempt 2 is SUCCEEDED") {
                CHECK(world.gateway_port.lookups == 1);
                CHECK(world.gateway_port.charges == 0);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
                CHECK(world.store.payment(second.envelope.payment_id)->status() == PaymentStatus::succeeded);
                AND_THEN("the operator's decision is no longer refused, and the janitor stops") {
                    CHECK(world.service.resolve_review({invoice.id(), {true, "ch_attempt_1"}}).has_value());
                    world.run();
                    CHECK(world.scheduler.pending() == 0);
                }
            }
        }
    }
    GIVEN("attempt 2 sent by an earlier run, of which the provider holds no record") {
        auto const second = in_review_with_a_second_attempt(world, invoice, "earlier-run");
        WHEN("everything has run") {
            world.run();
            THEN("it was verified, never sent, and FAILED after the settle window") {
                CHECK(world.gateway_port.lookups >= 2);
                CHECK(world.gateway_port.charges == 0);
                Payment const settled = world.store.payment(second.envelope.payment_id).value();
                CHECK(settled.status() == PaymentStatus::failed);
                CHECK(world.scheduler.pending() == 0);
            }
        }
    }
    GIVEN("attempt 2 made by this run and never sent") {
        auto const second = in_review_with_a_second_attempt(world, invoice, "test");
        WHEN("everything has run") {
            world.run();
            THEN("it is FAILED unsent, with no look-up, and the operator may decide") {
                CHECK(world.gateway_port.lookups == 0);
                CHECK(world.gateway_port.charges == 0);
                CHECK(world.store.payment(second.envelope.payment_id)->status() == PaymentStatus::failed);
                CHECK(world.service.resolve_review({invoice.id(), {false, ""}}).has_value());
            }
        }
    }
}

// Issue 14's review, finding 5: a provider forgets an idempotency key after a
// day (Stripe prunes them after 24 h), so a key that old must never be sent again.
namespace {

// Charges once per key while it remembers the key (24 h after its first
// charge); after that the same key charges again. Its look-ups answer
// `lookup_answer` ("processing" unless a test says otherwise).
class ForgetfulProvider final : public application::PaymentGateway {
public:
    explicit ForgetfulProvider(application::Clock const& clock) : clock_(clock) {}
    void charge(application::ChargeRequest request, std::function<void(application::ChargeAnswer)> on_answer) override {
        Timestamp const now = clock_.now();
        auto it = first_charged_.find(request.idempotency_key);
        if (it == first_charged_.end() || now - it->second >= 24h) {
            first_charged_[request.idempotency_key] = now;
            ++charges;
        }
        on_answer(application::ChargeAnswer::success("ch_" + request.idempotency_key, request.amount));
    }
    void lookup(std::string, std::function<void(application::ChargeStatus)> on_answer) override {
        on_answer(lookup_answer);
    }
    int charges = 0; ///< money taken, once per remembered key
    application::ChargeStatus lookup_answer = application::ChargeStatus::processing();

private:
    application::Clock const& clock_;
    std::map<std::string, Timestamp> first_charged_;
};

} // namespace

SCENARIO("review14 finding 5: a key older than the provider keeps keys is never sent again") {
    infrastructure::ManualClock clock_of_provider;
    ForgetfulProvider provider(clock_of_provider);
    GIVEN("an attempt an earlier run sent and the provider charged, whose answer was lost, and a long outage") {
        auto const build = [&](Duration outage) {
            auto world = std::make_unique<World>(
                WorldOptions{.processor = {.retry = {.max_attempts = 3}, .gateway_timeout = 5s, .verification_limit = 2h,
                                           .janitor_interval = 1min},
                             .provider_a = &provider});
            Invoice invoice = world->create();
            std::uint64_t const version = invoice.version();
            PaymentId const id = PaymentId::generate(world->random);
            auto requested = invoice
                                 .request_payment({id, std::string(id.str()) + ".earlier-run", "a"}, "pm_card_ok",
                                                  meta(world->clock.now()))
                                 .value();
            invoice.apply(requested);
            REQUIRE(world->store.commit({application::Changes::InvoiceWrite{invoice, version},
                                         {{Payment::from(requested), 0}}}));
            provider.charge({id, invoice.id(), requested.gateway_key, invoice.amount(), "pm_card_ok", {}},
                            [](application::ChargeAnswer) {});
            world->clock.advance(outage);
            clock_of_provider.advance(outage);
            return std::pair{std::move(world), invoice.id()};
        };
        WHEN("the process starts again 25 h later, and the look-up says only \"processing\"") {
            auto [world, invoice] = build(25h);
            world->processor->recover();
            world->run();
            THEN("the key is not sent again: one charge, and the invoice waits for an operator") {
                CHECK(provider.charges == 1);
                CHECK(world->invoice(invoice).status() == InvoiceStatus::needs_review);
                CHECK(world->service.payments_of(invoice).value()[0].status() == PaymentStatus::unknown);
            }
        }
        WHEN("the process starts again 25 h later, and the look-up says \"not found\" (the key is forgotten)") {
            provider.lookup_answer = application::ChargeStatus::not_found();
            auto [world, invoice] = build(25h);
            world->processor->recover();
            world->run();
            THEN("\"not found\" is not taken as \"not charged\": one charge, and an operator decides at once") {
                CHECK(provider.charges == 1);
                CHECK(world->invoice(invoice).status() == InvoiceStatus::needs_review);
                CHECK(world->counter("invoices_review_required_total{cause=\"unresolved\"}") == 1);
                auto const attempts = world->service.payments_of(invoice).value();
                CHECK(attempts.size() == 1);
                CHECK(attempts[0].status() == PaymentStatus::unknown);
                CHECK(world->clock.now() - t0() < 25h + 1h); // at once, not after the verification limit
                CHECK(world->scheduler.pending() == 0);
            }
        }
        WHEN("it starts again 1 h later") {
            auto [world, invoice] = build(1h);
            world->processor->recover();
            world->run();
            THEN("the key is sent again, and the provider answers from its record: one charge, PAID") {
                CHECK(provider.charges == 1);
                CHECK(world->invoice(invoice).status() == InvoiceStatus::paid);
            }
        }
    }
}

SCENARIO("review14 finding 5: the provider's key retention is an option, and checked") {
    CHECK(application::ProcessorOptions{.retry = {}}.provider_key_retention == 23h); // review16 B5: under Stripe's 24 h
    CHECK(application::ProcessorOptions{.retry = {}, .provider_key_retention = 0s}.validate().error().code ==
          ErrorCode::invalid_argument);
}

// Review 16, finding B2: an UNKNOWN answer past the verification limit whose
// invoice is still PROCESSING (no look-up ran: a restart, a lost timer) goes
// before an operator; it is never left PROCESSING for ever.
SCENARIO("review16 B2: an unknown answer past the verification limit on a PROCESSING invoice is escalated") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .verification_limit = 2h, .janitor_interval = 1min}});
    GIVEN("a PROCESSING invoice whose attempt became UNKNOWN at t0, and nothing verifying it") {
        Invoice invoice = world.create();
        auto requested = commit_without_publishing(world, invoice, "pm_card_ok");
        Payment payment = world.store.payment(requested.envelope.payment_id).value();
        Invoice stored = world.invoice(invoice.id());
        auto const versions = std::pair{payment.version(), stored.version()};
        auto unknown = payment.fail({FailureKind::unknown_outcome, "restarted"}, meta()).value();
        payment.apply(unknown);
        stored.apply(unknown);
        REQUIRE(world.store.commit({application::Changes::InvoiceWrite{stored, versions.second},
                                    {{payment, versions.first}}}));
        REQUIRE(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
        WHEN("the process starts again 3 h later") {
            world.clock.advance(3h);
            world.processor->recover();
            // Bounded: before the fix the janitor stayed armed for ever, and run() never returned.
            world.settle();
            for (int round = 0; round < 10 && world.scheduler.advance_to_next(); ++round) world.settle();
            THEN("the invoice is NEEDS_REVIEW, counted once, and nothing is left scheduled") {
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::needs_review);
                CHECK(world.counter("invoices_review_required_total{cause=\"unresolved\"}") == 1);
                CHECK(world.gateway.calls() == 0);
                CHECK(world.scheduler.pending() == 0);
            }
        }
    }
}

// Review 14, finding 12: recovery used to publish PaymentRequested events it
// made up (fresh event ids) on the bus, so every subscriber of the
// application saw requests that were never made. It hands them to the
// processor alone.
SCENARIO("review14 #12: recovery hands attempts to the processor alone, never to the bus's subscribers") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min}});
    GIVEN("two attempts an earlier run left REQUESTED, and a subscriber to PaymentRequested") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 2);
        WHEN("the process starts again and recovers them") {
            CHECK(world.processor->recover() == 2);
            world.run();
            THEN("both are charged once and PAID, and no subscriber saw a PaymentRequested") {
                for (auto const& id : invoices) CHECK(world.invoice(id).status() == InvoiceStatus::paid);
                CHECK(world.gateway.calls() == 2);
                CHECK(world.events_of<PaymentRequested>().empty());
            }
        }
    }
}

// Review 14, finding 9: recovery read every unsettled invoice at once and
// started every attempt it found at once (a look-up each). It reads the
// store a page at a time and drives a bounded number of attempts at once.
SCENARIO("review14 #9: recovery reads in pages and drives a bounded number of attempts at once") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min,
                               .recovery_page = 4, .recovery_in_flight = 3}});
    GIVEN("ten attempts an earlier run left REQUESTED, and a gateway that answers no look-up for now") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 10);
        world.gateway_port.unanswered_lookups = 1000;
        WHEN("the process starts again and recovers them") {
            CHECK(world.processor->recover() == 4); // the first page
            world.settle();
            THEN("only three look-ups are out at once") {
                CHECK(world.gateway_port.lookups == 3);
                CHECK(world.processor->in_flight() == 3);
            }
            AND_WHEN("the look-ups time out one after another and the gateway answers again") {
                world.gateway_port.unanswered_lookups = 0;
                world.run();
                THEN("every attempt is driven in the end: each charged once on its key, every invoice PAID") {
                    for (auto const& id : invoices) CHECK(world.invoice(id).status() == InvoiceStatus::paid);
                    CHECK(world.gateway.calls() == 10);
                    CHECK(world.gateway_port.lookups == 10);
                }
            }
        }
    }
}

// Review 18, B-1: an attempt recovery started gave its place up when its
// look-up was answered, and its charge then went out uncounted: charges out
// grew towards the number of attempts. The place is kept until the attempt
// holds no call.
SCENARIO("review18 B-1: an attempt recovery started keeps its place from its look-up to its charge") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min,
                               .recovery_page = 4, .recovery_in_flight = 3}});
    GIVEN("ten attempts an earlier run left REQUESTED, and a gateway that answers look-ups and no charge") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 10);
        world.gateway_port.mode = TestGateway::Mode::silent;
        WHEN("the process starts again and recovers them, within the gateway timeout") {
            world.processor->recover();
            world.settle();
            THEN("three calls are out, and three charges were sent") {
                CHECK(world.gateway_port.lookups == 3);
                CHECK(world.gateway_port.charges == 3);
                CHECK(world.processor->in_flight() == 3);
            }
            AND_WHEN("the gateway answers again") {
                world.gateway_port.mode = TestGateway::Mode::working;
                world.run();
                THEN("every invoice is PAID in the end, each charged once") {
                    for (auto const& id : invoices) CHECK(world.invoice(id).status() == InvoiceStatus::paid);
                    CHECK(world.gateway_port.lookups >= 10);
                    for (auto const& id : invoices) CHECK(world.gateway.charges_for(id) <= 1);
                    CHECK(world.processor->in_flight() == 0);
                }
            }
        }
    }
}

// Review 18, B-3: recovery runs its attempts off the bus, and caught only
// StorageFailure: an adapter that threw anything else ended the process at
// every start. Whatever a port throws is logged and left to the janitor.
SCENARIO("review18 B-3: a gateway that throws during recovery does not end the process") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min}});
    GIVEN("an attempt an earlier run left REQUESTED, and a gateway whose look-ups throw") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 1);
        world.gateway_port.throwing_lookups = true;
        WHEN("the process starts again and recovers it") {
            CHECK_NOTHROW(world.processor->recover());
            CHECK_NOTHROW(world.settle());
            THEN("the invoice waits, PROCESSING, and nothing was charged") {
                CHECK(world.invoice(invoices[0]).status() == InvoiceStatus::processing);
                CHECK(world.gateway_port.charges == 0);
            }
            AND_WHEN("the gateway works again") {
                world.gateway_port.throwing_lookups = false;
                world.run();
                THEN("the attempt is seen through: PAID, charged once") {
                    CHECK(world.invoice(invoices[0]).status() == InvoiceStatus::paid);
                    CHECK(world.gateway.charges_for(invoices[0]) == 1);
                }
            }
        }
    }
}

// Review 18, B-2: the janitor's first round came while recovery was still
// going, and drove at once every attempt recovery had not started yet. While
// recovery runs, the janitor leaves the store to it.
SCENARIO("review18 B-2: the janitor does not drive what recovery has yet to start") {
    World world({.processor = {.retry = {}, .gateway_timeout = 10min, .janitor_interval = 1min,
                               .recovery_page = 4, .recovery_in_flight = 3}});
    GIVEN("fifty attempts an earlier run left REQUESTED an hour ago, and a gateway that answers no look-up") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 50);
        world.clock.advance(1h);
        world.gateway_port.unanswered_lookups = 1000;
        WHEN("the process recovers them and a janitor round comes a minute later") {
            world.processor->recover();
            world.settle();
            world.clock.advance(61s);
            world.scheduler.run_due();
            world.settle();
            THEN("still only three calls are out") {
                CHECK(world.gateway_port.lookups == 3);
                CHECK(world.processor->in_flight() == 3);
            }
        }
    }
    GIVEN("twenty answers an earlier run left UNKNOWN, and a gateway that answers no look-up") {
        for (int i = 0; i < 20; ++i) {
            Invoice invoice = world.create();
            auto requested = commit_without_publishing(world, invoice, "pm_card_ok");
            Payment payment = world.store.payment(requested.envelope.payment_id).value();
            Invoice stored = world.invoice(invoice.id());
            auto const versions = std::pair{payment.version(), stored.version()};
            auto unknown = payment.fail({FailureKind::unknown_outcome, "restarted"}, meta()).value();
            payment.apply(unknown);
            stored.apply(unknown);
            REQUIRE(world.store.commit({application::Changes::InvoiceWrite{stored, versions.second},
                                        {{payment, versions.first}}}));
        }
        world.gateway_port.unanswered_lookups = 1000;
        WHEN("the process recovers them and a janitor round comes a minute later") {
            world.processor->recover();
            world.settle();
            world.clock.advance(61s);
            world.scheduler.run_due();
            world.settle();
            THEN("still only three look-ups are out: the janitor verified none of the others") {
                CHECK(world.gateway_port.lookups == 3);
                CHECK(world.processor->in_flight() == 3);
            }
        }
    }
}

// Review 18, B-4: at start the outbox publishes again every PaymentRequested
// an earlier run did not deliver, and each started a look-up at once,
// uncounted. An attempt of another run that comes from the bus waits in
// recovery's queue, within the same bound.
SCENARIO("review18 B-4: requests of an earlier run published again at start are driven within the recovery bound") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min,
                               .recovery_page = 4, .recovery_in_flight = 3}});
    GIVEN("ten attempts an earlier run left REQUESTED, their requests undelivered in the outbox") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 10, true);
        world.gateway_port.unanswered_lookups = 1000;
        WHEN("the process starts again: the outbox publishes them, and recovery runs") {
            application::OutboxRelay relay(world.store, world.bus);
            CHECK(relay.restart().republished == 20); // with the ten InvoiceCreated no relay marked delivered
            world.processor->recover();
            world.settle();
            THEN("only three look-ups are out") {
                CHECK(world.gateway_port.lookups == 3);
                CHECK(world.processor->in_flight() == 3);
            }
            AND_WHEN("the look-ups time out and the gateway answers again") {
                world.gateway_port.unanswered_lookups = 0;
                world.run();
                THEN("every invoice is PAID, each charged once") {
                    for (auto const& id : invoices) CHECK(world.invoice(id).status() == InvoiceStatus::paid);
                    CHECK(world.gateway.calls() == 10);
                }
            }
        }
    }
}

// Review 21, F3: an attempt of an earlier run that came from the bus went
// onto recovery's queue whatever it held, and recover()'s scan queued the
// same attempts again: the queue grew to everything an earlier run left.
SCENARIO("review21 F3: recovery's queue holds each attempt once, and a bounded number of them") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min,
                               .recovery_page = 4, .recovery_in_flight = 3}});
    GIVEN("a hundred attempts an earlier run left REQUESTED, their requests undelivered in the outbox") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 100, true);
        world.gateway_port.unanswered_lookups = 1000;
        WHEN("the process starts again: the outbox publishes them, and recovery runs") {
            application::OutboxRelay relay(world.store, world.bus);
            relay.restart();
            world.processor->recover();
            world.settle();
            THEN("three look-ups are out, and the queue holds at most a page from the bus and a page from the store") {
                CHECK(world.processor->in_flight() == 3);
                CHECK(world.processor->recovery_queued() <= 2 * 4);
            }
            AND_WHEN("the look-ups time out and the gateway answers again") {
                world.gateway_port.unanswered_lookups = 0;
                world.run();
                THEN("every attempt dropped from the queue was found again: each invoice PAID, charged once") {
                    for (auto const& id : invoices) CHECK(world.invoice(id).status() == InvoiceStatus::paid);
                    CHECK(world.gateway.calls() == 100);
                    CHECK(world.processor->recovery_queued() == 0);
                }
            }
        }
    }
}

// Review 22 G5: the copy kept was the first, with its flag: a copy from the
// bus (to send) kept while the scan's copy (to verify) was dropped.
SCENARIO("review22 G5: an attempt queued for recovery that another process times out meanwhile is verified in its turn") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1h,
                               .recovery_page = 4, .recovery_in_flight = 1}});
    GIVEN("two attempts an earlier run left REQUESTED, their requests delivered before recovery's scan: one driven, "
          "its look-up unanswered, the other queued to be sent") {
        std::vector<InvoiceId> const invoices = left_by_an_earlier_run(world, 2, true);
        world.gateway_port.unanswered_lookups = 1;
        for (auto const& event : world.store.undelivered())
            if (std::holds_alternative<PaymentRequested>(event)) world.bus.publish(event);
        world.settle();
        REQUIRE(world.gateway_port.lookups == 1);
        REQUIRE(world.processor->recovery_queued() == 1);
        WHEN("another process times the queued one out to UNKNOWN, recovery's scan finds it so, and its turn comes") {
            PaymentId const waiting = world.invoice(invoices[1]).attempts().back();
            Payment payment = *world.store.payment(waiting);
            std::uint64_t const version = payment.version();
            payment.apply(payment.fail({FailureKind::unknown_outcome, "timed out by another process"},
                                       meta(world.clock.now())).value());
            REQUIRE(world.store.commit({std::nullopt, {{payment, version}}}));
            world.processor->recover();
            world.settle();
            world.clock.advance(5s); // the first's look-up times out; it is sent, answered, and its place freed
            world.settle();
            THEN("the queued one is looked up in its turn, before any janitor round") {
                CHECK(world.gateway_port.lookups == 2);
            }
        }
    }
}

SCENARIO("review21 F3: an attempt delivered again while it waits in recovery's queue is queued once") {
    World world({.processor = {.retry = {}, .gateway_timeout = 5s, .janitor_interval = 1min,
                               .recovery_page = 4, .recovery_in_flight = 1}});
    GIVEN("three attempts an earlier run left REQUESTED, their requests in the outbox, and no look-up answered") {
        left_by_an_earlier_run(world, 3, true);
        world.gateway_port.unanswered_lookups = 1000;
        auto publish_requests = [&] {
            for (auto const& event : world.store.undelivered())
                if (std::holds_alternative<PaymentRequested>(event)) world.bus.publish(event);
            world.settle();
        };
        WHEN("recovery finds them, then the bus delivers their requests twice") {
            world.processor->recover();
            world.settle();
            publish_requests();
            publish_requests();
            THEN("one is driven, and the other two wait once each") {
                CHECK(world.processor->in_flight() == 1);
                CHECK(world.processor->recovery_queued() == 2);
            }
        }
        WHEN("the bus delivers their requests first, then recovery's scan finds them") {
            publish_requests();
            world.processor->recover();
            world.settle();
            THEN("one is driven, and the other two wait once each") {
                CHECK(world.processor->in_flight() == 1);
                CHECK(world.processor->recovery_queued() == 2);
            }
        }
    }
}
