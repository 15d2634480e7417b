// A COMMIT whose reply never arrives (the connection cut after the server got
// it, or before): the PostgreSQL store asks the database what happened rather
// than answering "nothing kept" (issue 15, review finding 2). A TCP proxy in
// front of the test server cuts the writer's connection at the COMMIT.
#include "support/builders.hpp"
#include "support/postgres.hpp"

#include <payments/infrastructure/store/postgres_store.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

using namespace test;
using application::Changes;
using infrastructure::PostgresStore;

namespace {

// Forwards 127.0.0.1:port() to the test server; once armed, the first session
// that sends a COMMIT is cut before it is forwarded, or after the server
// answered it (the answer dropped).
class CuttingProxy {
public:
    enum class Cut { none, before_commit, after_commit };

    explicit CuttingProxy(int upstream) : upstream_(upstream) {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(listener_, 16) == 0);
        socklen_t length = sizeof address;
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    CuttingProxy(CuttingProxy const&) = delete;
    CuttingProxy& operator=(CuttingProxy const&) = delete;
    ~CuttingProxy() {
        ::shutdown(listener_, SHUT_RDWR);
        acceptor_.join();
        ::close(listener_);
        {
            std::lock_guard guard(mutex_);
            for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
        }
        for (auto& t : pumps_) t.join();
    }

    int port() const { return port_; }
    void arm(Cut cut) { cut_ = cut; }
    bool fired() const { return fired_; }

private:
    void accept_loop() {
        for (;;) {
            int const client = ::accept(listener_, nullptr, nullptr);
            if (client < 0) return;
            int const server = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in address{};
            address.sin_family = AF_INET;
            address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            address.sin_port = htons(static_cast<std::uint16_t>(upstream_));
            if (::connect(server, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
                ::close(client);
                ::close(server);
                continue;
            }
            std::lock_guard guard(mutex_);
            open_.push_back(client);
            open_.push_back(server);
            pumps_.emplace_back([this, client, server] { pump(client, server); });
        }
    }

    static bool has(std::string const& text, std::string_view what) { return text.find(what) != std::string::npos; }

    void pump(int client, int server) {
        char buffer[65536];
        for (;;) {
            pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
            if (::poll(fds, 2, -1) < 0) break;
            if (fds[0].revents) {
                ssize_t const n = ::read(client, buffer, sizeof buffer);
                if (n <= 0) break;
                std::string const chunk(buffer, static_cast<std::size_t>(n));
                Cut cut = cut_;
                if (cut != Cut::none && has(chunk, "COMMIT") && cut_.compare_exchange_strong(cut, Cut::none)) {
                    if (cut == Cut::after_commit) {
                        if (::write(server, buffer, static_cast<std::size_t>(n)) != n) break;
                        // Wait for the server's "COMMIT" command tag, and drop it.
                        std::string answer;
                        while (!has(answer, "COMMIT")) {
                            pollfd wait{server, POLLIN, 0};
                            if (::poll(&wait, 1, 5000) <= 0) break;
                            ssize_t const m = ::read(server, buffer, sizeof buffer);
                            if (m <= 0) break;
                            answer.append(buffer, static_cast<std::size_t>(m));
                        }
                    }
                    fired_ = true;
                    break;
                }
                if (::write(server, buffer, static_cast<std::size_t>(n)) != n) break;
            }
            if (fds[1].revents) {
                ssize_t const n = ::read(server, buffer, sizeof buffer);
                if (n <= 0) break;
                if (::write(client, buffer, static_cast<std::size_t>(n)) != n) break;
            }
        }
        ::shutdown(client, SHUT_RDWR);
        ::shutdown(server, SHUT_RDWR);
    }

    int upstream_;
    int listener_ = -1;
    int port_ = 0;
    std::atomic<Cut> cut_{Cut::none};
    std::atomic<bool> fired_{false};
    std::thread acceptor_;
    std::mutex mutex_;
    std::vector<int> open_;            // Owned by: mutex_ (closed by the OS at exit; shut down by the destructor)
    std::vector<std::thread> pumps_;   // Owned by: mutex_
};

} // namespace

SCENARIO("a PostgreSQL COMMIT whose reply is lost is answered from the database: kept when it happened") {
    auto uri = test_postgres_uri();
    if (!uri) return;
    TestSchema schema(*uri);
    // postgresql://user@host:PORT/db → the same through the proxy.
    std::string const& u = *uri;
    auto const colon = u.find(':', u.find('@'));
    auto const slash = u.find('/', colon);
    CuttingProxy proxy(std::stoi(u.substr(colon + 1, slash - colon - 1)));
    auto options = schema.options();
    options.uri = u.substr(0, colon + 1) + std::to_string(proxy.port()) + u.substr(slash);
    auto store = open_store(options);
    auto direct = open_store(schema.options());
    Invoice const invoice = an_invoice();
    GIVEN("the writer's connection cut once the server has answered the COMMIT, before the answer arrives") {
        proxy.arm(CuttingProxy::Cut::after_commit);
        auto const committed = store->commit({Changes::InvoiceWrite{invoice, 0}, {}});
        THEN("the commit is answered as kept, and it is; the store goes on") {
            REQUIRE(proxy.fired());
            CHECK_MESSAGE(committed, (committed ? "" : committed.error().detail));
            CHECK(direct->invoice(invoice.id()) == invoice);
            Invoice other = Invoice::from(Invoice::create(iid("inv_other"), usd(5), "", meta()).value());
            CHECK(store->commit({Changes::InvoiceWrite{other, 0}, {}}));
        }
    }
    GIVEN("the writer's connection cut before the COMMIT leaves") {
        proxy.arm(CuttingProxy::Cut::before_commit);
        auto const committed = store->commit({Changes::InvoiceWrite{invoice, 0}, {}});
        THEN("the commit is answered storage_unavailable, and nothing of it is kept") {
            REQUIRE(proxy.fired());
            REQUIRE_FALSE(committed);
            CHECK(committed.error().code == ErrorCode::storage_unavailable);
            CHECK_FALSE(direct->invoice(invoice.id()));
        }
    }
    store->close();
}
