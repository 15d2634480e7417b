#include "api.hpp"

#include <payments/infrastructure/seeded_random.hpp>
#include <payments/infrastructure/time_format.hpp>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

namespace http_server {

namespace json = boost::json;
using namespace payments;
using namespace payments::domain;
using payments::infrastructure::format_rfc3339;

namespace {

// What a handler answers, before the common headers are added.
struct Reply {
    http::status status = http::status::ok;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
};

Reply json_reply(http::status status, json::value const& value) { return {status, json::serialize(value), "application/json", {}}; }

Reply problem_reply(http::status status, std::string_view code, std::string_view detail) {
    json::object body{{"type", "/problems/" + std::string(code)},
                      {"title", std::string(http::obsolete_reason(status))},
                      {"status", static_cast<int>(status)},
                      {"detail", detail},
                      {"code", code}};
    return {status, json::serialize(body), "application/problem+json", {}};
}

// The one ErrorCode → HTTP table.
Reply from_error(Error const& error) {
    struct Mapping {
        http::status status;
        std::string_view code;
    };
    auto const m = [&]() -> Mapping {
        switch (error.code) {
        case ErrorCode::invalid_argument: return {http::status::bad_request, "invalid_argument"};
        case ErrorCode::invalid_amount: return {http::status::bad_request, "invalid_amount"};
        case ErrorCode::unknown_currency: return {http::status::bad_request, "unknown_currency"};
        case ErrorCode::currency_mismatch: return {http::status::bad_request, "currency_mismatch"};
        case ErrorCode::overflow: return {http::status::bad_request, "overflow"};
        case ErrorCode::invalid_state: return {http::status::conflict, "invalid_state"};
        case ErrorCode::not_found: return {http::status::not_found, "not_found"};
        case ErrorCode::already_exists: return {http::status::conflict, "invoice_exists"};
        case ErrorCode::invoice_already_paid: return {http::status::conflict, "invoice_already_paid"};
        case ErrorCode::payment_in_progress: return {http::status::conflict, "payment_in_progress"};
        case ErrorCode::stale_attempt: return {http::status::conflict, "stale_attempt"};
        case ErrorCode::conflict: return {http::status::conflict, "conflict"};
        case ErrorCode::idempotency_key_reused: return {http::status::unprocessable_entity, "idempotency_key_reused"};
        case ErrorCode::idempotency_key_in_use: return {http::status::conflict, "idempotency_key_in_use"};
        case ErrorCode::unavailable: return {http::status::service_unavailable, "unavailable"};
        }
        return {http::status::internal_server_error, "internal"};
    }();
    return problem_reply(m.status, m.code, error.detail);
}

json::value failure_json(std::optional<Failure> const& failure) {
    if (!failure) return nullptr;
    return json::object{{"kind", to_string(failure->kind)}, {"reason", failure->reason}};
}

json::value invoice_json(Invoice const& i, Timestamp now) {
    json::value next_retry = nullptr;
    if (i.next_retry_at() && *i.next_retry_at() > now) next_retry = json::string(format_rfc3339(*i.next_retry_at()));
    return json::object{{"id", i.id().str()},
                        {"amount", i.amount().minor_units()},
                        {"currency", i.amount().currency().code()},
                        {"description", i.description()},
                        {"status", to_string(i.status())},
                        {"attempts", i.current_attempt()},
                        {"next_retry_at", next_retry},
                        {"last_failure", failure_json(i.last_failure())},
                        {"created_at", format_rfc3339(i.created_at())},
                        {"updated_at", format_rfc3339(i.updated_at())}};
}

json::value payment_json(Payment const& p) {
    return json::object{{"id", p.id().str()},
                        {"invoice_id", p.invoice_id().str()},
                        {"attempt", p.attempt()},
                        {"amount", p.amount().minor_units()},
                        {"currency", p.amount().currency().code()},
                        {"payment_method", p.payment_method().empty() ? json::value(nullptr) : json::value(p.payment_method())},
                        {"status", to_string(p.status())},
                        {"failure", failure_json(p.failure())},
                        {"gateway_reference",
                         p.gateway_reference().empty() ? json::value(nullptr) : json::value(p.gateway_reference())},
                        {"created_at", format_rfc3339(p.created_at())},
                        {"updated_at", format_rfc3339(p.updated_at())}};
}

// The parts of a request a handler needs.
struct Call {
    Request const& request;
    std::vector<std::string> params; // path parameters, in order
    boost::urls::params_view query;
    CorrelationId correlation_id;
};

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

bool is_json(Request const& request) {
    std::string_view type = request[http::field::content_type];
    type = type.substr(0, type.find(';'));
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    std::string lower(type);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    return lower == "application/json";
}

// The request's JSON object body, or the problem with it.
std::variant<json::object, Reply> json_body(Request const& request, std::initializer_list<std::string_view> allowed,
                                            bool required) {
    if (request.body().empty()) {
        if (required) return problem_reply(http::status::bad_request, "malformed_json", "a JSON object body is required");
        return json::object{};
    }
    if (!is_json(request))
        return problem_reply(http::status::unsupported_media_type, "unsupported_media_type",
                             "the body must be application/json");
    boost::system::error_code ec;
    json::value value = json::parse(request.body(), ec);
    if (ec) return problem_reply(http::status::bad_request, "malformed_json", "the body is not valid JSON: " + ec.message());
    if (!value.is_object()) return problem_reply(http::status::bad_request, "malformed_json", "the body must be a JSON object");
    for (auto const& [key, unused] : value.as_object())
        if (std::find(allowed.begin(), allowed.end(), std::string_view(key)) == allowed.end())
            return problem_reply(http::status::bad_request, "unknown_field",
                                 "unknown field '" + std::string(key) + "'");
    return std::move(value.as_object());
}

// An optional string field.
std::variant<std::string, Reply> string_field(json::object const& body, std::string_view name, std::string fallback) {
    auto const* v = body.if_contains(name);
    if (v == nullptr || v->is_null()) return fallback;
    if (!v->is_string())
        return problem_reply(http::status::bad_request, "invalid_argument", std::string(name) + " must be a string");
    return std::string(v->as_string());
}

} // namespace

struct Api::Impl {
    Impl(Engine& e, std::atomic<Readiness> const& r) : engine(e), readiness(r) {}

