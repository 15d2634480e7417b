// Two gateways in order of preference, each with its circuit breaker: new
// attempts move to the second when the first fails, and an unresolved key
// holds its invoice at the gateway that has it.
#include "support/world.hpp"

using namespace test;
using Mode = TestGateway::Mode;
using application::CircuitState;

namespace {

// A circuit that opens after 4 calls of which half failed, and stays open 30 s.
WorldOptions two_gateways() {
    WorldOptions options;
    options.two_gateways = true;
    options.breaker = {.window = 4, .minimum_calls = 4, .failure_ratio = 0.5, .open_for = 30s, .half_open_probes = 1};
    return options;
}

double metric(World const& world, std::string const& line) {
    std::string const text = world.registry.render();
    auto pos = text.find("\n" + line + " ");
    return pos == std::string::npos ? -1 : std::stod(text.substr(pos + line.size() + 2));
}

} // namespace

SCENARIO("two gateways, the first failing: once its circuit opens, new attempts go to the second") {
    GIVEN("gateway a answering every charge with a 503, gateway b working") {
        World world(two_gateways());
        world.gateway_port.mode = Mode::failing;
        std::vector<Invoice> invoices;
        for (int i = 0; i < 6; ++i) invoices.push_back(world.create(usd(100 + i)));
        WHEN("six invoices are paid") {
            for (auto const& invoice : invoices) world.pay(invoice, "pm_card_ok");
            world.run();
            THEN("every invoice is paid once, at b; a charged nothing and its circuit opened once") {
                for (auto const& invoice : invoices) {
                    CAPTURE(invoice.id());
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                    CHECK(world.gateway_b.charges_for(invoice.id()) == 1);
                    CHECK(world.gateway.charges_for(invoice.id()) == 0);
                    auto const attempts = world.service.payments_of(invoice.id()).value();
                    CHECK(attempts.back().gateway() == "b"); // the attempt records who took it
                    CHECK(attempts.back().status() == PaymentStatus::succeeded);
                }
                // The circuit opened at a's 4th failure: a sees at most the attempts
                // requested before then, each sent once; the rest never left.
                CHECK(world.gateway_port.charges == 4);
                CHECK(metric(world, "payment_gateway_circuit_transitions_total{gateway=\"a\",to=\"open\"}") == 1);
                CHECK(metric(world, "payment_gateway_circuit_state{gateway=\"a\"}") == 1);
                CHECK(metric(world, "payment_gateway_circuit_state{gateway=\"b\"}") == 0);
            }
        }
    }
}

