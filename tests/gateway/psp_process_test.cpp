// The payments-psp binary itself: started as users start it, killed and
// restarted on the same ledger; psp_charges_total survives.

#include "gateway/processes.hpp"
#include "gateway/psp_fixture.hpp"

using namespace test;

namespace {

std::string get_metrics(std::uint16_t port) { return http_call(port, boost::beast::http::verb::get, "/metrics").body; }

} // namespace

SCENARIO("the payments-psp binary keeps its ledger across a kill and a restart") {
    TempDir dir;
    IoThreads io;
    std::string reference;
    GIVEN("a provider process that booked two charges and declined one") {
        {
            PspProcess psp(dir.file("ledger.db"));
            auto gateway = a_gateway(io, options_for(psp.url()));
            reference = charge(*gateway, a_charge("k_p1", "pm_card_ok", "inv_p1", 1000)).reference;
            CHECK(kind_of(charge(*gateway, a_charge("k_p2", "pm_card_ok", "inv_p2", 250))) == "CHARGED");
            CHECK(kind_of(charge(*gateway, a_charge("k_p3", "pm_card_declined"))) == "DECLINED");
            CHECK(get_metrics(psp.port).find("psp_charges_total 2\n") != std::string::npos);
            psp.kill();
        }
        WHEN("it is killed and started again on the same ledger") {
            PspProcess psp(dir.file("ledger.db"));
            auto gateway = a_gateway(io, options_for(psp.url()));
            THEN("the counters are the same, and a key sent again is answered from the ledger, not booked twice") {
                std::string const metrics = get_metrics(psp.port);
                CHECK(metrics.find("psp_charges_total 2\n") != std::string::npos);
                CHECK(metrics.find("psp_charge_amount_total{currency=\"usd\"} 1250\n") != std::string::npos);
                CHECK(charge(*gateway, a_charge("k_p1", "pm_card_ok", "inv_p1", 1000)).reference == reference);
                CHECK(get_metrics(psp.port).find("psp_charges_total 2\n") != std::string::npos);
            }
        }
    }
}
