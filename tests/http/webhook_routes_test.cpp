// POST /webhooks/psp over real TCP: Stripe-style signatures, the timestamp
// tolerance, secret rotation, replays, malformed notices, and a notice that
// settles an attempt at once through the processor's settlement.
#include "test_server.hpp"

#include "webhooks.hpp"

using namespace http_test;

namespace {

constexpr char const* secret = "whsec_0123456789abcdef";

Options with_webhook_secret() {
    Options options;
    options.webhooks.secret = secret;
    options.engine.processor.gateway_timeout = std::chrono::hours(1); // only the notice can settle it in time
    // The provider never answers these attempts' charges: at the end of a
    // test, stopping does not wait for them (they are left to recovery).
    options.drain_timeout = std::chrono::milliseconds(0);
    return options;
}

std::int64_t now_unix() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::vector<std::pair<std::string, std::string>> signed_by(std::string const& body, std::string_view key = secret,
                                                           std::int64_t t = now_unix()) {
    return {{"Stripe-Signature", "t=" + std::to_string(t) + ",v1=" + sign_payload(key, t, body)},
            {"Content-Type", "application/json"}};
}

std::string succeeded(std::string const& event_id, std::string const& key, std::int64_t amount) {
    return R"({"id":")" + event_id + R"(","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","amount":)" +
           std::to_string(amount) + R"(,"currency":"usd","status":"succeeded","metadata":{"gateway_key":")" + key +
           R"("}}}})";
}

std::string failed(std::string const& event_id, std::string const& key) {
    return R"({"id":")" + event_id + R"(","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_2",)"
           R"("amount":1000,"currency":"usd","status":"requires_payment_method",)"
           R"("last_payment_error":{"message":"Your card was declined."},"metadata":{"gateway_key":")" + key + R"("}}}})";
}

// An invoice of `amount` with one attempt out, whose answer the provider lost.
struct Unanswered {
    std::string invoice;
    std::string key;
};

Unanswered an_unanswered_attempt(TestServer& s, std::int64_t amount = 1000) {
    std::string const invoice = s.create(amount);
    auto paid = s.call(http::verb::post, "/invoices/" + invoice + "/pay", R"({"payment_method":"pm_card_lost_response"})");
    REQUIRE(paid.result() == http::status::accepted);
    auto const id = payments::domain::InvoiceId::parse(invoice).value();
    auto attempts = s.engine->service().payments_of(id).value();
    REQUIRE(attempts.size() == 1);
    return {invoice, attempts[0].gateway_key()};
}

std::string status_of(TestServer& s, std::string const& invoice) {
    return std::string(body_of(s.call(http::verb::get, "/invoices/" + invoice)).at("status").as_string());
}

double metric(TestServer& s, std::string const& series) {
    std::string const text = s.engine->metrics().render();
    auto pos = text.find("\n" + series + " ");
    return pos == std::string::npos ? 0 : std::stod(text.substr(pos + series.size() + 2));
}

} // namespace

SCENARIO("the webhook route is off without a secret") {
    TestServer s;
    std::string const body = succeeded("evt_1", "pay_x.y", 1000);
    auto response = s.call(http::verb::post, "/webhooks/psp", body, signed_by(body));
    CHECK(response.result() == http::status::not_found);
    CHECK(code_of(response) == "route_not_found");
}

SCENARIO("a signed payment_intent.succeeded settles the unanswered attempt at once") {
    GIVEN("an invoice whose attempt's answer was lost") {
        TestServer s(with_webhook_secret());
        auto const attempt = an_unanswered_attempt(s);
        WHEN("the provider's signed notice comes") {
            std::string const body = succeeded("evt_ok_1", attempt.key, 1000);
            auto response = s.call(http::verb::post, "/webhooks/psp", body, signed_by(body));
            THEN("the invoice is PAID, without waiting for a look-up") {
                REQUIRE(response.result() == http::status::ok);
                CHECK(body_of(response).at("status").as_string() == "settled");
                CHECK(body_of(response).at("payment_status").as_string() == "SUCCEEDED");
                CHECK(status_of(s, attempt.invoice) == "PAID");
                CHECK(metric(s, "webhooks_received_total{outcome=\"settled\"}") == 1);
            }
            AND_WHEN("the same event is delivered again") {
                auto again = s.call(http::verb::post, "/webhooks/psp", body, signed_by(body));
                THEN("it is taken as a duplicate and changes nothing") {
                    REQUIRE(again.result() == http::status::ok);
                    CHECK(body_of(again).at("status").as_string() == "duplicate");
                    CHECK(metric(s, "webhooks_received_total{outcome=\"duplicate\"}") == 1);
                }
            }
        }
    }
}