    Reply create_invoice(Call& call) {
        auto body = json_body(call.request, {"id", "amount", "currency", "description"}, true);
        if (auto* bad = std::get_if<Reply>(&body)) return std::move(*bad);
        auto const& fields = std::get<json::object>(body);
        auto const* amount = fields.if_contains("amount");
        if (amount == nullptr || !amount->is_int64())
            return problem_reply(http::status::bad_request, "invalid_amount",
                                 "amount must be an integer number of minor units, 1 to 999999999999999");
        auto currency_code = string_field(fields, "currency", "USD");
        if (auto* bad = std::get_if<Reply>(&currency_code)) return std::move(*bad);
        auto currency = Currency::from_code(std::get<std::string>(currency_code));
        if (!currency) return from_error(currency.error());
        auto money = Money::charge(amount->as_int64(), *currency);
        if (!money) return from_error(money.error());
        auto description = string_field(fields, "description", "");
        if (auto* bad = std::get_if<Reply>(&description)) return std::move(*bad);
        application::CreateInvoice command{std::nullopt, *money, std::get<std::string>(description), call.correlation_id};
        if (fields.contains("id")) {
            auto id = string_field(fields, "id", "");
            if (auto* bad = std::get_if<Reply>(&id)) return std::move(*bad);
            auto parsed = InvoiceId::parse(std::get<std::string>(id));
            if (!parsed) return from_error(parsed.error());
            command.id = *parsed;
        }
        auto created = engine.service().create_invoice(std::move(command));
        if (!created) return from_error(created.error());
        Reply reply = json_reply(http::status::created, invoice_json(*created, engine.clock().now()));
        reply.headers.emplace_back("Location", "/invoices/" + std::string(created->id().str()));
        return reply;
    }

