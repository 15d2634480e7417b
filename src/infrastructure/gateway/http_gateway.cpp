#include <payments/infrastructure/gateway/http_gateway.hpp>

#include "http_exchange.hpp"

#include <payments/infrastructure/observability/metrics_registry.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <cctype>

namespace payments::infrastructure {

namespace net = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using application::ChargeAnswer;
using application::ChargeRequest;
using application::ChargeStatus;
using domain::FailureKind;
using http_detail::Exchange;
using http_detail::Reach;

struct HttpGateway::Impl {
    // One strand for every call and connection: a pooled connection passes from
    // call to call, and Beast's streams (their timers included) want one strand.
    net::any_io_executor executor;
    HttpGatewayOptions options;
    http_detail::ConnectionPool pool;
    std::string host_header;
    std::atomic<std::size_t> in_flight{0};

    // What calls ended with, for register_metrics(): indexes into its names.
    enum ChargeOutcome { charge_charged, charge_declined, charge_transient, charge_unknown, charge_over_limit, charge_outcomes };
    enum LookupOutcome { lookup_charged, lookup_declined, lookup_pending, lookup_absent, lookup_failed, lookup_over_limit, lookup_outcomes };
    std::array<std::atomic<std::uint64_t>, charge_outcomes> charges{};
    std::array<std::atomic<std::uint64_t>, lookup_outcomes> lookups{};
    std::shared_ptr<Histogram> charge_seconds = std::make_shared<Histogram>(latency_buckets());
    std::shared_ptr<Histogram> lookup_seconds = std::make_shared<Histogram>(latency_buckets());

    // Counts a call that began `deadline - options.deadline`.
    void count_charge(ChargeAnswer const& answer, std::chrono::steady_clock::time_point deadline) {
        ChargeOutcome const outcome = answer.succeeded()                               ? charge_charged
                                      : answer.failure->kind == FailureKind::declined  ? charge_declined
                                      : answer.failure->kind == FailureKind::transient ? charge_transient
                                                                                       : charge_unknown;
        ++charges[outcome];
        charge_seconds->observe(seconds_since_start(deadline));
    }
    void count_lookup(ChargeStatus const& status, bool failed, std::chrono::steady_clock::time_point deadline) {
        using State = ChargeStatus::State;
        LookupOutcome const outcome = failed                             ? lookup_failed
                                      : status.state == State::charged  ? lookup_charged
                                      : status.state == State::declined ? lookup_declined
                                      : status.state == State::pending  ? lookup_pending
                                                                        : lookup_absent;
        ++lookups[outcome];
        lookup_seconds->observe(seconds_since_start(deadline));
    }
    double seconds_since_start(std::chrono::steady_clock::time_point deadline) const {
        auto const started = deadline - options.deadline;
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    }

    Impl(net::any_io_executor e, HttpGatewayOptions o, http_detail::Endpoint endpoint,
         std::optional<net::ssl::context> tls)
        : executor(net::make_strand(e)), options(std::move(o)),
          pool(executor, std::move(endpoint), std::move(tls), options.max_idle_connections) {
        auto const& ep = pool.endpoint();
        bool const v6 = ep.host.find(':') != std::string::npos;
        host_header = (v6 ? "[" + ep.host + "]" : ep.host) + ":" + ep.port;
    }

    http::request<http::string_body> request(http::verb verb, std::string target) const {
        http::request<http::string_body> req{verb, pool.endpoint().prefix + target, 11};
        req.set(http::field::host, host_header);
        req.set(http::field::user_agent, "payments-http-gateway");
        req.set(http::field::authorization, "Bearer " + options.secret_key);
        req.keep_alive(true);
        return req;
    }

