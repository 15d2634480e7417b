#pragma once
// The real binaries as child processes: payments-psp (killed and restarted on
// the same ledger and port) and payments-server (its JSON log read line by
// line, so that a test waits for what the server says, never for a time),
// and a plain HTTP/1.1 client for both.

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace test {

namespace process_detail {

// Starts `argv[0]` with its `stream_fd` (stdout or stderr) on a pipe; returns
// the child's pid and the pipe's reading end. The child runs only
// async-signal-safe calls before exec (the test has threads).
inline std::pair<pid_t, int> spawn(std::vector<std::string> const& args, int stream_fd) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0); // no other child inherits either end
    std::vector<char*> argv;
    for (auto const& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t const pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(out[1], stream_fd); // dup2 clears close-on-exec on the copy
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    return {pid, out[0]};
}

} // namespace process_detail

// payments-psp as a child process; its first stdout line names the port.
// `port` 0 takes an ephemeral one; a restart passes the old one again.
struct PspProcess {
    pid_t pid = -1;
    std::uint16_t port = 0;

    explicit PspProcess(std::string const& ledger, std::uint16_t at = 0, std::vector<std::string> flags = {}) {
        std::vector<std::string> args = {PAYMENTS_PSP_PATH, "--port", std::to_string(at), "--ledger", ledger,
                                         "--threads", "2"};
        args.insert(args.end(), flags.begin(), flags.end());
        auto [child, out] = process_detail::spawn(args, STDOUT_FILENO);
        pid = child;
        std::FILE* stream = ::fdopen(out, "r");
        char line[256] = {};
        // Blocks until the child prints its port or exits (EOF): no sleep.
        bool const started = std::fgets(line, sizeof line, stream) != nullptr;
        std::fclose(stream);
        REQUIRE_MESSAGE(started, "payments-psp did not start");
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

/// An HTTP answer: its status and body.
struct HttpReply {
    unsigned status = 0;
    std::string body;
    boost::json::value json() const { return boost::json::parse(body); }
};

// A keep-alive HTTP connection to 127.0.0.1:port. Every read and write is
// bounded by a 30 s guard that fails the test (never a way to wait): async
// Beast operations on a private io_context, run to completion one at a time.
class HttpConnection {
public:
    explicit HttpConnection(std::uint16_t port) : stream_(io_) {
        stream_.connect(boost::asio::ip::tcp::endpoint{boost::asio::ip::make_address("127.0.0.1"), port});
    }

    HttpReply call(boost::beast::http::verb verb, std::string target, std::string body = {},
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
        namespace http = boost::beast::http;
        http::request<http::string_body> request{verb, target, 11};
        request.set(http::field::host, "127.0.0.1");
        if (!body.empty()) request.set(http::field::content_type, "application/json");
        for (auto const& [name, value] : headers) request.set(name, value);
        request.body() = std::move(body);
        request.prepare_payload();
        http::response<http::string_body> response;
        boost::beast::error_code failed;
        stream_.expires_after(std::chrono::seconds(30));
        http::async_write(stream_, request, [&](boost::beast::error_code ec, std::size_t) {
            if (ec) failed = ec;
            else http::async_read(stream_, buffer_, response, [&](boost::beast::error_code e, std::size_t) { failed = e; });
        });
        io_.restart();
        io_.run();
        if (failed) throw boost::system::system_error(failed, "HTTP " + std::string(target));
        return {response.result_int(), std::move(response.body())};
    }

private:
    boost::asio::io_context io_;
    boost::beast::tcp_stream stream_;
    boost::beast::flat_buffer buffer_;
};

// A one-request HTTP listener on an ephemeral loopback port (a webhook
// endpoint, say): wait() returns the body of the first request it receives.
class OneRequestListener {
public:
    OneRequestListener() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}
    std::string url(std::string const& path) const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + path;
    }
    /// The first request's body, answered 200; nullopt if none came within `limit`.
    std::optional<std::string> wait(std::chrono::seconds limit = std::chrono::seconds(30)) {
        namespace http = boost::beast::http;
        std::optional<std::string> body;
        boost::asio::ip::tcp::socket socket(io_);
        std::optional<boost::beast::tcp_stream> stream;
        boost::beast::flat_buffer buffer;
        http::request<http::string_body> request;
        http::response<http::empty_body> ok{http::status::ok, 11};
        acceptor_.async_accept(socket, [&](boost::beast::error_code ec) {
            if (ec) return;
            stream.emplace(std::move(socket));
            http::async_read(*stream, buffer, request, [&](boost::beast::error_code e, std::size_t) {
                if (e) return;
                body = request.body();
                ok.keep_alive(false);
                http::async_write(*stream, ok, [](boost::beast::error_code, std::size_t) {});
            });
        });
        io_.restart();
        io_.run_for(limit); // returns as soon as the exchange is done
        return body;
    }

private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::acceptor acceptor_;
};

