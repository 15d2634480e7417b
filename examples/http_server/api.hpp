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
    /// What a handler is about to do, for Offload to choose its thread.
    enum class Work {
        may_wait, ///< reads of the store, the operator's commands: they wait for the store
        command,  ///< create, pay: reads and decides, then goes on while its commit is made durable
    };
    /// Runs a handler's `work` where that kind may run (the server: on its
    /// handler threads what may wait; on the I/O thread, or not, a command).
    using Offload = std::function<void(Work, std::function<void()>)>;

    /// Answers `request` through `done`: at once for what is refused before
    /// routing, through `offload` for a handler that may wait, and from the
    /// use case's continuation for a command (create, pay: on the engine's
    /// threads once its commit is durable; nothing waits for it). `request`
    /// must live until `done` is called.
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