    Reply get_invoice(Call& call) {
        auto id = InvoiceId::parse(call.params[0]);
        if (!id) return problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]);
        auto invoice = engine.service().invoice(*id);
        if (!invoice) return from_error(invoice.error());
        return json_reply(http::status::ok, invoice_json(*invoice, engine.clock().now()));
    }

    Reply list_invoices(Call& call) {
        application::InvoiceQuery query;
        for (auto const& param : call.query) {
            if (param.key == "status") {
                auto status = parse_invoice_status(param.value);
                if (!status) return from_error(status.error());
                query.status = *status;
            } else if (param.key == "limit") {
                std::size_t limit = 0;
                auto [end, ec] = std::from_chars(param.value.data(), param.value.data() + param.value.size(), limit);
                if (ec != std::errc() || end != param.value.data() + param.value.size())
                    return problem_reply(http::status::bad_request, "invalid_argument", "limit must be between 1 and 1000");
                query.limit = limit;
            } else if (param.key == "after") {
                auto after = InvoiceId::parse(param.value);
                if (!after) return from_error(after.error());
                query.after = *after;
            }
        }
        auto page = engine.service().invoices(query);
        if (!page) return from_error(page.error());
        json::array data;
        for (Invoice const& invoice : page->data) data.push_back(invoice_json(invoice, engine.clock().now()));
        json::value next = page->next ? json::value(page->next->str()) : json::value(nullptr);
        return json_reply(http::status::ok, json::object{{"data", std::move(data)}, {"next", next}});
    }

    Reply pay(Call& call) {
        auto id = InvoiceId::parse(call.params[0]);
        if (!id) return problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]);
        auto body = json_body(call.request, {"payment_method"}, false);
        if (auto* bad = std::get_if<Reply>(&body)) return std::move(*bad);
        auto method = string_field(std::get<json::object>(body), "payment_method", "");
        if (auto* bad = std::get_if<Reply>(&method)) return std::move(*bad);
        application::RequestPayment command{*id, std::get<std::string>(method), std::nullopt, call.correlation_id};
        if (auto header = call.request.find("Idempotency-Key"); header != call.request.end()) {
            auto key = application::IdempotencyKey::make(std::string(call.request["X-Client-Id"]),
                                                         std::string(header->value()));
            if (!key)
                return problem_reply(http::status::bad_request, "invalid_idempotency_key", key.error().detail);
            command.idempotency_key = *key;
        }
        auto outcome = engine.service().request_payment(command);
        Reply reply = outcome.result ? json_reply(http::status::accepted, payment_json(*outcome.result))
                                     : from_error(outcome.result.error());
        if (outcome.result) reply.headers.emplace_back("Location", "/payments/" + std::string(outcome.result->id().str()));
        if (outcome.replayed) reply.headers.emplace_back("Idempotent-Replayed", "true");
        return reply;
    }

    Reply list_payments(Call& call) {
        auto id = InvoiceId::parse(call.params[0]);
        if (!id) return problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]);
        auto payments = engine.service().payments_of(*id);
        if (!payments) return from_error(payments.error());
        json::array data;
        for (Payment const& p : *payments) data.push_back(payment_json(p));
        return json_reply(http::status::ok, json::object{{"data", std::move(data)}});
    }

    Reply get_payment(Call& call) {
        auto id = PaymentId::parse(call.params[0]);
        if (!id) return problem_reply(http::status::not_found, "not_found", "no payment " + call.params[0]);
        auto payment = engine.service().payment(*id);
        if (!payment) return from_error(payment.error());
        return json_reply(http::status::ok, payment_json(*payment));
    }

    Reply ready(Call&) {
        switch (readiness.load()) {
        case Readiness::ready: return json_reply(http::status::ok, json::object{{"status", "ready"}});
        case Readiness::starting: return json_reply(http::status::service_unavailable, json::object{{"status", "starting"}});
        case Readiness::draining: return json_reply(http::status::service_unavailable, json::object{{"status", "draining"}});
        }
        return json_reply(http::status::service_unavailable, json::object{{"status", "unknown"}});
    }

    Reply metrics(Call&) { return {http::status::ok, engine.metrics().render(), "text/plain; version=0.0.4", {}}; }

    Reply health(Call&) { return json_reply(http::status::ok, json::object{{"status", "ok"}}); }

    // Routes the request; `route` is set to the matched pattern for metrics and logs.
    Reply dispatch(Request const& request, CorrelationId const& correlation_id, std::string_view& route) {
        auto target = boost::urls::parse_origin_form(request.target());
        if (!target) return problem_reply(http::status::bad_request, "bad_request", "the request target is not a valid path");
        std::vector<std::string> segments;
        for (auto segment : target->segments()) segments.push_back(segment);
        std::string allow;
        for (Route const& r : route_table) {
            std::vector<std::string> params;
            if (!matches(r.pattern, segments, params)) continue;
            if (r.method != request.method()) {
                allow += (allow.empty() ? "" : ", ") + std::string(http::to_string(r.method));
                continue;
            }
            route = r.pattern;
            Call call{request, std::move(params), target->params(), correlation_id};
            return (this->*r.handler)(call);
        }
        if (!allow.empty()) {
            Reply reply = problem_reply(http::status::method_not_allowed, "method_not_allowed",
                                        "allowed: " + allow);
            reply.headers.emplace_back("Allow", allow);
            return reply;
        }
        return problem_reply(http::status::not_found, "route_not_found", "no route for this path");
    }

    CorrelationId request_id(Request const& request) {
        auto given = CorrelationId::parse(request["X-Request-Id"]);
        return given ? *given : CorrelationId::generate(ids);
    }

    // The metric series of one (route, method, status), registered on first use.
    struct Series {
        infrastructure::Counter* requests;
        infrastructure::Histogram* duration;
    };

    // A map lookup under a short lock, instead of the registry's lookup by
    // name and labels on every request.
    Series series(std::string_view route, http::verb method, unsigned status) {
        std::lock_guard lock(series_mutex);
        auto [it, inserted] = series_by_key.try_emplace({route, method, status});
        if (inserted) {
            auto& registry = engine.metrics();
            std::string const method_name(http::to_string(method));
            it->second.requests = &registry.counter("http_requests_total", "HTTP requests by route, method and status",
                                                    {{"route", std::string(route)},
                                                     {"method", method_name},
                                                     {"status", std::to_string(status)}});
            it->second.duration = &registry.histogram("http_request_duration_seconds", "HTTP request latency by route",
                                                      infrastructure::latency_buckets(), {{"route", std::string(route)}});
        }
        return it->second;
    }

    Engine& engine;
    std::atomic<Readiness> const& readiness;
    infrastructure::SeededRandom ids{infrastructure::SeededRandom::entropy_seed()};
    std::mutex series_mutex;
    std::map<std::tuple<std::string_view, http::verb, unsigned>, Series> series_by_key; // Owned by: series_mutex

    // One route: method, path pattern ("/invoices/{id}/pay") and handler.
    struct Route {
        http::verb method;
        std::string_view pattern;
        Reply (Impl::*handler)(Call&);
    };
    static Route const route_table[10];
};

