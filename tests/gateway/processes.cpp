#include "processes.hpp"

#include <boost/asio/connect.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test {

namespace {

// Starts `argv[0]` with its `stream_fd` (stdout or stderr) on a pipe; returns
// the child's pid and the pipe's reading end. The child runs only
// async-signal-safe calls before exec (the test has threads).
std::pair<pid_t, int> spawn(std::vector<std::string> const& args, int stream_fd) {
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

} // namespace

PspProcess::PspProcess(std::string const& ledger, std::uint16_t at, std::vector<std::string> flags) {
    std::vector<std::string> args = {PAYMENTS_PSP_PATH, "--port", std::to_string(at), "--ledger", ledger,
                                     "--threads", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto [child, out] = spawn(args, STDOUT_FILENO);
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

void PspProcess::kill() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
}

boost::json::value HttpReply::json() const { return boost::json::parse(body); }

HttpConnection::HttpConnection(std::uint16_t port) : stream_(io_) {
    stream_.connect(boost::asio::ip::tcp::endpoint{boost::asio::ip::make_address("127.0.0.1"), port});
}

HttpReply HttpConnection::call(boost::beast::http::verb verb, std::string target, std::string body,
                               std::vector<std::pair<std::string, std::string>> headers) {
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

OneRequestListener::OneRequestListener() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}

std::string OneRequestListener::url(std::string const& path) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + path;
}

std::optional<std::string> OneRequestListener::wait(std::chrono::seconds limit) {
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

HttpReply http_call(std::uint16_t port, boost::beast::http::verb verb, std::string target, std::string body) {
    return HttpConnection(port).call(verb, std::move(target), std::move(body));
}

double series_value(std::string const& text, std::string const& name) {
    auto const at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
}

ServerProcess::ServerProcess(std::vector<std::string> flags) {
    std::vector<std::string> args = {PAYMENTS_SERVER_PATH, "--bind", "127.0.0.1", "--port", "0",
                                     "--log-level", "info"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto [child, err] = spawn(args, STDERR_FILENO);
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

bool ServerProcess::wait_for_line(std::function<bool(boost::json::object const&)> const& seen,
                                  std::chrono::seconds limit) {
    std::unique_lock lock(mutex_);
    std::size_t checked = 0;
    bool found = false;
    changed_.wait_for(lock, limit, [&] {
        for (; checked < lines_.size() && !found; ++checked) found = seen(lines_[checked]);
        return found || ended_;
    });
    return found;
}

int ServerProcess::terminate() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    reader_.join();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ServerProcess::log_text() {
    std::lock_guard lock(mutex_);
    return raw_;
}

void ServerProcess::kill_and_join() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    if (reader_.joinable()) reader_.join(); // the pipe ends when the server does
}

void ServerProcess::read_log(int fd) {
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

} // namespace test
