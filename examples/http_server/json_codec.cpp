#include "json_codec.hpp"

#include "errors.hpp"

#include <payments/infrastructure/observability/time_format.hpp>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>
#include <vector>

namespace http_server {

namespace json = boost::json;
using namespace payments::domain;
using payments::infrastructure::format_rfc3339;

namespace {

json::value failure_json(std::optional<Failure> const& failure) {
    if (!failure) return nullptr;
    return json::object{{"kind", to_string(failure->kind)}, {"reason", failure->reason}};
}

bool is_json(http::request<http::string_body> const& request) {
    std::string_view type = request[http::field::content_type];
    type = type.substr(0, type.find(';'));
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    std::string lower(type);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    return lower == "application/json";
}

// A Boost.JSON parse handler that stops at the first key sent twice in one
// object: json::parse keeps the last one silently (RFC 8259 §4 leaves it to us).
struct DuplicateKeys {
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    using error_code = boost::system::error_code;
    using string_view = json::string_view;

    std::vector<std::set<std::string, std::less<>>> objects; // the keys of each open object
    std::string key;
    std::optional<std::string> duplicate;

    bool on_object_begin(error_code&) { return objects.emplace_back(), true; }
    bool on_object_end(std::size_t, error_code&) { return objects.pop_back(), true; }
    bool on_key_part(string_view s, std::size_t, error_code&) { return key.append(s.data(), s.size()), true; }
    bool on_key(string_view s, std::size_t, error_code& ec) {
        key.append(s.data(), s.size());
        if (!objects.back().insert(key).second) {
            duplicate = std::move(key);
            ec = make_error_code(std::errc::invalid_argument);
            return false;
        }
        key.clear();
        return true;
    }
    bool on_document_begin(error_code&) { return true; }
    bool on_document_end(error_code&) { return true; }
    bool on_array_begin(error_code&) { return true; }
    bool on_array_end(std::size_t, error_code&) { return true; }
    bool on_string_part(string_view, std::size_t, error_code&) { return true; }
    bool on_string(string_view, std::size_t, error_code&) { return true; }
    bool on_number_part(string_view, error_code&) { return true; }
    bool on_int64(std::int64_t, string_view, error_code&) { return true; }
    bool on_uint64(std::uint64_t, string_view, error_code&) { return true; }
    bool on_double(double, string_view, error_code&) { return true; }
    bool on_bool(bool, error_code&) { return true; }
    bool on_null(error_code&) { return true; }
    bool on_comment_part(string_view, error_code&) { return true; }
    bool on_comment(string_view, error_code&) { return true; }
};

// The first key sent twice in one object of valid JSON `text`, if any.
std::optional<std::string> duplicate_key(std::string_view text) {
    json::basic_parser<DuplicateKeys> parser(json::parse_options{});
    boost::system::error_code ec;
    parser.write_some(false, text.data(), text.size(), ec);
    return std::move(parser.handler().duplicate);
}

} // namespace

json::value invoice_json(Invoice const& i, Timestamp now) {
    json::value next_retry = nullptr;
    if (i.next_retry_at() && *i.next_retry_at() > now) next_retry = json::string(format_rfc3339(*i.next_retry_at()));
    json::value review = nullptr;
    if (i.status() == InvoiceStatus::needs_review)
        review = json::object{{"reason", i.review_reason()}, {"payment_id", i.under_review().str()}};
    return json::object{{"id", i.id().str()},
                        {"amount", i.amount().minor_units()},
                        {"currency", i.amount().currency().code()},
                        {"description", i.description()},
                        {"status", to_string(i.status())},
                        {"attempts", i.current_attempt()},
                        {"next_retry_at", next_retry},
                        {"last_failure", failure_json(i.last_failure())},
                        {"review", review},
                        {"created_at", format_rfc3339(i.created_at())},
                        {"updated_at", format_rfc3339(i.updated_at())}};
}

json::value payment_json(Payment const& p) {
    return json::object{{"id", p.id().str()},
                        {"invoice_id", p.invoice_id().str()},
                        {"attempt", p.attempt()},
                        {"gateway", p.gateway()},
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

namespace {

// What each kind of event says beyond its envelope.
struct EventFields {
    json::object& o;
    void money(Money m) const {
        o["amount"] = m.minor_units();
        o["currency"] = m.currency().code();
    }
    void operator()(InvoiceCreated const& e) const {
        money(e.amount);
        o["description"] = e.description;
    }
    void operator()(PaymentRequested const& e) const {
        money(e.amount);
        o["payment_method"] = e.payment_method;
        o["not_before"] = format_rfc3339(e.not_before);
    }
    void operator()(PaymentSucceeded const& e) const {
        money(e.amount);
        o["gateway_reference"] = e.gateway_reference;
    }
    void operator()(PaymentFailed const& e) const { o["failure"] = failure_json(e.failure); }
    void operator()(InvoicePaid const& e) const { money(e.amount); }
    void operator()(InvoiceFailed const& e) const { o["failure"] = failure_json(e.failure); }
    void operator()(InvoiceNeedsReview const& e) const { o["reason"] = e.reason; }
};

} // namespace

json::value event_json(Event const& event) {
    EventEnvelope const& env = envelope_of(event);
    json::object o{{"id", env.id.str()},
                   {"type", event_name(event)},
                   {"occurred_at", format_rfc3339(env.occurred_at)},
                   {"correlation_id", env.correlation_id.str()},
                   {"invoice_id", env.invoice_id.str()},
                   {"payment_id", env.payment_id.empty() ? json::value(nullptr) : json::value(env.payment_id.str())},
                   {"attempt", env.attempt}};
    std::visit(EventFields{o}, event);
    return o;
}

std::variant<json::object, Reply> json_body(http::request<http::string_body> const& request,
                                            std::initializer_list<std::string_view> allowed, bool required) {
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
    if (auto twice = duplicate_key(request.body()))
        return problem_reply(http::status::bad_request, "duplicate_field", "field '" + *twice + "' is sent twice");
    for (auto const& [key, unused] : value.as_object())
        if (std::find(allowed.begin(), allowed.end(), std::string_view(key)) == allowed.end())
            return problem_reply(http::status::bad_request, "unknown_field",
                                 "unknown field '" + std::string(key) + "'");
    return std::move(value.as_object());
}

std::variant<std::string, Reply> string_field(json::object const& body, std::string_view name, std::string fallback) {
    auto const* v = body.if_contains(name);
    if (v == nullptr || v->is_null()) return fallback;
    if (!v->is_string())
        return problem_reply(http::status::bad_request, "invalid_argument", std::string(name) + " must be a string");
    return std::string(v->as_string());
}

} // namespace http_server
