// A burst of payments larger than the HTTP gateway's own limit of calls in
// flight, through a real HttpGateway to the provider simulator: the charges
// refused unsent at the limit wait for room and go out again; none opens the
// circuit, fails an attempt or uses a retry, and each invoice is charged once.

#include "gateway/psp_fixture.hpp"

#include <payments/engine.hpp>

using namespace test;

namespace {

// A counter's value in a rendered registry; 0 when it is not shown.
double counted(std::string const& text, std::string const& line) {
    auto pos = text.find("\n" + line + " ");
    return pos == std::string::npos ? 0 : std::stod(text.substr(pos + line.size() + 2));
}

} // namespace

SCENARIO("a burst larger than the HTTP gateway's in-flight limit: every invoice is paid once, nothing fails") {
    GIVEN("payments-psp answering each charge after 5 ms, and an HttpGateway that takes 4 calls in flight") {
        TempDir dir;
        psp::FaultOptions faults;
        faults.latency_min = faults.latency_max = std::chrono::milliseconds(5);
        Psp provider(dir.file("psp.db"), faults);
        provider.start();
        IoThreads io(1);
        auto options = options_for(provider.url());
        options.max_in_flight = 4;
        auto gateway = a_gateway(io, options);

        EngineOptions engine_options;
        engine_options.log_output = nullptr;
        engine_options.threads = 2;
        engine_options.seed = 13;
        // The default circuit (10 calls, 60 % failures, 30 s open). A timer
        // that would send one waiting attempt a minute leaves the room made by
        // answers as the only way to finish in time.
        engine_options.processor.over_limit_wait = std::chrono::minutes(1);
        auto engine = Engine::builder(engine_options).gateway("psp", gateway).build().value();
        gateway->register_metrics(engine->metrics(), "psp");

        WHEN("64 invoices are paid at once") {
            constexpr int burst = 64;
            std::vector<InvoiceId> invoices;
            for (int i = 0; i < burst; ++i)
                invoices.push_back(engine->service().create_invoice({.amount = usd(1000 + i)}).value().id());
            for (auto const& id : invoices)
                REQUIRE(engine->service().request_payment({.invoice_id = id, .payment_method = "pm_card_ok"}).result);
            bool const settled = engine->wait_settled(std::chrono::seconds(20));

            THEN("the limit refused charges, and yet each invoice is PAID by its one attempt, charged once") {
                REQUIRE(settled);
                std::string const metrics = engine->metrics().render();
                CHECK(counted(metrics, R"(payment_gateway_http_calls_total{gateway="psp",call="charge",outcome="over_limit"})") > 0);
                for (auto const& id : invoices) {
                    CAPTURE(id);
                    CHECK(engine->service().invoice(id).value().status() == InvoiceStatus::paid);
                    auto const attempts = engine->service().payments_of(id).value();
                    REQUIRE(attempts.size() == 1);
                    CHECK(attempts[0].status() == PaymentStatus::succeeded);
                }
                CHECK(provider.charges_total() == burst);
                CHECK(counted(metrics, R"(payments_failed_total{kind="TRANSIENT"})") == 0);
                CHECK(counted(metrics, "payment_retries_scheduled_total") == 0);
                CHECK(counted(metrics, "payments_succeeded_total") == burst);
            }
            THEN("the circuit never opened") {
                REQUIRE(settled);
                CHECK(engine->gateway_health()[0].state == application::CircuitState::closed);
                CHECK(counted(engine->metrics().render(),
                              R"(payment_gateway_circuit_transitions_total{gateway="psp",to="open"})") == 0);
            }
        }
        engine->shutdown(std::chrono::seconds(5));
    }
}