SCENARIO("a notice of another amount does not pay the invoice, and payment_failed fails the attempt") {
    TestServer s(with_webhook_secret());
    GIVEN("an unanswered attempt, and a notice that says 999 was charged for 1000") {
        auto const attempt = an_unanswered_attempt(s);
        std::string const body = succeeded("evt_amount", attempt.key, 999);
        auto response = s.call(http::verb::post, "/webhooks/psp", body, signed_by(body));
        THEN("the invoice needs an operator") {
            REQUIRE(response.result() == http::status::ok);
            CHECK(status_of(s, attempt.invoice) == "NEEDS_REVIEW");
        }
    }
    GIVEN("an unanswered attempt, and a payment_failed notice for it") {
        auto const attempt = an_unanswered_attempt(s);
        std::string const body = failed("evt_failed", attempt.key);
        auto response = s.call(http::verb::post, "/webhooks/psp", body, signed_by(body));
        THEN("the attempt is declined and the invoice FAILED") {
            REQUIRE(response.result() == http::status::ok);
            CHECK(body_of(response).at("payment_status").as_string() == "FAILED");
            CHECK(status_of(s, attempt.invoice) == "FAILED");
        }
    }
}

SCENARIO("refused notices: 400 problem+json, a metric by reason, and nothing changed") {
    TestServer s(with_webhook_secret());
    auto const attempt = an_unanswered_attempt(s);
    std::string const body = succeeded("evt_refused", attempt.key, 1000);
    struct Row {
        std::string name;
        std::vector<std::pair<std::string, std::string>> headers;
        std::string body;
        std::string code;
    };
    std::int64_t const t = now_unix();
    std::string const garbage = R"({"id":"evt_g","type":"payment_intent.succeeded","data":{}})";
    Row const rows[] = {
        {"no header", {{"Content-Type", "application/json"}}, body, "malformed_signature"},
        {"no v1", {{"Stripe-Signature", "t=" + std::to_string(t)}}, body, "malformed_signature"},
        {"a bad t", {{"Stripe-Signature", "t=12x,v1=" + sign_payload(secret, t, body)}}, body, "malformed_signature"},
        {"another secret", signed_by(body, "whsec_not_ours_0123456"), body, "bad_signature"},
        {"another body", signed_by(body), body + " ", "bad_signature"},
        {"too old", signed_by(body, secret, t - 301), body, "stale_timestamp"},
        {"too far ahead", signed_by(body, secret, t + 301), body, "stale_timestamp"},
        {"signed, but not a notice we read", signed_by(garbage), garbage, "malformed_event"},
        {"signed, but not JSON", signed_by("{nope"), "{nope", "malformed_event"},
    };
    for (Row const& row : rows) {
        CAPTURE(row.name);
        auto response = s.call(http::verb::post, "/webhooks/psp", row.body, row.headers);
        CHECK(response.result() == http::status::bad_request);
        CHECK(code_of(response) == row.code);
    }
    CHECK(metric(s, "webhooks_rejected_total{reason=\"malformed_signature\"}") == 3);
    CHECK(metric(s, "webhooks_rejected_total{reason=\"bad_signature\"}") == 2);
    CHECK(metric(s, "webhooks_rejected_total{reason=\"stale_timestamp\"}") == 2);
    CHECK(metric(s, "webhooks_rejected_total{reason=\"malformed_event\"}") == 2);
    CHECK(status_of(s, attempt.invoice) == "PROCESSING");
}

SCENARIO("while the provider rotates its secret, a header with several v1 signatures is accepted if one is ours") {
    TestServer s(with_webhook_secret());
    auto const attempt = an_unanswered_attempt(s);
    std::string const body = succeeded("evt_rotated", attempt.key, 1000);
    std::int64_t const t = now_unix();
    std::string const header = "t=" + std::to_string(t) + ",v1=" + sign_payload("whsec_the_new_one_01234", t, body) +
                               ",v1=" + sign_payload(secret, t, body) + ",v0=ignored";
    auto response = s.call(http::verb::post, "/webhooks/psp", body, {{"Stripe-Signature", header}});
    REQUIRE(response.result() == http::status::ok);
    CHECK(status_of(s, attempt.invoice) == "PAID");
}

SCENARIO("a notice about a key we never sent, or of a type we do not act on, is acknowledged and changes nothing") {
    TestServer s(with_webhook_secret());
    std::string const stranger = succeeded("evt_stranger", "pay_aaaaaaaaaaaaaaaaaaaaaaaaaa.someone", 1000);
    auto response = s.call(http::verb::post, "/webhooks/psp", stranger, signed_by(stranger));
    REQUIRE(response.result() == http::status::ok);
    CHECK(body_of(response).at("status").as_string() == "unknown_attempt");
    std::string const other = R"({"id":"evt_other","type":"charge.refunded","data":{"object":{}}})";
    response = s.call(http::verb::post, "/webhooks/psp", other, signed_by(other));
    REQUIRE(response.result() == http::status::ok);
    CHECK(body_of(response).at("status").as_string() == "ignored");
}

TEST_CASE("seen event ids are forgotten after their time and past the cap") {
    SeenEvents seen(2, std::chrono::seconds(600));
    CHECK(seen.first_time("evt_a", 1000));
    CHECK_FALSE(seen.first_time("evt_a", 1001));
    CHECK(seen.first_time("evt_b", 1002));
    CHECK(seen.first_time("evt_c", 1003)); // at the cap: evt_a, the oldest, goes
    CHECK(seen.size() == 2);
    CHECK(seen.first_time("evt_a", 1004));
    CHECK(seen.first_time("evt_d", 1004 + 601)); // everything older than 600 s is gone
    CHECK(seen.size() == 1);
}
