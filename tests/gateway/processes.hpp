#pragma once
// The real binaries as child processes: payments-psp (killed and restarted on
// the same ledger and port) and payments-server (its JSON log read line by
// line, so that a test waits for what the server says, never for a time),
// and a plain HTTP/1.1 client for both. Defined in processes.cpp, compiled
// once: the Beast exchanges are the costly part of these tests' build.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <utility>
#include <vector>

namespace test {

// payments-psp as a child process; its first stdout line names the port.
// `port` 0 takes an ephemeral one; a restart passes the old one again.
struct PspProcess {
    pid_t pid = -1;
    std::uint16_t port = 0;

    explicit PspProcess(std::string const& ledger, std::uint16_t at = 0, std::vector<std::string> flags = {});
    // SIGKILL: the ledger must hold what was answered, with no chance to flush.
    void kill();
    ~PspProcess() { kill(); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

/// An HTTP answer: its status and body.
struct HttpReply {
    unsigned status = 0;
    std::string body;
    boost::json::value json() const;
};

// A keep-alive HTTP connection to 127.0.0.1:port. Every read and write is
// bounded by a 30 s guard that fails the test (never a way to wait): async
// Beast operations on a private io_context, run to completion one at a time.
class HttpConnection {
public:
    explicit HttpConnection(std::uint16_t port);

    HttpReply call(boost::beast::http::verb verb, std::string target, std::string body = {},
                   std::vector<std::pair<std::string, std::string>> headers = {});

private:
    boost::asio::io_context io_;
    boost::beast::tcp_stream stream_;
    boost::beast::flat_buffer buffer_;
};

// A one-request HTTP listener on an ephemeral loopback port (a webhook
// endpoint, say): wait() returns the body of the first request it receives.
class OneRequestListener {
public:
    OneRequestListener();
    std::string url(std::string const& path) const;
    /// The first request's body, answered 200; nullopt if none came within `limit`.
    std::optional<std::string> wait(std::chrono::seconds limit = std::chrono::seconds(30));

private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::acceptor acceptor_;
};

HttpReply http_call(std::uint16_t port, boost::beast::http::verb verb, std::string target, std::string body = {});

/// The value of a series in Prometheus text (`name` with its labels), or -1.
double series_value(std::string const& text, std::string const& name);

/// payments-server as a child process with the given flags, on an ephemeral
/// port. Its stderr (the JSON log) is read by a thread of ours, so that a
/// test can wait until the server has said something.
class ServerProcess {
public:
    explicit ServerProcess(std::vector<std::string> flags);
    ~ServerProcess() { kill_and_join(); }

    /// Waits until one of the log lines so far, or one still to come, makes
    /// `seen` true; false if none does within `limit` or the server exits.
    bool wait_for_line(std::function<bool(boost::json::object const&)> const& seen,
                       std::chrono::seconds limit = std::chrono::seconds(30));

    /// SIGTERM, and the exit status once the server has drained and stopped.
    int terminate();

    std::string log_text();

    std::uint16_t port = 0;

private:
    void kill_and_join();
    void read_log(int fd);

    pid_t pid_ = -1;
    std::thread reader_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<boost::json::object> lines_; // Owned by: mutex_
    std::string raw_;                         // Owned by: mutex_
    bool ended_ = false;                      // Owned by: mutex_; the server closed its stderr
};

} // namespace test
