// The example server with `--gateway http://...`: invoices paid end to end
// through HttpGateway and the provider simulator, over real sockets.
#include "test_server.hpp"

#include "gateway/psp_fixture.hpp"

using namespace http_test;

namespace {

std::variant<Options, Exit> parse(std::vector<char const*> args) {
    args.insert(args.begin(), "payments-server");
    return parse_options(static_cast<int>(args.size()), args.data());
}

} // namespace

SCENARIO("the server pays invoices through a provider over HTTP") {
    test::TempDir dir;
    test::Psp psp(dir.file("ledger.db"));
    psp.start();
    Options options = std::get<Options>(parse({"--gateway", "simulated"}));
    options.gateways = {psp.url()};
    options.gateway_key = "sk_test_server";
    TestServer s(options);
    GIVEN("an invoice paid with a good card and one with an issuer that fails twice") {
        auto const ok = s.create(1500);
        auto const flaky = s.create(700);
        CHECK(s.call(http::verb::post, "/invoices/" + ok + "/pay", R"({"payment_method":"pm_card_ok"})").result() ==
              http::status::accepted);
        CHECK(s.call(http::verb::post, "/invoices/" + flaky + "/pay", R"({"payment_method":"pm_card_flaky_2"})")
                  .result() == http::status::accepted);
        REQUIRE(s.wait_settled(2));
        THEN("both are PAID, the flaky one at its third attempt, and the provider booked each once") {
            CHECK(body_of(s.call(http::verb::get, "/invoices/" + ok)).at("status").as_string() == "PAID");
            auto const invoice = body_of(s.call(http::verb::get, "/invoices/" + flaky));
            CHECK(invoice.at("status").as_string() == "PAID");
            CHECK(invoice.at("attempts").as_int64() == 3);
            CHECK(psp.charges_total() == 2);
            CHECK(psp.provider->ledger().totals(psp.now_ms).amount_by_currency.at("usd") == 2200);
        }
        THEN("/metrics shows the gateway's HTTP calls by outcome, and their latency") {
            std::string const text = s.engine->metrics().render();
            auto calls = [&](char const* call, char const* outcome) {
                return metric(text, std::string("payment_gateway_http_calls_total{gateway=\"gateway-1\",call=\"") + call +
                                        "\",outcome=\"" + outcome + "\"}");
            };
            CHECK(calls("charge", "charged") == 2);
            CHECK(calls("charge", "transient") == 2); // the issuer's two processing errors
            CHECK(calls("charge", "unknown_outcome") == 0);
            CHECK(calls("charge", "over_limit") == 0);
            CHECK(calls("lookup", "absent") == 0);
            CHECK(metric(text, "payment_gateway_http_call_seconds_count{gateway=\"gateway-1\",call=\"charge\"}") == 4);
            CHECK(metric(text, "payment_gateway_http_call_seconds_bucket{gateway=\"gateway-1\",call=\"charge\",le=\"+Inf\"}") == 4);
        }
    }
}

TEST_CASE("--gateway: 'simulated' or http(s) URLs in preference order, never both") {
    auto const urls = std::get<Options>(parse({"--gateway", "http://a:1", "--gateway", "https://b"}));
    CHECK(urls.gateways == std::vector<std::string>{"http://a:1", "https://b"});
    CHECK(std::get<Options>(parse({"--gateway", "simulated"})).gateways.empty());
    CHECK(std::holds_alternative<Exit>(parse({"--gateway", "simulated", "--gateway", "http://a"})));
    CHECK(std::holds_alternative<Exit>(parse({"--gateway", "http://a", "--gateway", "simulated"})));
    CHECK(std::holds_alternative<Exit>(parse({"--gateway", "ftp://a"})));
    CHECK(std::holds_alternative<Exit>(parse({"--gateway-key", ""})));
    std::unique_ptr<Gateways> gateways;
    Options bad_url = std::get<Options>(parse({"--gateway", "http://host:99999"}));
    CHECK_FALSE(build_engine(bad_url, gateways));
}
