// The operator's routes over real TCP: the bearer token, the review queue and
// its resolution, dead letters; and the 503 a shutting-down server answers.
#include "test_server.hpp"

using namespace http_test;

namespace {

constexpr char const* token = "op-token-0123456789abcdef";

Options with_admin_token() {
    Options options;
    options.admin_token = token;
    return options;
}

std::vector<std::pair<std::string, std::string>> bearer(std::string const& value = token) {
    return {{"Authorization", "Bearer " + value}};
}

// Waits (bounded) until an invoice goes to NEEDS_REVIEW.
struct ReviewWaiter {
    explicit ReviewWaiter(payments::Engine& engine)
        : subscription(engine.bus().subscribe<payments::domain::InvoiceNeedsReview>("test", [this](auto const&) {
              std::lock_guard lock(mutex);
              ++seen;
              cv.notify_all();
          })) {}
    bool wait(int n) {
        std::unique_lock lock(mutex);
        return cv.wait_for(lock, guard, [&] { return seen >= n; });
    }
    std::mutex mutex;
    std::condition_variable cv;
    int seen = 0;
    payments::application::Subscription subscription;
};

} // namespace

SCENARIO("the operator routes are off without an admin token") {
    TestServer s;
    for (auto const& target : {"/admin/reviews", "/admin/dead-letters"}) {
        CAPTURE(target);
        auto response = s.call(http::verb::get, target, "", bearer());
        CHECK(response.result() == http::status::not_found);
        CHECK(code_of(response) == "route_not_found");
    }
    CHECK(s.call(http::verb::post, "/admin/dead-letters/replay", "", bearer()).result() == http::status::not_found);
}

SCENARIO("the operator routes need the bearer token") {
    TestServer s(with_admin_token());
    struct Row {
        std::vector<std::pair<std::string, std::string>> headers;
        http::status status;
    };
    Row const rows[] = {
        {{}, http::status::unauthorized},
        {bearer("wrong-token-0123456789abcdef"), http::status::unauthorized},
        {bearer(std::string(token) + "x"), http::status::unauthorized},
        {bearer(std::string(token).substr(0, 10)), http::status::unauthorized},
        {{{"Authorization", std::string("Basic ") + token}}, http::status::unauthorized},
        {bearer(), http::status::ok},
    };
    for (Row const& row : rows) {
        auto response = s.call(http::verb::get, "/admin/reviews", "", row.headers);
        CHECK(response.result() == row.status);
        if (row.status == http::status::unauthorized) {
            CHECK(code_of(response) == "unauthorized");
            CHECK(response[http::field::www_authenticate] == "Bearer realm=\"payments-admin\"");
        }
    }
}

SCENARIO("an operator lists the invoices that need review and resolves one") {
    TestServer s(with_admin_token());
    ReviewWaiter reviews(*s.engine);
    GIVEN("an invoice the provider charged one cent too much") {
        auto id = s.create(5000);
        REQUIRE(s.call(http::verb::post, "/invoices/" + id + "/pay", R"({"payment_method":"pm_card_amount_mismatch"})")
                    .result() == http::status::accepted);
        REQUIRE(reviews.wait(1));
        WHEN("the operator lists the review queue") {
            auto listed = body_of(s.call(http::verb::get, "/admin/reviews", "", bearer()));
            THEN("the invoice is there, with the reason and the attempt in question") {
                auto const& data = listed.at("data").as_array();
                REQUIRE(data.size() == 1);
                auto const& invoice = data[0].as_object();
                CHECK(invoice.at("id").as_string() == id);
                CHECK(invoice.at("status").as_string() == "NEEDS_REVIEW");
                CHECK(invoice.at("review").at("reason").as_string() ==
                      "the gateway charged 50.01 USD, the invoice is for 50.00 USD");
                CHECK(invoice.at("review").at("payment_id").is_string());
            }
        }
        WHEN("the operator resolves it as charged") {
            auto resolved = s.call(http::verb::post, "/admin/invoices/" + id + "/resolve",
                                   R"({"charged":true,"reference":"ch_refunded_difference"})", bearer());
            THEN("it is PAID and leaves the queue") {
                CHECK(resolved.result() == http::status::ok);
                CHECK(body_of(resolved).at("status").as_string() == "PAID");
                CHECK(body_of(s.call(http::verb::get, "/admin/reviews", "", bearer())).at("data").as_array().empty());
                AND_THEN("resolving it again is refused") {
                    auto again = s.call(http::verb::post, "/admin/invoices/" + id + "/resolve",
                                        R"({"charged":false})", bearer());
                    CHECK(again.result() == http::status::conflict);
                    CHECK(code_of(again) == "invalid_state");
                }
            }
        }
        WHEN("the decision is malformed") {
            struct Row {
                std::string body;
                std::string code;
            };
            Row const rows[] = {
                {R"({})", "invalid_argument"},
                {R"({"charged":"yes"})", "invalid_argument"},
                {R"({"charged":false,"reference":"ch_1"})", "invalid_argument"},
                {R"({"charged":true})", "invalid_argument"},
                {R"({"charged":true,"reference":"r","extra":1})", "unknown_field"},
                {R"({"charged":tru)", "malformed_json"},
            };
            THEN("each is a 400 and the invoice stays in review") {
                for (Row const& row : rows) {
                    CAPTURE(row.body);
                    auto response = s.call(http::verb::post, "/admin/invoices/" + id + "/resolve", row.body, bearer());
                    CHECK(response.result() == http::status::bad_request);
                    CHECK(code_of(response) == row.code);
                }
                CHECK(body_of(s.call(http::verb::get, "/invoices/" + id)).at("status").as_string() == "NEEDS_REVIEW");
            }
        }
    }
    GIVEN("an invoice that is not in review") {
        auto id = s.create();
        THEN("resolving it is a 409, and an unknown one a 404") {
            CHECK(s.call(http::verb::post, "/admin/invoices/" + id + "/resolve", R"({"charged":false})", bearer())
                      .result() == http::status::conflict);
            CHECK(s.call(http::verb::post, "/admin/invoices/inv_nope/resolve", R"({"charged":false})", bearer())
                      .result() == http::status::not_found);
        }
    }
}

SCENARIO("an operator lists and replays dead letters") {
    TestServer s(with_admin_token());
    auto listed = s.call(http::verb::get, "/admin/dead-letters", "", bearer());
    CHECK(listed.result() == http::status::ok);
    CHECK(body_of(listed).at("data").as_array().empty());
    auto replayed = s.call(http::verb::post, "/admin/dead-letters/replay", "", bearer());
    CHECK(replayed.result() == http::status::ok);
    CHECK(body_of(replayed).at("replayed").as_int64() == 0);
}

SCENARIO("once shutdown begins, a payment request gets 503 with Retry-After and nothing is committed") {
    TestServer s;
    auto id = s.create();
    s.engine->service().stop_accepting();
    auto response = s.call(http::verb::post, "/invoices/" + id + "/pay", R"({"payment_method":"pm_card_ok"})",
                           {{"Idempotency-Key", "k-during-shutdown"}});
    CHECK(response.result() == http::status::service_unavailable);
    CHECK(code_of(response) == "unavailable");
    CHECK(response[http::field::retry_after] == "1");
    CHECK(body_of(s.call(http::verb::get, "/invoices/" + id)).at("status").as_string() == "PENDING");
    CHECK(body_of(s.call(http::verb::get, "/invoices/" + id + "/payments")).at("data").as_array().empty());
}
