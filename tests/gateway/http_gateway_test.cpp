// HttpGateway against the provider simulator over real loopback sockets:
// one scenario per row of the error table in docs/psp-protocol.md that a
// provider can produce, TLS, the pool, and the ledger across restarts.

#include "gateway/psp_fixture.hpp"

#include <payments/application/gateways.hpp>

#include <payments/infrastructure/observability/json_logger.hpp>
#include <payments/infrastructure/system/clocks.hpp>

#include "psp/webhooks.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

using namespace test;
using application::ChargeStatus;
using infrastructure::HttpGatewayOptions;

namespace {

constexpr auto short_deadline = std::chrono::milliseconds(300);

std::string read_file(std::string const& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// A self-signed certificate for `san` ("DNS:localhost,IP:127.0.0.1"), made with the openssl tool.
void make_certificate(TempDir const& dir, std::string const& name, std::string const& san) {
    std::string const command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=payments-psp-test"
                                " -addext subjectAltName=" + san + " -keyout " + dir.file(name + ".key") +
                                " -out " + dir.file(name + ".pem") + " >/dev/null 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);
}

} // namespace

SCENARIO("charges over HTTP: charged, declined, and a flaky issuer") {
    TempDir dir;
    Psp psp(dir.file("ledger.db"));
    psp.start();
    IoThreads io;
    auto gateway = a_gateway(io, options_for(psp.url()));

    GIVEN("a good card") {
        WHEN("it is charged") {
            auto const answer = charge(*gateway, a_charge("k_ok", "pm_card_ok"));
            THEN("the answer is the PaymentIntent's id and the amount received, and the provider booked one charge") {
                CHECK(kind_of(answer) == "CHARGED");
                CHECK(answer.reference.starts_with("pi_"));
                REQUIRE(answer.charged);
                CHECK(*answer.charged == usd(1999));
                CHECK(psp.charges_total() == 1);
            }
            AND_WHEN("the same key is sent again") {
                auto const again = charge(*gateway, a_charge("k_ok", "pm_card_ok"));
                THEN("the provider answers the saved charge and books nothing more") {
                    CHECK(again.reference == answer.reference);
                    CHECK(psp.charges_total() == 1);
                }
            }
            AND_WHEN("the same key is sent with another amount") {
                auto const conflict = charge(*gateway, a_charge("k_ok", "pm_card_ok", "inv_psp", 2500));
                THEN("409: the outcome is unknown (the look-up decides), nothing more is booked") {
                    CHECK(kind_of(conflict) == "UNKNOWN_OUTCOME");
                    CHECK(psp.charges_total() == 1);
                }
            }
        }
    }
    GIVEN("a declined card") {
        auto const answer = charge(*gateway, a_charge("k_declined", "pm_card_declined"));
        THEN("402 card_declined is DECLINED, and a look-up says declined") {
            CHECK(kind_of(answer) == "DECLINED");
            CHECK(state_of(lookup(*gateway, "k_declined")) == "DECLINED");
            CHECK(psp.charges_total() == 0);
        }
    }
    GIVEN("pm_card_flaky_2, one key per attempt as the library sends them") {
        auto const first = charge(*gateway, a_charge("k_flaky_1", "pm_card_flaky_2", "inv_flaky"));
        auto const second = charge(*gateway, a_charge("k_flaky_2", "pm_card_flaky_2", "inv_flaky"));
        auto const third = charge(*gateway, a_charge("k_flaky_3", "pm_card_flaky_2", "inv_flaky"));
        THEN("two 402 processing errors are TRANSIENT at the card (no circuit counts them), then the charge goes through") {
            CHECK(kind_of(first) == "TRANSIENT");
            CHECK(kind_of(second) == "TRANSIENT");
            CHECK_FALSE(application::is_provider_failure(first));
            CHECK_FALSE(application::is_provider_failure(second));
            CHECK(kind_of(third) == "CHARGED");
            CHECK(psp.charges_total() == 1);
        }
    }
    GIVEN("a card still processing") {
        auto const answer = charge(*gateway, a_charge("k_processing", "pm_card_processing"));
        THEN("'processing' is an unknown outcome, and a look-up says PENDING until it is final") {
            CHECK(kind_of(answer) == "UNKNOWN_OUTCOME");
            CHECK(state_of(lookup(*gateway, "k_processing")) == "PENDING");
            psp.advance(std::chrono::minutes(1));
            CHECK(state_of(lookup(*gateway, "k_processing")) == "CHARGED");
        }
    }
    GIVEN("a key the provider never saw") {
        THEN("a look-up says ABSENT") { CHECK(state_of(lookup(*gateway, "k_never")) == "ABSENT"); }
    }
}

SCENARIO("answers that never come: the deadline, late bookings, lost answers and search lag") {
    TempDir dir;
    Psp psp(dir.file("ledger.db"));
    psp.options.search_lag = std::chrono::seconds(5);
    psp.start();
    IoThreads io;
    auto options = options_for(psp.url());
    options.deadline = short_deadline;
    auto gateway = a_gateway(io, options);

    GIVEN("a charge the provider books late and never answers") {
        auto const answer = charge(*gateway, a_charge("k_late", "pm_card_late_booking"));
        THEN("the deadline makes it UNKNOWN; the look-up finds nothing, then the charge once booked and searchable") {
            CHECK(kind_of(answer) == "UNKNOWN_OUTCOME");
            CHECK(state_of(lookup(*gateway, "k_late")) == "ABSENT");
            psp.advance(std::chrono::seconds(20)); // booked now, not yet searchable
            CHECK(state_of(lookup(*gateway, "k_late")) == "ABSENT");
            psp.advance(std::chrono::seconds(5));
            auto const status = lookup(*gateway, "k_late");
            CHECK(state_of(status) == "CHARGED");
            CHECK(status.charged == std::optional(usd(1999)));
            CHECK(psp.charges_total() == 1);
        }
    }
    GIVEN("a charge whose answer comes after the deadline") {
        auto const answer = charge(*gateway, a_charge("k_late_answer", "pm_card_late_answer"));
        THEN("it is UNKNOWN, and the look-up finds the charge once the search sees it") {
            CHECK(kind_of(answer) == "UNKNOWN_OUTCOME");
            psp.advance(std::chrono::seconds(5));
            CHECK(state_of(lookup(*gateway, "k_late_answer")) == "CHARGED");
        }
    }
    GIVEN("a charge booked and then the connection reset instead of the answer") {
        auto const answer = charge(*gateway, a_charge("k_lost", "pm_card_lost_response"));
        THEN("the reset after sending is UNKNOWN, and the look-up finds the charge") {
            CHECK(kind_of(answer) == "UNKNOWN_OUTCOME");
            CHECK(psp.charges_total() == 1);
            psp.advance(std::chrono::seconds(5));
            CHECK(state_of(lookup(*gateway, "k_lost")) == "CHARGED");
        }
    }
    GIVEN("a charge answered at once") {
        auto const answer = charge(*gateway, a_charge("k_lag", "pm_card_ok"));
        THEN("the search lags: ABSENT first, then CHARGED") {
            CHECK(kind_of(answer) == "CHARGED");
            CHECK(state_of(lookup(*gateway, "k_lag")) == "ABSENT");
            psp.advance(std::chrono::seconds(5));
            CHECK(state_of(lookup(*gateway, "k_lag")) == "CHARGED");
        }
    }
}

SCENARIO("the provider's own failures: 5xx, 429, resets, refused connections") {
    TempDir dir;
    IoThreads io;
    GIVEN("a provider that answers 500 to everything") {
        Psp psp(dir.file("ledger.db"), always(&psp::FaultOptions::error_rate));
        psp.start();
        auto gateway = a_gateway(io, options_for(psp.url()));
        THEN("a 500 is UNKNOWN (it may have booked), never TRANSIENT") {
            auto const answer = charge(*gateway, a_charge("k_500", "pm_card_ok"));
            CHECK(kind_of(answer) == "UNKNOWN_OUTCOME");
            CHECK(application::is_provider_failure(answer)); // the provider's own failure: its circuit counts it
            CHECK(psp.charges_total() == 0);
        }
    }
    GIVEN("a provider that rate-limits everything") {
        Psp psp(dir.file("ledger.db"), always(&psp::FaultOptions::rate_limit_rate));
        psp.start();
        auto gateway = a_gateway(io, options_for(psp.url()));
        THEN("429 is TRANSIENT: nothing executed") {
            auto const answer = charge(*gateway, a_charge("k_429", "pm_card_ok"));
            CHECK(kind_of(answer) == "TRANSIENT");
            CHECK(application::is_provider_failure(answer));
        }
    }
    GIVEN("a provider that resets every connection once it has the request") {
        Psp psp(dir.file("ledger.db"), always(&psp::FaultOptions::reset_rate));
        psp.start();
        auto gateway = a_gateway(io, options_for(psp.url()));
        THEN("the request was sent, so the outcome is UNKNOWN; the look-up says it was not booked") {
            CHECK(kind_of(charge(*gateway, a_charge("k_reset", "pm_card_ok"))) == "UNKNOWN_OUTCOME");
            CHECK(psp.charges_total() == 0);
        }
    }
    GIVEN("no provider listening") {
        boost::asio::ip::tcp::acceptor closed(io.io, {boost::asio::ip::make_address("127.0.0.1"), 0});
        auto const port = closed.local_endpoint().port();
        closed.close();
        auto gateway = a_gateway(io, options_for("http://127.0.0.1:" + std::to_string(port)));
        THEN("a refused connection is TRANSIENT: nothing was sent") {
            CHECK(kind_of(charge(*gateway, a_charge("k_refused", "pm_card_ok"))) == "TRANSIENT");
            CHECK(state_of(lookup(*gateway, "k_refused")) == "PENDING"); // a failed look-up knows nothing
        }
    }
    GIVEN("a wrong secret key") {
        Psp psp(dir.file("ledger.db"));
        psp.options.secret_key = "sk_right";
        psp.start();
        auto options = options_for(psp.url());
        options.secret_key = "sk_wrong";
        auto gateway = a_gateway(io, options);
        THEN("401 is TRANSIENT: nothing executed") {
            CHECK(kind_of(charge(*gateway, a_charge("k_401", "pm_card_ok"))) == "TRANSIENT");
            CHECK(psp.charges_total() == 0);
        }
    }
}

SCENARIO("keep-alive: connections are reused, and a pooled one the provider closed is replaced once") {
    TempDir dir;
    Psp psp(dir.file("ledger.db"));
    psp.start();
    IoThreads io;
    auto gateway = a_gateway(io, options_for(psp.url()));
    GIVEN("two charges one after the other") {
        CHECK(kind_of(charge(*gateway, a_charge("k_a", "pm_card_ok"))) == "CHARGED");
        CHECK(kind_of(charge(*gateway, a_charge("k_b", "pm_card_ok"))) == "CHARGED");
        THEN("one connection served both") {
            CHECK(gateway->stats().connections_opened == 1);
            CHECK(gateway->stats().connections_reused == 1);
        }
        AND_WHEN("the provider restarts (closing the pooled connection) and a third charge is sent") {
            psp.stop();
            psp.start();
            auto const third = charge(*gateway, a_charge("k_c", "pm_card_ok"));
            THEN("the closed connection is retried once on a fresh one with the same key, and charged once") {
                CHECK(kind_of(third) == "CHARGED");
                CHECK(gateway->stats().stale_retries == 1);
                CHECK(gateway->stats().connections_opened == 2);
                CHECK(psp.charges_total() == 3);
            }
        }
    }
}

SCENARIO("HTTPS: the provider's certificate is verified, host name included") {
    TempDir dir;
    make_certificate(dir, "good", "DNS:localhost,IP:127.0.0.1");
    make_certificate(dir, "other_host", "DNS:psp.example");
    IoThreads io;
    GIVEN("a provider with a self-signed certificate for 127.0.0.1") {
        Psp psp(dir.file("ledger.db"));
        psp.server_options.tls_cert = dir.file("good.pem");
        psp.server_options.tls_key = dir.file("good.key");
        psp.start();
        std::string const url = "https://127.0.0.1:" + std::to_string(psp.port);
        WHEN("the gateway trusts that certificate") {
            auto options = options_for(url);
            options.ca_file = dir.file("good.pem");
            auto gateway = a_gateway(io, options);
            THEN("charges and look-ups work over TLS") {
                CHECK(kind_of(charge(*gateway, a_charge("k_tls", "pm_card_ok"))) == "CHARGED");
                CHECK(state_of(lookup(*gateway, "k_tls")) == "CHARGED");
            }
        }
        WHEN("the gateway trusts only the system roots") {
            auto gateway = a_gateway(io, options_for(url));
            THEN("the handshake fails: TRANSIENT, and nothing reached the provider") {
                auto const answer = charge(*gateway, a_charge("k_untrusted", "pm_card_ok"));
                CHECK(kind_of(answer) == "TRANSIENT");
                CHECK(answer.failure->reason.find("tls handshake") != std::string::npos);
                CHECK_FALSE(psp.provider->ledger().by_key("k_untrusted"));
            }
        }
        WHEN("the gateway reaches it by a name its certificate does not carry") {
            Psp other(dir.file("other.db"));
            other.server_options.tls_cert = dir.file("other_host.pem");
            other.server_options.tls_key = dir.file("other_host.key");
            other.start();
            auto options = options_for("https://127.0.0.1:" + std::to_string(other.port));
            options.ca_file = dir.file("other_host.pem");
            auto gateway = a_gateway(io, options);
            THEN("host name verification refuses it: TRANSIENT, nothing booked") {
                CHECK(kind_of(charge(*gateway, a_charge("k_wrong_host", "pm_card_ok"))) == "TRANSIENT");
                CHECK_FALSE(other.provider->ledger().by_key("k_wrong_host"));
            }
        }
    }
}

SCENARIO("the secret key is never logged nor in an answer") {
    TempDir dir;
    Psp psp(dir.file("ledger.db"), always(&psp::FaultOptions::error_rate));
    psp.start();
    IoThreads io;
    std::string const secret = "sk_live_never_in_logs_51H8xYz";
    std::string const log_path = dir.file("log.jsonl");
    std::FILE* log_file = std::fopen(log_path.c_str(), "w");
    REQUIRE(log_file);
    std::vector<std::string> reasons;
    {
        infrastructure::ManualClock clock;
        infrastructure::JsonLogger logger(log_file, application::LogLevel::debug, clock);
        auto options = options_for(psp.url());
        options.secret_key = secret;
        options.logger = &logger;
        auto gateway = a_gateway(io, options);
        options.url = "http://127.0.0.1:1";
        auto refused = a_gateway(io, options);
        reasons.push_back(charge(*gateway, a_charge("k_log_500", "pm_card_ok")).failure.value().reason);
        reasons.push_back(charge(*refused, a_charge("k_log_refused", "pm_card_ok")).failure.value().reason);
        lookup(*refused, "k_log_refused");
    }
    std::fclose(log_file);
    std::string const log = read_file(log_path);
    CHECK(log.find("charge failed") != std::string::npos); // the failures were reported
    CHECK(log.find(secret) == std::string::npos);
    for (auto const& reason : reasons) CHECK(reason.find(secret) == std::string::npos);
}

SCENARIO("the provider's ledger survives a restart") {
    TempDir dir;
    IoThreads io;
    std::string reference;
    {
        Psp psp(dir.file("ledger.db"));
        psp.start();
        auto gateway = a_gateway(io, options_for(psp.url()));
        reference = charge(*gateway, a_charge("k_r1", "pm_card_ok")).reference;
        charge(*gateway, a_charge("k_r2", "pm_card_ok"));
        charge(*gateway, a_charge("k_r3", "pm_card_declined"));
        CHECK(psp.charges_total() == 2);
    }
    Psp restarted(dir.file("ledger.db"));
    restarted.start();
    auto gateway = a_gateway(io, options_for(restarted.url()));
    THEN("psp_charges_total counts the same charges, and a key sent again is answered from the ledger") {
        CHECK(restarted.charges_total() == 2);
        auto const again = charge(*gateway, a_charge("k_r1", "pm_card_ok"));
        CHECK(again.reference == reference);
        CHECK(kind_of(charge(*gateway, a_charge("k_r3", "pm_card_declined"))) == "DECLINED");
        CHECK(restarted.charges_total() == 2);
    }
}

TEST_CASE("a gateway URL that is not http(s)://host[:port] is refused") {
    IoThreads io(1);
    for (std::string url : {"ftp://x", "http://", "http://host:0", "http://host:99999", "https://u:p@host", "http://h/?q"}) {
        CAPTURE(url);
        CHECK_FALSE(infrastructure::HttpGateway::create(io.io.get_executor(), options_for(url)));
    }
    CHECK(infrastructure::HttpGateway::create(io.io.get_executor(), options_for("http://[::1]:8080/prefix/")));
}

SCENARIO("the provider announces a final state with a signed webhook") {
    TempDir dir;
    IoThreads io;
    namespace beast = boost::beast;
    boost::asio::io_context receiver_io;
    boost::asio::ip::tcp::acceptor receiver(receiver_io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    Psp psp(dir.file("ledger.db"));
    psp.start();
    psp::WebhookSender sender({"http://127.0.0.1:" + std::to_string(receiver.local_endpoint().port()) + "/webhooks/psp",
                               "whsec_test"},
                              [&psp] { return psp.now_ms.load(); });
    psp.provider->on_final_state([&sender](psp::Intent const& intent) { sender.announce(intent); });
    auto gateway = a_gateway(io, options_for(psp.url()));
    WHEN("a charge succeeds") {
        auto const answer = charge(*gateway, a_charge("k_hook", "pm_card_ok"));
        // Accepting blocks until the sender connects: no sleep.
        boost::asio::ip::tcp::socket socket = receiver.accept();
        beast::flat_buffer buffer;
        beast::http::request<beast::http::string_body> event;
        beast::http::read(socket, buffer, event);
        beast::http::response<beast::http::string_body> ok{beast::http::status::ok, 11};
        ok.prepare_payload();
        beast::http::write(socket, ok);
        THEN("a payment_intent.succeeded event names the key, and its signature is HMAC-SHA256 over t.payload") {
            CHECK(event.target() == "/webhooks/psp");
            auto const body = boost::json::parse(event.body()).as_object();
            CHECK(body.at("type").as_string() == "payment_intent.succeeded");
            auto const& intent = body.at("data").at("object");
            CHECK(intent.at("id").as_string() == answer.reference);
            CHECK(intent.at("metadata").at("gateway_key").as_string() == "k_hook");
            std::string const header(event["Stripe-Signature"]);
            std::int64_t const t = psp.now_ms / 1000;
            CHECK(header == psp::stripe_signature("whsec_test", t, event.body()));
            CHECK(header.starts_with("t=" + std::to_string(t) + ",v1="));
            CHECK(header != psp::stripe_signature("whsec_other", t, event.body()));
        }
    }
}