SCENARIO("an unresolved attempt at the first gateway is looked up there and never retried elsewhere until resolved") {
    GIVEN("gateway a that takes the charge but loses its answer, and whose circuit then opens") {
        WorldOptions options = two_gateways();
        options.breaker.window = options.breaker.minimum_calls = 1; // one timeout opens it
        options.processor.settle_window = 10min;
        World world(options);
        Invoice invoice = world.create();
        world.gateway_port.unanswered_lookups = 1; // the first look-up goes unanswered
        WHEN("the invoice is paid") {
            world.pay(invoice, "pm_card_lost_response");
            world.settle();
            world.clock.advance(options.processor.gateway_timeout);
            world.settle();
            THEN("the attempt is UNKNOWN at a, a's circuit is open, and b has seen nothing") {
                auto const attempts = world.service.payments_of(invoice.id()).value();
                REQUIRE(attempts.size() == 1);
                CHECK(attempts[0].gateway() == "a");
                CHECK(attempts[0].status() == PaymentStatus::unknown);
                CHECK(world.gateways.find("a")->breaker.state(world.clock.now()) == CircuitState::open);
                CHECK(world.gateway_b_port.charges == 0);
            }
            AND_WHEN("time runs on") {
                world.run();
                THEN("a's look-up finds the charge and pays the invoice; b is never asked or charged") {
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                    CHECK(world.gateway_port.lookups >= 2);
                    CHECK(world.gateway_b_port.lookups == 0);
                    CHECK(world.gateway_b_port.charges == 0);
                    CHECK(world.gateway.charges_for(invoice.id()) == 1);
                    CHECK(world.service.payments_of(invoice.id()).value().size() == 1);
                }
            }
        }
    }
    GIVEN("gateway a that never answers, and whose circuit opens on the first timeout") {
        WorldOptions options = two_gateways();
        options.breaker.window = options.breaker.minimum_calls = 1;
        options.breaker.open_for = 1h;
        options.processor.settle_window = 5min;
        World world(options);
        world.gateway_port.mode = Mode::silent;
        Invoice invoice = world.create();
        WHEN("the invoice is paid and time runs on") {
            world.pay(invoice, "pm_card_ok");
            world.run();
            THEN("the next attempt goes to b only after a's key was settled as not charged, past the settle window") {
                auto const attempts = world.service.payments_of(invoice.id()).value();
                REQUIRE(attempts.size() == 2);
                CHECK(attempts[0].gateway() == "a");
                CHECK(attempts[0].status() == PaymentStatus::failed);
                CHECK(attempts[1].gateway() == "b");
                CHECK(attempts[1].created_at() >= *attempts[0].unknown_since() + options.processor.settle_window);
                CHECK(world.gateway_port.lookups >= 1);
                CHECK(world.gateway_b_port.lookups == 0);
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway_b.charges_for(invoice.id()) == 1);
            }
        }
    }
}

SCENARIO("when both circuits are open, attempts wait for a circuit to let them through, and are never spun") {
    GIVEN("two gateways both answering 503, whose circuits open after 4 calls") {
        World world(two_gateways());
        world.gateway_port.mode = Mode::failing;
        world.gateway_b_port.mode = Mode::failing;
        std::vector<Invoice> invoices;
        for (int i = 0; i < 8; ++i) invoices.push_back(world.create(usd(100 + i)));
        WHEN("eight invoices are paid and two simulated minutes pass") {
            for (auto const& invoice : invoices) world.pay(invoice, "pm_card_ok");
            world.settle();
            Timestamp const end = world.clock.now() + 2min;
            std::size_t steps = 0;
            while (world.scheduler.advance_to_next() && world.clock.now() < end) {
                world.settle();
                ++steps;
            }
            THEN("both circuits are open or probing, attempts were held back, and each gateway saw few calls") {
                CHECK(metric(world, "payment_gateway_circuit_transitions_total{gateway=\"a\",to=\"open\"}") >= 1);
                CHECK(metric(world, "payment_gateway_circuit_transitions_total{gateway=\"b\",to=\"open\"}") >= 1);
                CHECK(metric(world, "payment_gateway_deferred_total{gateway=\"a\"}") +
                          metric(world, "payment_gateway_deferred_total{gateway=\"b\"}") >= 1);
                // 4 calls each to open, then one probe per 30 s open time: in 2
                // minutes at most 4 + 4 probes each. A spin would send hundreds.
                CHECK(world.gateway_port.charges <= 8);
                CHECK(world.gateway_b_port.charges <= 8);
                CHECK(steps < 500);
            }
        }
    }
}

