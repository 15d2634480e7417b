// The payments-psp binary itself: started as users start it, killed and
// restarted on the same ledger; psp_charges_total survives.

#include "gateway/psp_fixture.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <csignal>
#include <cstdio>
#include <sys/wait.h>
#include <unistd.h>

using namespace test;

namespace {

// payments-psp as a child process; its first stdout line names the port.
struct PspProcess {
    pid_t pid = -1;
    std::uint16_t port = 0;

    explicit PspProcess(std::string const& ledger) {
        int out[2];
        REQUIRE(::pipe(out) == 0);
        pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::dup2(out[1], STDOUT_FILENO);
            ::close(out[0]);
            ::close(out[1]);
            ::execl(PAYMENTS_PSP_PATH, PAYMENTS_PSP_PATH, "--port", "0", "--ledger", ledger.c_str(),
                    static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(out[1]);
        std::FILE* stream = ::fdopen(out[0], "r");
        char line[256] = {};
        // Blocks until the child prints its port or exits (EOF): no sleep.
        bool const started = std::fgets(line, sizeof line, stream) != nullptr;
        std::fclose(stream);
        REQUIRE(started);
        std::string const text = line;
        port = static_cast<std::uint16_t>(std::stoi(text.substr(text.rfind(' ') + 1)));
    }
    // SIGKILL: the ledger must hold what was answered, with no chance to flush.
    void kill() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        pid = -1;
    }
    ~PspProcess() { kill(); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

std::string get_metrics(std::uint16_t port) {
    namespace beast = boost::beast;
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    beast::http::request<beast::http::empty_body> req{beast::http::verb::get, "/metrics", 11};
    req.set(beast::http::field::host, "127.0.0.1");
    beast::http::write(socket, req);
    beast::flat_buffer buffer;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(socket, buffer, res);
    return res.body();
}

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
