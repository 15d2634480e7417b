#include "api.hpp"

#include "errors.hpp"
#include "http_metrics.hpp"
#include "routes.hpp"

#include <payments/infrastructure/seeded_random.hpp>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <chrono>

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

} // namespace

struct Api::Impl {
    Impl(Engine& e, std::atomic<Readiness> const& r) : context{e, r}, metrics(e.metrics()) {}

    // Routes the request; `route` is set to the matched pattern for metrics and logs.
    Reply dispatch(Request const& request, CorrelationId const& correlation_id, std::string_view& route) {
        auto target = boost::urls::parse_origin_form(request.target());
        if (!target) return problem_reply(http::status::bad_request, "bad_request", "the request target is not a valid path");
        std::vector<std::string> segments;
        for (auto segment : target->segments()) segments.push_back(segment);
        std::string allow;
        for (Route const& r : route_table()) {
            std::vector<std::string> params;
            if (!matches(r.pattern, segments, params)) continue;
            if (r.method != request.method()) {
                allow += (allow.empty() ? "" : ", ") + std::string(http::to_string(r.method));
                continue;
            }
            route = r.pattern;
            Call call{request, std::move(params), target->params(), correlation_id};
            return r.handler(context, call);
        }
        if (!allow.empty()) {
            Reply reply = problem_reply(http::status::method_not_allowed, "method_not_allowed", "allowed: " + allow);
            reply.headers.emplace_back("Allow", allow);
            return reply;
        }
        return problem_reply(http::status::not_found, "route_not_found", "no route for this path");
    }

    CorrelationId request_id(Request const& request) {
        auto given = CorrelationId::parse(request["X-Request-Id"]);
        return given ? *given : CorrelationId::generate(ids);
    }

    Context context;
    HttpMetrics metrics;
    infrastructure::SeededRandom ids{infrastructure::SeededRandom::entropy_seed()};
};

Api::Api(Engine& engine, std::atomic<Readiness> const& readiness) : impl_(std::make_shared<Impl>(engine, readiness)) {}

Response Api::handle(Request const& request) {
    auto const started = std::chrono::steady_clock::now();
    CorrelationId const id = impl_->request_id(request);
    std::string_view route = "unmatched"; // a route pattern or this literal: static storage
    Reply reply = impl_->dispatch(request, id, route);

    Response response{reply.status, request.version()};
    response.set(http::field::content_type, reply.content_type);
    response.set("X-Request-Id", id.str());
    for (auto& [name, value] : reply.headers) response.set(name, value);
    response.keep_alive(request.keep_alive());
    response.body() = std::move(reply.body);
    response.prepare_payload();

    double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    impl_->metrics.record(route, request.method(), static_cast<unsigned>(reply.status), seconds);
    impl_->context.engine.logger().info("http request", {{"method", http::to_string(request.method())},
                                                         {"route", route},
                                                         {"status", static_cast<std::int64_t>(reply.status)},
                                                         {"duration_us", static_cast<std::int64_t>(seconds * 1e6)},
                                                         {"request_id", id.str()}});
    return response;
}

std::vector<std::string> Api::routes() {
    std::vector<std::string> names;
    for (Route const& r : route_table()) names.push_back(std::string(http::to_string(r.method)) + " " + std::string(r.pattern));
    return names;
}

Response Api::problem(http::status status, std::string_view code, std::string_view detail, unsigned version) {
    Reply reply = problem_reply(status, code, detail);
    Response response{status, version};
    response.set(http::field::content_type, reply.content_type);
    response.keep_alive(false);
    response.body() = std::move(reply.body);
    response.prepare_payload();
    return response;
}

} // namespace http_server
