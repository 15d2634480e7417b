// A charge the adapter refuses at its own limit (calls in flight), before
// anything is sent, is neither the provider failing nor a failed attempt: the
// circuit does not count it, and the attempt waits for room and goes out
// again, same key, using no retry.
#include "support/world.hpp"

using namespace test;
using application::CircuitState;

namespace {

// A circuit that would open after 4 calls of which half failed.
WorldOptions small_circuit() {
    WorldOptions options;
    options.breaker = {.window = 4, .minimum_calls = 4, .failure_ratio = 0.5, .open_for = 30s, .half_open_probes = 1};
    return options;
}

// A counter's value; 0 when it is not shown.
double counted(World const& world, std::string const& line) {
    std::string const text = world.registry.render();
    auto pos = text.find("\n" + line + " ");
    return pos == std::string::npos ? 0 : std::stod(text.substr(pos + line.size() + 2));
}

} // namespace

SCENARIO("charges refused by the adapter's own limit neither open the circuit nor fail the attempt") {
    GIVEN("a gateway whose adapter refuses the next 6 charges unsent, more than the circuit's window") {
        WorldOptions const options = small_circuit();
        World world(options);
        world.gateway_port.refuse_over_limit = 6;
        Invoice invoice = world.create();
        WHEN("the invoice is paid and the adapter refuses the first charge") {
            world.pay(invoice, "pm_card_ok");
            world.settle();
            THEN("the attempt waits, neither failed nor retried, and the circuit counted nothing") {
                CHECK(world.gateway_port.charges == 1);
                auto const attempts = world.service.payments_of(invoice.id()).value();
                REQUIRE(attempts.size() == 1);
                CHECK(attempts[0].status() == PaymentStatus::requested);
                CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::processing);
                CHECK(world.gateways.find("a")->breaker.state(world.clock.now()) == CircuitState::closed);
            }
            AND_WHEN("time moves on by the over-limit wait, and its jitter, six times") {
                for (int i = 0; i < 6; ++i) {
                    world.clock.advance(2 * options.processor.over_limit_wait);
                    world.settle();
                }
                THEN("the same attempt is sent again each time, once, and is charged at the seventh") {
                    CHECK(world.gateway_port.charges == 7); // one per wait: never spun
                    CHECK(world.invoice(invoice.id()).status() == InvoiceStatus::paid);
                    auto const attempts = world.service.payments_of(invoice.id()).value();
                    REQUIRE(attempts.size() == 1); // no retry used
                    CHECK(attempts[0].status() == PaymentStatus::succeeded);
                    CHECK(world.gateway.charges_for(invoice.id()) == 1);
                    CHECK(world.gateways.find("a")->breaker.state(world.clock.now()) == CircuitState::closed);
                    CHECK(counted(world, "payment_gateway_circuit_transitions_total{gateway=\"a\",to=\"open\"}") == 0);
                    CHECK(counted(world, "payments_failed_total{kind=\"TRANSIENT\"}") == 0);
                    CHECK(counted(world, "payment_retries_scheduled_total") == 0);
                    CHECK(counted(world, "payments_succeeded_total") == 1);
                }
            }
        }
    }
}

TEST_CASE("the over-limit wait is checked") {
    application::ProcessorOptions options;
    CHECK(options.validate());
    options.over_limit_wait = 0ms;
    CHECK_FALSE(options.validate());
    options.over_limit_wait = 2min;
    CHECK_FALSE(options.validate());
}