Api::Impl::Route const Api::Impl::route_table[10] = {
    {http::verb::post, "/invoices", &Impl::create_invoice},
    {http::verb::get, "/invoices", &Impl::list_invoices},
    {http::verb::get, "/invoices/{id}", &Impl::get_invoice},
    {http::verb::post, "/invoices/{id}/pay", &Impl::pay},
    {http::verb::get, "/invoices/{id}/payments", &Impl::list_payments},
    {http::verb::get, "/payments/{id}", &Impl::get_payment},
    {http::verb::get, "/health", &Impl::health},
    {http::verb::get, "/health/live", &Impl::health},
    {http::verb::get, "/health/ready", &Impl::ready},
    {http::verb::get, "/metrics", &Impl::metrics},
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
    auto const series = impl_->series(route, request.method(), static_cast<unsigned>(reply.status));
    series.requests->inc();
    series.duration->observe(seconds);
    impl_->engine.logger().info("http request", {{"method", http::to_string(request.method())},
                                                 {"route", route},
                                                 {"status", static_cast<std::int64_t>(reply.status)},
                                                 {"duration_us", static_cast<std::int64_t>(seconds * 1e6)},
                                                 {"request_id", id.str()}});
    return response;
}

std::vector<std::string> Api::routes() {
    std::vector<std::string> names;
    for (Impl::Route const& r : Impl::route_table) names.push_back(std::string(http::to_string(r.method)) + " " + std::string(r.pattern));
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