SCENARIO("a half-open probe that succeeds closes the circuit, and the first gateway takes attempts again") {
    GIVEN("gateway a whose circuit opened, and which has recovered") {
        World world(two_gateways());
        world.gateway_port.mode = Mode::failing;
        for (int i = 0; i < 4; ++i) world.pay(world.create(usd(100 + i)), "pm_card_ok");
        world.settle();
        REQUIRE(world.gateways.find("a")->breaker.state(world.clock.now()) == CircuitState::open);
        world.run();
        world.gateway_port.mode = Mode::working;
        WHEN("the open time has passed and a new invoice is paid") {
            world.clock.advance(30s);
            Invoice invoice = world.create(usd(999));
            world.pay(invoice, "pm_card_ok");
            world.run();
            THEN("the attempt went to a as the probe, and a's circuit is closed") {
                auto const attempts = world.service.payments_of(invoice.id()).value();
                REQUIRE(attempts.size() == 1);
                CHECK(attempts[0].gateway() == "a");
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                CHECK(world.gateway.charges_for(invoice.id()) == 1);
                CHECK(world.gateways.find("a")->breaker.state(world.clock.now()) == CircuitState::closed);
                CHECK(metric(world, "payment_gateway_circuit_state{gateway=\"a\"}") == 0);
                CHECK(metric(world, "payment_gateway_circuit_transitions_total{gateway=\"a\",to=\"half_open\"}") == 1);
                CHECK(metric(world, "payment_gateway_circuit_transitions_total{gateway=\"a\",to=\"closed\"}") == 1);
            }
        }
    }
}

TEST_CASE("the failover rule: a new attempt may leave the gateway of the last one only once its key is resolved") {
    World world;
    Invoice invoice = world.create();
    Payment requested = world.pay(invoice, "pm_card_ok");
    CHECK_FALSE(application::may_move_to_another_gateway(requested)); // REQUESTED: it may be out
    auto unknown = requested;
    unknown.apply(requested.fail({FailureKind::unknown_outcome, "timeout"}, meta()).value());
    CHECK_FALSE(application::may_move_to_another_gateway(unknown));
    auto failed = requested;
    failed.apply(requested.fail({FailureKind::transient, "503"}, meta()).value());
    CHECK(application::may_move_to_another_gateway(failed));
    auto charged = requested;
    charged.apply(requested.succeed("ch_1", usd(1000), meta()).value());
    CHECK(application::may_move_to_another_gateway(charged));
}

SCENARIO("an attempt whose key an earlier run made waits for its own gateway, even when another is usable") {
    GIVEN("gateway a with its circuit open, b working, and an attempt at a committed by an earlier process run") {
        World world(two_gateways());
        world.gateway_port.mode = Mode::failing;
        for (int i = 0; i < 4; ++i) world.pay(world.create(usd(100 + i)), "pm_card_ok");
        world.settle();
        REQUIRE(world.gateways.find("a")->breaker.state(world.clock.now()) == CircuitState::open);
        Invoice invoice = world.create(usd(777));
        std::uint64_t const version = invoice.version();
        NewAttempt attempt = application::new_attempt(world.ports);
        attempt.gateway_key = std::string(attempt.id.str()) + ".an-earlier-run"; // that run may have sent it
        attempt.gateway = "a";
        auto requested = invoice.request_payment(attempt, "pm_card_ok", meta()).value();
        invoice.apply(requested);
        REQUIRE(world.store.commit({application::Changes::InvoiceWrite{invoice, version}, {{Payment::from(requested), 0}}}));
        WHEN("its request is delivered while a's circuit is open") {
            world.gateway_port.mode = Mode::working; // a recovers, but its circuit does not know yet
            world.bus.publish(requested);
            world.settle();
            THEN("it is deferred, not failed and moved to b") {
                auto const attempts = world.service.payments_of(invoice.id()).value();
                REQUIRE(attempts.size() == 1);
                CHECK(attempts[0].status() == PaymentStatus::requested);
                CHECK(world.gateway_b.charges_for(invoice.id()) == 0);
            }
            AND_WHEN("the circuit half-opens") {
                world.run();
                THEN("it is charged at a, under its own key, once") {
                    auto const attempts = world.service.payments_of(invoice.id()).value();
                    REQUIRE(attempts.size() == 1);
                    CHECK(attempts[0].status() == PaymentStatus::succeeded);
                    CHECK(world.gateway.charges_for(invoice.id()) == 1);
                    CHECK(world.gateway_b.charges_for(invoice.id()) == 0);
                }
            }
        }
    }
}
