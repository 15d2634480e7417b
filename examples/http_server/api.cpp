#include "api.hpp"

#include "errors.hpp"
#include "http_metrics.hpp"
#include "protocol.hpp"
#include "routes.hpp"

#include <payments/infrastructure/system/seeded_random.hpp>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <optional>

namespace http_server {

using namespace payments;
using namespace payments::domain;

namespace {

std::vector<std::string_view> split(std::string_view pattern) {
    std::vector<std::string_view> parts;
    while (!pattern.empty()) {
        pattern.remove_prefix(1);
        auto const slash = pattern.find('/');
        parts.push_back(pattern.substr(0, slash));
        pattern = slash == std::string_view::npos ? std::string_view{} : pattern.substr(slash);
    }
    return parts;
}

bool matches(std::string_view pattern, std::vector<std::string> const& segments, std::vector<std::string>& params) {
    auto const parts = split(pattern);
    if (parts.size() != segments.size()) return false;
    std::vector<std::string> found;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (parts[i].starts_with('{')) found.push_back(segments[i]);
        else if (parts[i] != segments[i]) return false;
    }
    params = std::move(found);
    return true;
}

// The target's path and query: origin-form ("/invoices?limit=5") or
// absolute-form ("http://host/invoices", RFC 9112 §3.2.2).
boost::system::result<boost::urls::url_view> parse_target(std::string_view target) {
    if (target.starts_with('/')) return boost::urls::parse_origin_form(target);
    auto absolute = boost::urls::parse_absolute_uri(target);
    if (absolute && absolute->scheme_id() != boost::urls::scheme::http && absolute->scheme_id() != boost::urls::scheme::https)
        return boost::urls::error::non_canonical; // not http(s)
    return absolute;
}

} // namespace

struct Api::Impl {
    Impl(Engine& e, std::atomic<Readiness> const& r, std::string admin_token, WebhookOptions webhooks)
        : context{e, r, std::move(admin_token), std::move(webhooks)}, metrics(e.metrics()) {
        // Ids are kept for twice the tolerance: a timestamp may be that far ahead as well as behind.
        if (!context.webhooks.secret.empty())
            context.seen_events = std::make_shared<SeenEvents>(context.webhooks.remembered_events,
                                                               2 * context.webhooks.tolerance);
    }

    // What routing found: a route and its call, or an answer (bad target, 404, 405).
    struct Routed {
        Route const* route = nullptr;
        std::optional<Call> call;
        std::optional<Reply> reply;
    };

    // Routes the request.
    Routed route(Request const& request, CorrelationId const& correlation_id) {
        auto target = parse_target(request.target());
        if (!target)
            return {nullptr, std::nullopt,
                    problem_reply(http::status::bad_request, "bad_request", "the request target is not a valid path")};
        std::vector<std::string> segments;
        for (auto segment : target->segments()) segments.push_back(segment);
        // HEAD is GET without the body (RFC 9110 §9.3.2): the same handler answers.
        auto const method = request.method() == http::verb::head ? http::verb::get : request.method();
        std::string allow;
        for (Route const& r : route_table()) {
            std::vector<std::string> params;
            if (!matches(r.pattern, segments, params)) continue;
            if (r.method != method) {
                allow += (allow.empty() ? "" : ", ") + std::string(http::to_string(r.method));
                if (r.method == http::verb::get) allow += ", HEAD";
                continue;
            }
            return {&r, Call{request, std::move(params), target->params(), correlation_id}, std::nullopt};
        }
        if (!allow.empty()) {
            Reply reply = problem_reply(http::status::method_not_allowed, "method_not_allowed", "allowed: " + allow);
            reply.headers.emplace_back("Allow", allow);
            return {nullptr, std::nullopt, std::move(reply)};
        }
        return {nullptr, std::nullopt, problem_reply(http::status::not_found, "route_not_found", "no route for this path")};
    }

    // The response to `request`: headers every answer carries, and no body
    // for HEAD (its Content-Length is the GET's).
    Response respond(Reply reply, http::request_header<> const& request, CorrelationId const& id) {
        Response response{reply.status, request.version()};
        response.set(http::field::content_type, reply.content_type);
        response.set("X-Request-Id", id.str());
        // Every 503 says when to come back, whichever path produced it.
        if (reply.status == http::status::service_unavailable) response.set(http::field::retry_after, "1");
        for (auto& [name, value] : reply.headers) response.set(name, value);
        response.body() = std::move(reply.body);
        response.prepare_payload();
        if (request.method() == http::verb::head) {
            auto const length = response.body().size();
            response.body().clear();
            response.content_length(length);
        }
        return response;
    }

