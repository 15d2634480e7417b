// The server on the durable store: what it answers when the disk refuses a
// write, and the invoice's audit history.
#include "http/test_server.hpp"
#include "support/faulty_vfs.hpp"
#include "support/temp_dir.hpp"

#include <payments/infrastructure/store/sqlite_store.hpp>

using namespace http_test;

namespace {

Options on_sqlite(test::TempDir const& dir) {
    Options options;
    options.store = "sqlite:" + dir.file("payments.db");
    options.sqlite.vfs = test::FaultyVfs::name;
    test::FaultyVfs::instance();
    REQUIRE(open_store(options));
    return options;
}

} // namespace

SCENARIO("a write the disk refuses is 503 storage_unavailable with Retry-After, never a 2xx, and service resumes") {
    test::TempDir dir;
    TestServer s(on_sqlite(dir));
    auto& vfs = test::FaultyVfs::instance();
    GIVEN("a disk that fails every write") {
        vfs.failing = true;
        auto refused = s.call(http::verb::post, "/invoices", R"({"id":"inv_disk","amount":1999})");
        vfs.failing = false;
        THEN("the request is refused with 503 and nothing is kept") {
            CHECK(refused.result() == http::status::service_unavailable);
            CHECK(code_of(refused) == "storage_unavailable");
            CHECK(refused[http::field::retry_after] == "1");
            CHECK(s.call(http::verb::get, "/invoices/inv_disk").result() == http::status::not_found);
        }
        WHEN("the disk works again") {
            auto created = s.call(http::verb::post, "/invoices", R"({"id":"inv_disk","amount":1999})");
            THEN("the same request succeeds") { CHECK(created.result() == http::status::created); }
        }
    }
}

SCENARIO("a read the disk refuses is 503 storage_unavailable, not 404") {
    test::TempDir dir;
    TestServer s(on_sqlite(dir));
    auto& vfs = test::FaultyVfs::instance();
    GIVEN("an invoice just committed (the readers' pages are stale) and a disk that fails every read") {
        REQUIRE(s.call(http::verb::post, "/invoices", R"({"id":"inv_read","amount":1999})").result() ==
                http::status::created);
        vfs.failing_reads = true;
        auto missing = s.call(http::verb::get, "/invoices/inv_none");
        auto paid = s.call(http::verb::post, "/invoices/inv_none/pay", R"({"payment_method":"pm_card_ok"})");
        vfs.failing_reads = false;
        THEN("a look-up it could not make answers 503, and the same look-up answers 404 once the disk reads") {
            CHECK(missing.result() == http::status::service_unavailable);
            CHECK(code_of(missing) == "storage_unavailable");
            CHECK(paid.result() == http::status::service_unavailable);
            CHECK(s.call(http::verb::get, "/invoices/inv_none").result() == http::status::not_found);
        }
    }
}

SCENARIO("GET /invoices/{id}/events is the invoice's history, in commit order") {
    test::TempDir dir;
    TestServer s(on_sqlite(dir));
    GIVEN("an invoice paid") {
        REQUIRE(s.call(http::verb::post, "/invoices", R"({"id":"inv_hist","amount":500})").result() ==
                http::status::created);
        REQUIRE(s.call(http::verb::post, "/invoices/inv_hist/pay", R"({"payment_method":"pm_card_ok"})").result() ==
                http::status::accepted);
        REQUIRE(s.wait_settled(1));
        THEN("its events are listed oldest first; an unknown invoice is 404") {
            auto events = body_of(s.call(http::verb::get, "/invoices/inv_hist/events")).at("data").as_array();
            std::vector<std::string> types;
            for (auto const& e : events) types.emplace_back(e.at("type").as_string());
            CHECK(types == std::vector<std::string>{"InvoiceCreated", "PaymentRequested", "PaymentSucceeded", "InvoicePaid"});
            CHECK(events[0].at("amount").as_int64() == 500);
            CHECK(s.call(http::verb::get, "/invoices/inv_none/events").result() == http::status::not_found);
        }
    }
}
