#include "support/builders.hpp"
#include "support/temp_dir.hpp"

#include <payments/infrastructure/bus/manual_scheduler.hpp>
#include <payments/infrastructure/gateway/simulated_gateway.hpp>

#include <fstream>
#include <optional>

using namespace test;
using application::ChargeAnswer;
using application::ChargeRequest;

namespace {

struct GatewayFixture {
    explicit GatewayFixture(infrastructure::SimulatedGatewayOptions options = {}) : gateway(scheduler, clock, options) {}

    std::optional<ChargeAnswer> charge(std::string const& method, std::string const& key,
                                        std::string const& invoice = "inv_1") {
        std::optional<ChargeAnswer> answer;
        gateway.charge(ChargeRequest{pid(1), iid(invoice), key, usd(100), method, {}},
                       [&](ChargeAnswer o) { answer = std::move(o); });
        CHECK_FALSE(answer); // never answered inside charge()
        while (scheduler.advance_to_next()) {
        }
        return answer;
    }

    infrastructure::ManualClock clock;
    infrastructure::ManualScheduler scheduler{clock};
    infrastructure::SimulatedGateway gateway;
};

} // namespace

TEST_CASE("test payment methods give their documented outcomes") {
    GatewayFixture f;
    CHECK(f.charge("pm_card_ok", "k1")->succeeded());
    CHECK(f.charge("pm_card_declined", "k2")->failure->kind == FailureKind::declined);
    CHECK(f.charge("pm_card_unavailable", "k3")->failure->kind == FailureKind::transient);
    CHECK_FALSE(f.charge("pm_card_timeout", "k4"));
    CHECK(f.charge("pm_card_bogus", "k5")->failure->reason == "unknown payment method");
    CHECK(f.gateway.ledger().size() == 1);
}

TEST_CASE("pm_card_flaky_N fails N times for an invoice, then charges") {
    GatewayFixture f;
    CHECK(f.charge("pm_card_flaky_2", "a", "inv_f")->failure->kind == FailureKind::transient);
    CHECK(f.charge("pm_card_flaky_2", "b", "inv_f")->failure->kind == FailureKind::transient);
    CHECK(f.charge("pm_card_flaky_2", "c", "inv_f")->succeeded());
    CHECK(f.charge("pm_card_flaky_2", "d", "inv_g")->failure->kind == FailureKind::transient);
    CHECK(f.charge("pm_card_flaky_0", "e")->failure->reason == "unknown payment method");
}

TEST_CASE("a repeated key is answered as before and never charged twice") {
    GatewayFixture f;
    auto first = f.charge("pm_card_ok", "same");
    auto second = f.charge("pm_card_ok", "same");
    CHECK(first->reference == second->reference);
    CHECK(f.gateway.charges_for(iid("inv_1")) == 1);
    CHECK_FALSE(f.charge("pm_card_lost_response", "lost")); // charged, answer lost
    auto found = f.charge("pm_card_lost_response", "lost");
    REQUIRE(found);
    CHECK(found->succeeded());
    CHECK(f.gateway.ledger().size() == 2);
    CHECK(f.gateway.calls() == 4);
}

TEST_CASE("configured rates and latency are reproducible from the seed") {
    infrastructure::SimulatedGatewayOptions const options{.decline_rate = 0.2, .transient_rate = 0.2,
                                                          .timeout_rate = 0.1, .latency_min = 10ms,
                                                          .latency_max = 50ms, .seed = 5};
    auto run = [&] {
        GatewayFixture f(options);
        std::string trace;
        for (int i = 0; i < 200; ++i) {
            auto answer = f.charge("", "k" + std::to_string(i));
            trace += !answer ? 'T' : answer->succeeded() ? 'S' : answer->failure->kind == FailureKind::declined ? 'D' : 'R';
        }
        return std::pair{trace, f.clock.now()};
    };
    auto [a, a_end] = run();
    auto [b, b_end] = run();
    CHECK(a == b);
    CHECK(a_end == b_end);
    for (char kind : std::string("SDRT")) {
        CAPTURE(kind);
        CHECK(a.find(kind) != std::string::npos);
    }
    CHECK(a_end - t0() >= 200 * 10ms * 9 / 10); // answers waited their latency
}

SCENARIO("a simulated gateway started again on its ledger file answers the keys it charged from it") {
    TempDir dir;
    std::string const path = dir.file("ledger");
    GIVEN("a gateway that charged two keys into its ledger, then a line cut short by a crash") {
        std::string first_reference;
        {
            infrastructure::ManualClock clock;
            infrastructure::ManualScheduler scheduler{clock};
            infrastructure::SimulatedGateway gateway(scheduler, clock, {}, path);
            gateway.charge(ChargeRequest{pid(1), iid("inv_1"), "key-1", usd(100), "pm_card_ok", {}},
                           [&](ChargeAnswer a) { first_reference = a.reference; });
            gateway.charge(ChargeRequest{pid(2), iid("inv_2"), "key-2", usd(250), "pm_card_ok", {}}, [](ChargeAnswer) {});
            while (scheduler.advance_to_next()) {
            }
        }
        REQUIRE_FALSE(first_reference.empty());
        {
            std::ofstream out(path, std::ios::app);
            out << "key-3\tinv_3\tpay_"; // no newline, fields missing: never fsynced whole
        }
        WHEN("a gateway starts on the same file") {
            infrastructure::ManualClock clock;
            infrastructure::ManualScheduler scheduler{clock};
            infrastructure::SimulatedGateway gateway(scheduler, clock, {}, path);
            THEN("it holds the two whole charges, as they were booked, and answers a charged key the same way") {
                auto const ledger = gateway.ledger();
                REQUIRE(ledger.size() == 2);
                CHECK(ledger[0].idempotency_key == "key-1");
                CHECK(ledger[0].invoice_id == iid("inv_1"));
                CHECK(ledger[0].payment_id == pid(1));
                CHECK(ledger[0].amount == usd(100));
                CHECK(ledger[0].reference == first_reference);
                CHECK(ledger[1].amount == usd(250));
                std::optional<ChargeAnswer> again;
                gateway.charge(ChargeRequest{pid(1), iid("inv_1"), "key-1", usd(100), "pm_card_ok", {}},
                               [&](ChargeAnswer a) { again = std::move(a); });
                while (scheduler.advance_to_next()) {
                }
                REQUIRE(again);
                CHECK(again->reference == first_reference);
                CHECK(gateway.charges_for(iid("inv_1")) == 1);
            }
            AND_WHEN("it charges a third key and starts again") {
                gateway.charge(ChargeRequest{pid(3), iid("inv_3"), "key-3", usd(300), "pm_card_ok", {}}, [](ChargeAnswer) {});
                while (scheduler.advance_to_next()) {
                }
                infrastructure::SimulatedGateway reopened(scheduler, clock, {}, path);
                THEN("the third charge is on its own line, after the part cut off") {
                    auto const ledger = reopened.ledger();
                    REQUIRE(ledger.size() == 3);
                    CHECK(ledger[2].idempotency_key == "key-3");
                    CHECK(ledger[2].amount == usd(300));
                }
            }
        }
    }
}
