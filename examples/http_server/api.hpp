#pragma once

#include "webhooks.hpp"

#include <payments/engine.hpp>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace http_server {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Refusal;

/// What /health/ready reports.
enum class Readiness { starting, ready, draining };

/// The HTTP face of the library: routes a request to a use case and maps the
/// outcome to a status and JSON (problem+json for errors). No business rule
/// lives here; the invoice's state machine answers for itself.
class Api {
public:
    /// `admin_token`: the bearer token of the operator's routes (/admin/...);
    /// empty turns them off (404). `webhooks`: POST /webhooks/psp, off (404)
    /// without a secret.
    Api(payments::Engine& engine, std::atomic<Readiness> const& readiness, std::string admin_token = {},
        WebhookOptions webhooks = {});

    /// Where handle() sends a request's response, exactly once.
    using Answer = std::function<void(Response)>;
    /// Runs a handler's `work` where it may wait for the store's reads (the
    /// server: on its handler threads, off the I/O threads).
    using Offload = std::function<void(std::function<void()>)>;

    /// Answers `request` through `done`: at once for what is refused before
    /// routing, else from a handler run through `offload`. A command (create,
    /// pay) does not wait there for its commit: it is answered from the use
    /// case's continuation once the commit is durable (on the engine's
    /// threads), or at once when refused early. `request` must live until
    /// `done` is called.
    void handle(Request const& request, Offload const& offload, Answer done);

    /// handle() on the caller's thread, waiting for a command's commit: tests
    /// and the fuzzer. The engine's threads must run (they answer commands),
    /// and the caller must not be one of them. Throws std::future_error if the
    /// reply was dropped (the engine destroyed first).
    Response handle(Request const& request);

    /// Every route as "METHOD /path/{param}", for the OpenAPI consistency test.
    static std::vector<std::string> routes();

    /// The answer to a request refused before routing (limits, framing,
    /// malformed HTTP, overload), logged and counted under the route
    /// "unmatched" like any other; it closes the connection. `header` is what
    /// was parsed of the request, if anything.
    Response refuse(Refusal const& refusal, http::request_header<> const* header);

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace http_server