inline HttpReply http_call(std::uint16_t port, boost::beast::http::verb verb, std::string target,
                           std::string body = {}) {
    return HttpConnection(port).call(verb, std::move(target), std::move(body));
}

/// The value of a series in Prometheus text (`name` with its labels), or -1.
inline double series_value(std::string const& text, std::string const& name) {
    auto const at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
}

/// payments-server as a child process with the given flags, on an ephemeral
/// port. Its stderr (the JSON log) is read by a thread of ours, so that a
/// test can wait until the server has said something.
class ServerProcess {
public:
    explicit ServerProcess(std::vector<std::string> flags) {
        std::vector<std::string> args = {PAYMENTS_SERVER_PATH, "--bind", "127.0.0.1", "--port", "0",
                                         "--log-level", "info"};
        args.insert(args.end(), flags.begin(), flags.end());
        auto [child, err] = process_detail::spawn(args, STDERR_FILENO);
        pid_ = child;
        reader_ = std::thread([this, err] { read_log(err); });
        boost::json::value listening;
        bool const started = wait_for_line([&](boost::json::object const& line) {
            if (line.at("msg") != "listening") return false;
            listening = line;
            return true;
        });
        if (!started) kill_and_join(); // before REQUIRE throws: a joinable thread must not be destroyed
        REQUIRE_MESSAGE(started, "payments-server did not start:\n" << log_text());
        port = static_cast<std::uint16_t>(listening.at("port").as_int64());
    }
    ~ServerProcess() { kill_and_join(); }

    /// Waits until one of the log lines so far, or one still to come, makes
    /// `seen` true; false if none does within `limit` or the server exits.
    bool wait_for_line(std::function<bool(boost::json::object const&)> const& seen,
                       std::chrono::seconds limit = std::chrono::seconds(30)) {
        std::unique_lock lock(mutex_);
        std::size_t checked = 0;
        bool found = false;
        changed_.wait_for(lock, limit, [&] {
            for (; checked < lines_.size() && !found; ++checked) found = seen(lines_[checked]);
            return found || ended_;
        });
        return found;
    }

    /// SIGTERM, and the exit status once the server has drained and stopped.
    int terminate() {
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        reader_.join();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    std::string log_text() {
        std::lock_guard lock(mutex_);
        return raw_;
    }

    std::uint16_t port = 0;

private:
    void kill_and_join() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
        if (reader_.joinable()) reader_.join(); // the pipe ends when the server does
    }

    void read_log(int fd) {
        std::FILE* stream = ::fdopen(fd, "r");
        char buffer[8192];
        std::string line;
        while (std::fgets(buffer, sizeof buffer, stream)) {
            line += buffer;
            if (line.back() != '\n') continue;
            boost::system::error_code ec;
            auto parsed = boost::json::parse(line, ec);
            std::lock_guard lock(mutex_);
            raw_ += line;
            if (!ec && parsed.is_object()) lines_.push_back(parsed.as_object());
            line.clear();
            changed_.notify_all();
        }
        std::fclose(stream);
        std::lock_guard lock(mutex_);
        ended_ = true;
        changed_.notify_all();
    }

    pid_t pid_ = -1;
    std::thread reader_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<boost::json::object> lines_; // Owned by: mutex_
    std::string raw_;                         // Owned by: mutex_
    bool ended_ = false;                      // Owned by: mutex_; the server closed its stderr
};

} // namespace test