    // The access log line and the metric series of one answered request.
    void record(std::string_view route, http::verb method, http::status status,
                std::chrono::steady_clock::time_point started, CorrelationId const& id) {
        double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        metrics.record(route, method, static_cast<unsigned>(status), seconds);
        context.engine.logger().info("http request", {{"method", method_label(method)},
                                                      {"route", route},
                                                      {"status", static_cast<std::int64_t>(status)},
                                                      {"duration_us", static_cast<std::int64_t>(seconds * 1e6)},
                                                      {"request_id", id.str()}});
    }

    CorrelationId request_id(http::request_header<> const& request) {
        auto given = CorrelationId::parse(request["X-Request-Id"]);
        return given ? *given : CorrelationId::generate(ids);
    }

    Context context;
    HttpMetrics metrics;
    infrastructure::SeededRandom ids{infrastructure::SeededRandom::entropy_seed()};
};

Api::Api(Engine& engine, std::atomic<Readiness> const& readiness, std::string admin_token, WebhookOptions webhooks)
    : impl_(std::make_shared<Impl>(engine, readiness, std::move(admin_token), std::move(webhooks))) {}

namespace {

// What a response needs of its request once the request may be gone.
struct Asked {
    http::request_header<> header; // the start line only: version and method
    bool keep_alive;
    CorrelationId id;
    std::string_view route; // a route pattern or "unmatched": static storage
    std::chrono::steady_clock::time_point started;
};

} // namespace

void Api::handle(Request const& request, Offload const& offload, Answer done) {
    auto asked = std::make_shared<Asked>();
    asked->started = std::chrono::steady_clock::now();
    asked->header.version(request.version());
    // By its text: header::method(verb) throws for a method Beast does not know.
    asked->header.method_string(request.method_string());
    asked->keep_alive = request.keep_alive();
    asked->id = impl_->request_id(request);
    asked->route = "unmatched";
    // The response to the reply, logged and counted: on whichever thread the reply comes.
    auto respond = [impl = impl_, asked, done = std::move(done)](Reply reply) {
        Response response = impl->respond(std::move(reply), asked->header, asked->id);
        response.keep_alive(asked->keep_alive);
        impl->record(asked->route, asked->header.method(), response.result(), asked->started, asked->id);
        done(std::move(response));
    };
    Impl::Routed routed = impl_->route(request, asked->id);
    if (!routed.route) return respond(std::move(*routed.reply));
    asked->route = routed.route->pattern;
    if (auto const command = routed.route->command)
        return offload([impl = impl_, command, call = std::move(*routed.call), respond = std::move(respond)]() mutable {
            command(impl->context, call, std::move(respond));
        });
    offload([impl = impl_, handler = routed.route->handler, call = std::move(*routed.call),
             respond = std::move(respond)]() mutable { respond(handler(impl->context, call)); });
}

Response Api::handle(Request const& request) {
    // Shared with `done`, which may run on an engine thread after get() returned.
    // A `done` destroyed uncalled (a service gone first) breaks the promise:
    // get() then throws instead of waiting for ever.
    auto answered = std::make_shared<std::promise<Response>>();
    auto response = answered->get_future();
    handle(
        request, [](std::function<void()> work) { work(); },
        [answered](Response r) { answered->set_value(std::move(r)); });
    answered.reset();
    return response.get();
}

Response Api::refuse(Refusal const& refusal, http::request_header<> const* header) {
    auto const started = std::chrono::steady_clock::now();
    http::request_header<> const none{};
    http::request_header<> const& request = header != nullptr ? *header : none;
    CorrelationId const id = impl_->request_id(request);
    Response response = impl_->respond(problem_reply(refusal.status, refusal.code, refusal.detail), request, id);
    response.keep_alive(false);
    impl_->record("unmatched", request.method(), response.result(), started, id);
    return response;
}

std::vector<std::string> Api::routes() {
    std::vector<std::string> names;
    for (Route const& r : route_table()) names.push_back(std::string(http::to_string(r.method)) + " " + std::string(r.pattern));
    return names;
}

} // namespace http_server
