// HTTP/1.1 framing and conformance over real TCP (RFC 9112, RFC 9110): what
// the server refuses before a request reaches a route, and what it accepts.
#include "protocol.hpp"
#include "test_server.hpp"

using namespace http_test;

namespace {

constexpr auto answer_due = std::chrono::milliseconds(1000); // an answer due at once; a failing guard only

std::string const smuggled = request_bytes("POST", "/invoices", "", R"({"amount":100})");

} // namespace

SCENARIO("item 2: a Transfer-Encoding the server cannot frame is refused and the connection closed (TE.0)") {
    TestServer s;
    struct Row {
        std::string headers;
        int status;
    };
    std::vector<Row> const rows = {
        {"Transfer-Encoding: gzip\r\n", 501},
        {"Transfer-Encoding: identity\r\n", 501},
        {"Transfer-Encoding: chunked, gzip\r\n", 501},
        {"Transfer-Encoding: xchunked\r\n", 501},
        {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501},
        {"Transfer-Encoding: chunked, chunked\r\n", 400},
        {"Transfer-Encoding: chunked\r\nContent-Length: 14\r\n", 400},
        {"Content-Length: 14\r\nTransfer-Encoding: chunked\r\n", 400},
    };
    GIVEN("POSTs whose body length cannot be determined, each followed by a smuggled POST") {
        WHEN("each is sent on a connection of its own") {
            THEN("the one answer is the refusal, the connection is closed, and nothing was created") {
                for (Row const& row : rows) {
                    CAPTURE(row.headers);
                    Client client(s.port);
                    client.send("POST /invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                                row.headers + "\r\n" + smuggled);
                    std::string const answer = client.read_until_close(answer_due);
                    CHECK(client.last_error == net::error::eof);
                    CHECK(answer.starts_with("HTTP/1.1 " + std::to_string(row.status)));
                    CHECK(answer.find("HTTP/1.1 ", 1) == std::string::npos);
                    CHECK(answer.find("application/problem+json") != std::string::npos);
                }
                CHECK(body_of(s.call(http::verb::get, "/invoices")).at("data").as_array().empty());
            }
        }
    }
    GIVEN("a chunked body, framed as RFC 9112 says") {
        Client client(s.port);
        client.send("POST /invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\ne\r\n{\"amount\":100}\r\n0\r\n\r\n");
        THEN("it is served") { CHECK(client.read(answer_due).value().result() == http::status::created); }
    }
}

SCENARIO("item 6: Expect: 100-continue is answered before the body is sent") {
    Options small;
    small.body_limit = 1024;
    TestServer s(small);
    GIVEN("a client that sends its header and waits to be told to go on") {
        Client client(s.port);
        client.send("POST /invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n"
                    "Expect: 100-continue\r\n\r\n");
        WHEN("the server has read the header") {
            auto interim = client.read(answer_due);
            THEN("it answers 100 Continue at once, and the final answer once the body came") {
                REQUIRE(interim.has_value());
                CHECK(interim->result() == http::status::continue_);
                client.send(R"({"amount":100})");
                CHECK(client.read(answer_due).value().result() == http::status::created);
            }
        }
    }
    GIVEN("a client that announces a body over the limit") {
        Client client(s.port);
        client.send("POST /invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n"
                    "Expect: 100-continue\r\n\r\n");
        THEN("it gets 413 at once, never 100, and the connection closes") {
            auto answer = client.read(answer_due);
            REQUIRE(answer.has_value());
            CHECK(answer->result() == http::status::payload_too_large);
            CHECK(client.closed(answer_due));
        }
    }
    GIVEN("an expectation the server does not know") {
        Client client(s.port);
        client.send(request_bytes("GET", "/health", "Expect: something-else\r\n"));
        THEN("417") { CHECK(client.read(answer_due).value().result() == http::status::expectation_failed); }
    }
}

SCENARIO("item 8: JSON and HTTP conformance") {
    Options small;
    small.uri_limit = 200;
    small.header_limit = 1024;
    TestServer s(small);
    struct Row {
        std::string name;
        std::string bytes;
        http::status status;
        std::string code; // for refusals
    };
    using S = http::status;
    std::string const long_target = "/invoices/" + std::string(300, 'x');
    std::string const longer_than_header = "/invoices/" + std::string(2000, 'x');
    std::vector<Row> const rows = {
        {"duplicate JSON keys", request_bytes("POST", "/invoices", "", R"({"amount":100,"amount":200})"), S::bad_request,
         "duplicate_field"},
        {"duplicate nested JSON keys", request_bytes("POST", "/invoices", "", R"({"amount":100,"description":"x","description":"y"})"),
         S::bad_request, "duplicate_field"},
        {"no Host on HTTP/1.1", "GET /health HTTP/1.1\r\n\r\n", S::bad_request, "bad_host"},
        {"two Host headers", "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", S::bad_request, "bad_host"},
        {"no Host on HTTP/1.0 is fine", "GET /health HTTP/1.0\r\n\r\n", S::ok, ""},
        {"absolute-form target", "GET http://localhost/health HTTP/1.1\r\nHost: localhost\r\n\r\n", S::ok, ""},
        {"absolute-form with a query", "GET http://localhost/invoices?limit=5 HTTP/1.1\r\nHost: localhost\r\n\r\n", S::ok, ""},
        {"one empty line before the request line", "\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", S::ok, ""},
        {"a target over the URI limit", request_bytes("GET", long_target), S::uri_too_long, "uri_too_long"},
        {"a target over the header limit", request_bytes("GET", longer_than_header), S::uri_too_long, "uri_too_long"},
        {"headers over the limit", request_bytes("GET", "/health", "X-Pad: " + std::string(2000, 'p') + "\r\n"),
         S::request_header_fields_too_large, "headers_too_large"},
        {"two Idempotency-Key headers",
         request_bytes("POST", "/invoices/inv_1/pay", "Idempotency-Key: a\r\nIdempotency-Key: b\r\n", "{}"), S::bad_request,
         "duplicate_header"},
    };
    GIVEN("one request of each kind, on a connection of its own") {
        THEN("each gets its status, and refusals their problem code") {
            for (Row const& row : rows) {
                CAPTURE(row.name);
                Client client(s.port);
                client.send(row.bytes);
                auto answer = client.read(answer_due);
                REQUIRE(answer.has_value());
                CHECK(answer->result() == row.status);
                if (!row.code.empty()) CHECK(code_of(*answer) == row.code);
            }
        }
    }
    GIVEN("a server that is draining") {
        s.readiness = Readiness::draining;
        THEN("its 503 says when to come back") {
            auto ready = s.call(http::verb::get, "/health/ready");
            CHECK(ready.result() == http::status::service_unavailable);
            CHECK(ready[http::field::retry_after] == "1");
        }
    }
}

TEST_CASE("empty lines before a request line are counted, nothing else") {
    CHECK(leading_empty_lines("\r\nGET") == 2);
    CHECK(leading_empty_lines("\n\r\nGET") == 3);
    CHECK(leading_empty_lines("GET") == 0);
    CHECK(leading_empty_lines("\r") == 0);
}
