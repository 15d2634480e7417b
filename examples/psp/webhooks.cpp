#include "webhooks.hpp"

#include "awaitable.hpp"
#include "routes.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <iostream>
#include <thread>

namespace psp {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::string stripe_signature(std::string const& secret, std::int64_t t, std::string const& payload) {
    std::string const signed_payload = std::to_string(t) + "." + payload;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<unsigned char const*>(signed_payload.data()), signed_payload.size(), digest, &length);
    static constexpr char hex[] = "0123456789abcdef";
    std::string text = "t=" + std::to_string(t) + ",v1=";
    for (unsigned i = 0; i < length; ++i) {
        text += hex[digest[i] >> 4];
        text += hex[digest[i] & 15];
    }
    return text;
}

struct WebhookSender::Impl {
    WebhookOptions options;
    std::function<std::int64_t()> now_ms;
    std::string host, port, target;
    net::io_context io;
    net::executor_work_guard<net::io_context::executor_type> work = net::make_work_guard(io);
    std::thread thread;
};

namespace {

net::awaitable<void> deliver(WebhookSender::Impl& impl, Intent intent, std::chrono::milliseconds delay) {
    if (delay.count() > 0) {
        net::steady_timer timer(impl.io, delay);
        co_await timer.async_wait(use_tuple);
    }
    std::int64_t const now = impl.now_ms();
    std::string const payload = event_json(intent, now);
    beast::tcp_stream stream(impl.io);
    stream.expires_after(std::chrono::seconds(10));
    net::ip::tcp::resolver resolver(impl.io);
    auto [resolve_error, endpoints] = co_await resolver.async_resolve(impl.host, impl.port, use_tuple);
    if (!resolve_error) {
        auto [connect_error, peer] = co_await stream.async_connect(endpoints, use_tuple);
        if (!connect_error) {
            http::request<http::string_body> req{http::verb::post, impl.target, 11};
            req.set(http::field::host, impl.host);
            req.set(http::field::content_type, "application/json");
            req.set("Stripe-Signature", stripe_signature(impl.options.secret, now / 1000, payload));
            req.body() = payload;
            req.prepare_payload();
            auto [write_error, written] = co_await http::async_write(stream, req, use_tuple);
            beast::flat_buffer buffer;
            http::response<http::string_body> res;
            auto [read_error, read] = co_await http::async_read(stream, buffer, res, use_tuple);
            if (!write_error && !read_error && res.result_int() < 300) co_return;
            std::cerr << "payments-psp: webhook for " << intent.id() << " answered " << res.result_int() << "\n";
            co_return;
        }
    }
    std::cerr << "payments-psp: webhook for " << intent.id() << " not delivered\n";
}

} // namespace

WebhookSender::WebhookSender(WebhookOptions options, std::function<std::int64_t()> now_ms)
    : impl_(std::make_shared<Impl>()) {
    impl_->options = std::move(options);
    impl_->now_ms = std::move(now_ms);
    std::string_view url = impl_->options.url;
    if (!url.starts_with("http://")) throw std::invalid_argument("--webhook-url must be http://host:port/path");
    url.remove_prefix(7);
    auto const slash = url.find('/');
    std::string_view const authority = url.substr(0, slash);
    impl_->target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
    auto const colon = authority.rfind(':');
    impl_->host = std::string(authority.substr(0, colon));
    impl_->port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
    impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

WebhookSender::~WebhookSender() {
    impl_->work.reset();
    impl_->io.stop();
    impl_->thread.join();
}

void WebhookSender::announce(Intent const& intent) {
    // Final when booked and no longer processing; a failure is final at once.
    std::int64_t const final_at = intent.charged ? intent.final_ms : intent.created_ms;
    auto const delay = std::chrono::milliseconds(std::max<std::int64_t>(0, final_at - impl_->now_ms()));
    net::co_spawn(impl_->io, deliver(*impl_, intent, delay), net::detached);
}

} // namespace psp