    // Reported once per call, at the edge; never with the request's headers (the secret key).
    void report(std::string_view what, Exchange const& exchange, std::string_view reason) const {
        if (!options.logger) return;
        options.logger->warn(
            what, {{"gateway", options.name},
                   {"host", host_header},
                   {"stage", exchange.stage},
                   {"status", static_cast<std::int64_t>(exchange.response ? exchange.response->result_int() : 0)},
                   {"reason", reason}});
    }
};

namespace {

std::string form_escape(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (char const ch : text) {
        auto const c = static_cast<unsigned char>(ch);
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out += static_cast<char>(c);
        else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string form_body(ChargeRequest const& request) {
    std::string currency(request.amount.currency().code());
    std::transform(currency.begin(), currency.end(), currency.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string body = "amount=" + std::to_string(request.amount.minor_units()) + "&currency=" + currency +
                       "&payment_method=" + form_escape(request.payment_method) + "&confirm=true";
    body += "&" + form_escape("metadata[gateway_key]") + "=" + form_escape(request.idempotency_key);
    body += "&" + form_escape("metadata[invoice_id]") + "=" + form_escape(request.invoice_id.str());
    body += "&" + form_escape("metadata[payment_id]") + "=" + form_escape(request.payment_id.str());
    return body;
}

std::string text_of(json::value const* v) { return v && v->is_string() ? std::string(v->as_string()) : std::string(); }

json::object const* object_of(json::value const* v) { return v && v->is_object() ? &v->as_object() : nullptr; }

// Stripe's error shape: "<code>: <message>" (or the HTTP status if the body is not one).
std::string error_reason(json::value const& body, unsigned status) {
    auto const* error = object_of(body.is_object() ? body.as_object().if_contains("error") : nullptr);
    if (!error) return "HTTP " + std::to_string(status);
    std::string code = text_of(error->if_contains("code"));
    std::string message = text_of(error->if_contains("message"));
    if (code.empty()) code = text_of(error->if_contains("type"));
    return code + (message.empty() ? "" : ": " + message);
}

// The charged amount of a succeeded PaymentIntent, or nothing if the object is malformed.
std::optional<domain::Money> amount_received(json::object const& intent) {
    auto const* amount = intent.if_contains("amount_received");
    std::string code = text_of(intent.if_contains("currency"));
    std::transform(code.begin(), code.end(), code.begin(), [](unsigned char c) { return std::toupper(c); });
    if (!amount || !amount->is_int64()) return std::nullopt;
    auto currency = domain::Currency::from_code(code);
    if (!currency) return std::nullopt;
    auto money = domain::Money::positive(amount->as_int64(), *currency);
    return money ? std::optional(*money) : std::nullopt;
}

// docs/psp-protocol.md, "How HttpGateway maps what it sees": TRANSIENT only when the
// provider provably did not act; without a definitive answer, UNKNOWN_OUTCOME.
ChargeAnswer map_charge(Exchange const& exchange) {
    if (!exchange.response) {
        std::string const why = std::string(exchange.stage) + ": " + exchange.error.message();
        if (exchange.reach == Reach::not_sent)
            return ChargeAnswer::failed(FailureKind::transient, "not sent (" + why + ")");
        return ChargeAnswer::failed(FailureKind::unknown_outcome, "no answer after sending (" + why + ")");
    }
    unsigned const status = exchange.response->result_int();
    boost::system::error_code parse_error;
    json::value const body = json::parse(exchange.response->body(), parse_error);
    if (status >= 500)
        return ChargeAnswer::failed(FailureKind::unknown_outcome, "provider error HTTP " + std::to_string(status));
    if (status == 429) return ChargeAnswer::failed(FailureKind::transient, "rate limited (HTTP 429)");
    if (status == 401 || status == 403 || status == 404)
        return ChargeAnswer::failed(FailureKind::transient, "refused before executing: " + error_reason(body, status));
    if (status == 409)
        return ChargeAnswer::failed(FailureKind::unknown_outcome,
                                    "idempotency conflict: " + error_reason(body, status));
    if (status == 400)
        return ChargeAnswer::failed(FailureKind::declined, "invalid request: " + error_reason(body, status));
    if (parse_error)
        return ChargeAnswer::failed(FailureKind::unknown_outcome,
                                    "malformed answer (HTTP " + std::to_string(status) + ")");
    if (status == 402) {
        auto const* error = object_of(body.is_object() ? body.as_object().if_contains("error") : nullptr);
        if (error && text_of(error->if_contains("code")) == "processing_error")
            return ChargeAnswer::failed_at_card(FailureKind::transient, error_reason(body, status));
        return ChargeAnswer::failed(FailureKind::declined, error_reason(body, status));
    }
    auto const* intent = object_of(&body);
    if (status != 200 || !intent)
        return ChargeAnswer::failed(FailureKind::unknown_outcome, "unexpected answer HTTP " + std::to_string(status));
    std::string const state = text_of(intent->if_contains("status"));
    std::string const id = text_of(intent->if_contains("id"));
    if (state == "succeeded") {
        auto const charged = amount_received(*intent);
        if (!charged || id.empty())
            return ChargeAnswer::failed(FailureKind::unknown_outcome, "malformed succeeded PaymentIntent");
        return ChargeAnswer::success(id, *charged);
    }
    if (state == "processing" || state.empty())
        return ChargeAnswer::failed(FailureKind::unknown_outcome, "the provider is still processing the charge");
    return ChargeAnswer::failed(FailureKind::declined, "payment intent " + state);
}

ChargeStatus map_lookup(Exchange const& exchange, std::string& failure) {
    if (!exchange.response) {
        failure = std::string(exchange.stage) + ": " + exchange.error.message();
        return ChargeStatus::processing();
    }
    boost::system::error_code parse_error;
    json::value const body = json::parse(exchange.response->body(), parse_error);
    auto const* result = parse_error ? nullptr : object_of(&body);
    auto const* data = result ? result->if_contains("data") : nullptr;
    if (exchange.response->result_int() != 200 || !data || !data->is_array()) {
        failure = "search answered HTTP " + std::to_string(exchange.response->result_int());
        return ChargeStatus::processing();
    }
    std::optional<ChargeStatus> found;
    for (json::value const& item : data->as_array()) {
        auto const* intent = object_of(&item);
        if (!intent) continue;
        std::string const state = text_of(intent->if_contains("status"));
        if (state == "succeeded") {
            auto const charged = amount_received(*intent);
            if (!charged) {
                failure = "malformed succeeded PaymentIntent";
                return ChargeStatus::processing();
            }
            return ChargeStatus::booked(text_of(intent->if_contains("id")), *charged); // a charge outranks the rest
        }
        if (state == "processing" || state.empty())
            found = ChargeStatus::processing();
        else if (!found) {
            auto const* last_error = object_of(intent->if_contains("last_payment_error"));
            std::string const reason = text_of(last_error ? last_error->if_contains("message") : nullptr);
            found = ChargeStatus::refused(reason.empty() ? "payment intent " + state : reason);
        }
    }
    return found ? *found : ChargeStatus::not_found();
}

std::string query_escape(std::string_view text) { return form_escape(text); }

} // namespace

Result<std::shared_ptr<HttpGateway>> HttpGateway::create(net::any_io_executor executor, HttpGatewayOptions options) {
    auto endpoint = http_detail::parse_url(options.url);
    if (!endpoint) return endpoint.error();
    if (options.max_in_flight == 0) return reject(ErrorCode::invalid_argument, "max_in_flight must be positive");
    std::optional<net::ssl::context> tls;
    if (endpoint->tls) {
        tls.emplace(net::ssl::context::tls_client);
        tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_tlsv1 |
                         net::ssl::context::no_tlsv1_1);
        boost::system::error_code ec;
        if (options.ca_file.empty())
            tls->set_default_verify_paths(ec);
        else
            tls->load_verify_file(options.ca_file, ec);
        if (ec) return reject(ErrorCode::invalid_argument, "cannot load the trusted certificates: " + ec.message());
    }
    auto impl = std::make_shared<Impl>(std::move(executor), std::move(options), std::move(*endpoint), std::move(tls));
    return std::shared_ptr<HttpGateway>(new HttpGateway(std::move(impl)));
}

HttpGateway::HttpGateway(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpGateway::~HttpGateway() = default;

HttpGatewayStats HttpGateway::stats() const { return impl_->pool.stats(); }

void HttpGateway::register_metrics(MetricsRegistry& registry, std::string const& name) const {
    static constexpr std::array<char const*, Impl::charge_outcomes> charge_names = {
        "charged", "declined", "transient", "unknown_outcome", "over_limit"};
    static constexpr std::array<char const*, Impl::lookup_outcomes> lookup_names = {
        "charged", "declined", "pending", "absent", "failed", "over_limit"};
    std::shared_ptr<Impl const> const impl = impl_; // the callbacks keep the counts alive
    constexpr std::string_view calls = "payment_gateway_http_calls_total";
    constexpr std::string_view calls_help = "Calls an HTTP gateway made, by call and outcome (over_limit: not sent)";
    for (std::size_t i = 0; i < charge_names.size(); ++i)
        registry.counter_callback(calls, calls_help, {{"gateway", name}, {"call", "charge"}, {"outcome", charge_names[i]}},
                                  [impl, i] { return static_cast<double>(impl->charges[i].load()); });
    for (std::size_t i = 0; i < lookup_names.size(); ++i)
        registry.counter_callback(calls, calls_help, {{"gateway", name}, {"call", "lookup"}, {"outcome", lookup_names[i]}},
                                  [impl, i] { return static_cast<double>(impl->lookups[i].load()); });
    constexpr std::string_view seconds = "payment_gateway_http_call_seconds";
    constexpr std::string_view seconds_help = "Time from an HTTP gateway call to its answer, by call";
    registry.histogram_callback(seconds, seconds_help, {{"gateway", name}, {"call", "charge"}}, impl->charge_seconds);
    registry.histogram_callback(seconds, seconds_help, {{"gateway", name}, {"call", "lookup"}}, impl->lookup_seconds);
}

namespace {

// Counts a call in flight; false (and not counted) past the limit.
bool admit(std::atomic<std::size_t>& in_flight, std::size_t limit) {
    if (in_flight.fetch_add(1) < limit) return true;
    --in_flight;
    return false;
}

net::awaitable<void> charge_call(std::shared_ptr<HttpGateway::Impl> impl, ChargeRequest request,
                                 std::function<void(ChargeAnswer)> on_answer,
                                 std::chrono::steady_clock::time_point deadline) {
    ChargeAnswer answer = ChargeAnswer::failed(FailureKind::unknown_outcome, "gateway adapter failed");
    try {
        auto req = impl->request(http::verb::post, "/v1/payment_intents");
        req.set(http::field::content_type, "application/x-www-form-urlencoded");
        req.set("Idempotency-Key", request.idempotency_key);
        req.body() = form_body(request);
        req.prepare_payload();
        // Retrying a closed pooled connection is safe: same key, same body (docs/psp-protocol.md).
        Exchange const exchange = co_await impl->pool.round_trip(std::move(req), deadline, true);
        answer = map_charge(exchange);
        if (answer.failure && answer.failure->kind != FailureKind::declined)
            impl->report("charge failed", exchange, answer.failure->reason);
    } catch (std::exception const& e) {
        // Only allocation can throw here; whether the request left is unknown, so is the outcome.
        answer = ChargeAnswer::failed(FailureKind::unknown_outcome, std::string("gateway adapter: ") + e.what());
    }
    impl->count_charge(answer, deadline);
    --impl->in_flight;
    on_answer(std::move(answer));
}

net::awaitable<void> lookup_call(std::shared_ptr<HttpGateway::Impl> impl, std::string key,
                                 std::function<void(ChargeStatus)> on_answer,
                                 std::chrono::steady_clock::time_point deadline) {
    ChargeStatus status = ChargeStatus::processing();
    bool failed = true;
    try {
        auto req = impl->request(http::verb::get, "/v1/payment_intents/search?query=" +
                                                      query_escape("metadata['gateway_key']:'" + key + "'"));
        Exchange const exchange = co_await impl->pool.round_trip(std::move(req), deadline, true);
        std::string failure;
        status = map_lookup(exchange, failure);
        failed = !failure.empty();
        if (failed) impl->report("look-up failed", exchange, failure);
    } catch (std::exception const&) {
        status = ChargeStatus::processing(); // knows nothing: ask again later
    }
    impl->count_lookup(status, failed, deadline);
    --impl->in_flight;
    on_answer(std::move(status));
}

} // namespace

void HttpGateway::charge(ChargeRequest request, std::function<void(ChargeAnswer)> on_answer) {
    std::shared_ptr<Impl> impl = impl_;
    if (!admit(impl->in_flight, impl->options.max_in_flight)) {
        ++impl->charges[Impl::charge_over_limit];
        net::post(impl->executor, [on_answer = std::move(on_answer)] {
            on_answer(ChargeAnswer::refused_over_limit("too many calls in flight; not sent"));
        });
        return;
    }
    auto const deadline = std::chrono::steady_clock::now() + impl->options.deadline;
    net::co_spawn(impl->executor, charge_call(impl, std::move(request), std::move(on_answer), deadline), net::detached);
}

void HttpGateway::lookup(std::string idempotency_key, std::function<void(ChargeStatus)> on_answer) {
    std::shared_ptr<Impl> impl = impl_;
    if (!admit(impl->in_flight, impl->options.max_in_flight)) {
        ++impl->lookups[Impl::lookup_over_limit];
        net::post(impl->executor, [on_answer = std::move(on_answer)] { on_answer(ChargeStatus::processing()); });
        return;
    }
    auto const deadline = std::chrono::steady_clock::now() + impl->options.deadline;
    net::co_spawn(impl->executor, lookup_call(impl, std::move(idempotency_key), std::move(on_answer), deadline),
                  net::detached);
}

} // namespace payments::infrastructure
