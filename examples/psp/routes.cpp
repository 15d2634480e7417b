#include "routes.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <map>

namespace psp {

namespace json = boost::json;

namespace {

constexpr std::string_view flaky_prefix = "pm_card_flaky_";

std::string percent_decode(std::string_view in) {
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        char const c = in[i];
        if (c == '+')
            out += ' ';
        else if (c == '%' && i + 2 < in.size()) {
            int value = 0;
            auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
            if (ec != std::errc{} || p != in.data() + i + 3) {
                out += c;
                continue;
            }
            out += static_cast<char>(value);
            i += 2;
        } else
            out += c;
    }
    return out;
}

// application/x-www-form-urlencoded, sorted by name: the map is also the request's fingerprint.
std::map<std::string, std::string> parse_form(std::string_view body) {
    std::map<std::string, std::string> fields;
    while (!body.empty()) {
        auto const amp = body.find('&');
        std::string_view pair = body.substr(0, amp);
        body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
        if (pair.empty()) continue;
        auto const eq = pair.find('=');
        fields[percent_decode(pair.substr(0, eq))] =
            eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
    }
    return fields;
}

std::string fingerprint(std::map<std::string, std::string> const &form) {
    std::string text = "POST /v1/payment_intents";
    for (auto const &[name, value] : form) text += "\n" + name + "=" + value;
    return text;
}

std::optional<std::int64_t> parse_amount(std::string const &text) {
    std::int64_t value = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || p != text.data() + text.size() || value <= 0 || value > 999'999'999'999'999)
        return std::nullopt;
    return value;
}

std::string const &field(std::map<std::string, std::string> const &form, std::string const &name) {
    static std::string const none;
    auto it = form.find(name);
    return it == form.end() ? none : it->second;
}

std::int64_t system_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string status_at(Intent const &intent, std::int64_t now) {
    if (!intent.charged) return "requires_payment_method";
    return now < intent.final_ms ? "processing" : "succeeded";
}

json::object intent_json(Intent const &intent, std::int64_t now) {
    std::string const status = status_at(intent, now);
    json::object o;
    o["id"] = intent.id();
    o["object"] = "payment_intent";
    o["amount"] = intent.amount;
    o["amount_received"] = status == "succeeded" ? intent.amount_received : 0;
    o["currency"] = intent.currency;
    o["status"] = status;
    o["created"] = intent.created_ms / 1000;
    o["metadata"] = json::object{
        {"gateway_key", intent.idempotency_key}, {"invoice_id", intent.invoice_id}, {"payment_id", intent.payment_id}};
    if (!intent.charged)
        o["last_payment_error"] =
            json::object{{"type", "card_error"}, {"code", intent.error_code}, {"message", intent.error_message}};
    return o;
}

} // namespace

Action error_action(int status, std::string const &type, std::string const &code, std::string const &message) {
    json::object error{{"type", type}, {"message", message}};
    if (!code.empty()) error["code"] = code;
    return Action{Action::How::answer, status, json::serialize(json::object{{"error", std::move(error)}})};
}

Provider::Provider(ProviderOptions options)
    : options_(std::move(options)), ledger_(options_.ledger_path), faults_(options_.faults) {
    if (!options_.now_ms) options_.now_ms = system_now_ms;
}

Action Provider::handle(Request const &request) {
    std::string_view const target = request.target;
    if (request.method == "GET" && target == "/metrics") return metrics();
    if (!target.starts_with("/v1/"))
        return error_action(404, "invalid_request_error", "resource_missing", "no such route");
    std::string_view const bearer = "Bearer ";
    std::string_view const auth = request.authorization;
    if (!auth.starts_with(bearer) || auth.size() == bearer.size() ||
        (!options_.secret_key.empty() && auth.substr(bearer.size()) != options_.secret_key))
        return error_action(401, "authentication_error", "", "invalid API key");
    std::string_view const collection = "/v1/payment_intents";
    if (request.method == "POST" && target == collection) return create(request);
    if (request.method == "GET" && target.starts_with("/v1/payment_intents/search?query="))
        return search(percent_decode(target.substr(std::string_view("/v1/payment_intents/search?query=").size())));
    if (request.method == "GET" && target.starts_with("/v1/payment_intents/pi_"))
        return retrieve(std::string(target.substr(collection.size() + 1)));
    return error_action(404, "invalid_request_error", "resource_missing", "no such route");
}

Action Provider::create(Request const &request) {
    FaultDraw const faults = faults_.draw();
    switch (faults.before) {
    case FaultDraw::Before::error:
        return error_action(500, "api_error", "", "simulated server error");
    case FaultDraw::Before::rate_limit:
        return error_action(429, "rate_limit_error", "rate_limit", "too many requests");
    case FaultDraw::Before::reset:
        return Action::without_answer(Action::How::reset);
    case FaultDraw::Before::none:
        break;
    }
    auto const form = parse_form(request.body);
    auto const amount = parse_amount(field(form, "amount"));
    std::string currency = field(form, "currency");
    std::transform(currency.begin(), currency.end(), currency.begin(), [](unsigned char c) { return std::tolower(c); });
    if (request.idempotency_key.empty() || request.idempotency_key.size() > 255)
        return error_action(400, "invalid_request_error", "parameter_missing", "an Idempotency-Key header is required");
    if (!amount)
        return error_action(400, "invalid_request_error", "parameter_invalid_integer",
                            "amount must be a positive integer");
    if (currency.size() != 3 ||
        !std::all_of(currency.begin(), currency.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
        return error_action(400, "invalid_request_error", "parameter_invalid", "currency must be an ISO 4217 code");
    if (field(form, "confirm") != "true")
        return error_action(400, "invalid_request_error", "parameter_invalid", "only confirm=true is supported");

    Intent intent;
    intent.idempotency_key = request.idempotency_key;
    intent.fingerprint = fingerprint(form);
    intent.invoice_id = field(form, "metadata[invoice_id]");
    intent.payment_id = field(form, "metadata[payment_id]");
    intent.amount = *amount;
    intent.amount_received = *amount;
    intent.currency = currency;
    if (auto existing = ledger_.by_key(intent.idempotency_key)) {
        if (existing->fingerprint != intent.fingerprint)
            return error_action(409, "idempotency_error", "idempotency_key_reused",
                                "keys for idempotent requests can only be used with the same parameters they were "
                                "first used with");
        return answer_for(*existing);
    }
    Action action = decide(request, std::move(intent), field(form, "payment_method"), faults);
    action.delay += faults.latency;
    return action;
}

Action Provider::decide(Request const &, Intent intent, std::string const &method, FaultDraw const &faults) {
    std::int64_t const now = options_.now_ms();
    intent.created_ms = now;
    intent.booked_ms = now;
    intent.final_ms = now;
    auto const lag = options_.search_lag.count();
    auto fail = [&](std::string code, std::string message) {
        intent.charged = false;
        intent.amount_received = 0;
        intent.error_code = std::move(code);
        intent.error_message = std::move(message);
        intent.visible_ms = now + lag;
    };
    auto book = [&](std::int64_t at) {
        intent.charged = true;
        intent.booked_ms = std::max(intent.booked_ms, at);
        intent.final_ms = std::max(intent.final_ms, intent.booked_ms);
        intent.visible_ms = intent.booked_ms + lag;
    };
    Action::How how = Action::How::answer;
    std::chrono::milliseconds delay{0};
    std::string_view const card = method;
    if (card == "pm_card_ok" || card == "pm_card_random" || card.empty())
        book(now);
    else if (card == "pm_card_declined")
        fail("card_declined", "Your card was declined.");
    else if (card == "pm_card_unavailable")
        fail("processing_error", "An error occurred while processing your card.");
    else if (card == "pm_card_timeout")
        return Action::without_answer(Action::How::hold); // nothing booked, nothing saved
    else if (card == "pm_card_lost_response") {
        book(now);
        how = Action::How::reset;
    } else if (card == "pm_card_late_answer") {
        book(now);
        delay = options_.late_answer_delay;
    } else if (card == "pm_card_late_booking") {
        book(now + options_.booking_delay.count());
        how = Action::How::hold;
    } else if (card == "pm_card_processing") {
        book(now);
        intent.final_ms = now + options_.processing_time.count();
    } else if (card == "pm_card_amount_mismatch") {
        intent.amount_received = intent.amount + 1;
        book(now);
    } else if (card.starts_with(flaky_prefix) && card.size() == flaky_prefix.size() + 1 && card.back() >= '1' &&
               card.back() <= '9') {
        int const failures = card.back() - '0';
        bool failing = false;
        {
            std::lock_guard lock(mutex_);
            failing = flaky_failures_[intent.invoice_id]++ < failures;
        }
        if (failing)
            fail("processing_error", "An error occurred while processing your card. Try again.");
        else
            book(now);
    } else
        fail("card_declined", "unknown payment method");

    if (intent.charged && how == Action::How::answer) {
        if (faults.after == FaultDraw::After::lose_answer)
            how = Action::How::reset;
        else if (faults.after == FaultDraw::After::late_booking) {
            book(now + options_.booking_delay.count());
            how = Action::How::hold;
        }
    }
    if (!ledger_.insert(intent)) { // the same key, concurrently: answer as the first did
        auto existing = ledger_.by_key(intent.idempotency_key);
        if (!existing || existing->fingerprint != intent.fingerprint)
            return error_action(409, "idempotency_error", "idempotency_key_reused", "key reused with other parameters");
        return answer_for(*existing);
    }
    if (listener_) listener_(intent);
    if (how != Action::How::answer) return Action::without_answer(how);
    Action action = answer_for(intent);
    action.delay = delay;
    return action;
}

Action Provider::answer_for(Intent const &intent) {
    std::int64_t const now = options_.now_ms();
    if (intent.charged && now < intent.booked_ms)
        return error_action(409, "idempotency_error", "idempotency_key_in_use",
                            "a request with this idempotency key is still being processed");
    json::object body = intent_json(intent, now);
    if (!intent.charged) {
        json::object error{{"type", "card_error"},
                           {"code", intent.error_code},
                           {"message", intent.error_message},
                           {"payment_intent", body}};
        if (intent.error_code == "card_declined") error["decline_code"] = "generic_decline";
        return Action{Action::How::answer, 402, json::serialize(json::object{{"error", std::move(error)}})};
    }
    return Action{Action::How::answer, 200, json::serialize(body)};
}

Action Provider::retrieve(std::string const &id) {
    std::int64_t seq = 0;
    std::string_view const digits = std::string_view(id).substr(3);
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), seq);
    std::optional<Intent> intent;
    if (ec == std::errc{} && p == digits.data() + digits.size()) intent = ledger_.by_seq(seq);
    std::int64_t const now = options_.now_ms();
    if (!intent || (intent->charged && now < intent->booked_ms))
        return error_action(404, "invalid_request_error", "resource_missing", "No such payment_intent: " + id);
    return Action{Action::How::answer, 200, json::serialize(intent_json(*intent, now))};
}

Action Provider::search(std::string const &query) {
    // The one query form we understand: metadata['gateway_key']:'<key>'.
    std::string_view q = query;
    std::string_view const prefix = "metadata['gateway_key']:'";
    if (!q.starts_with(prefix) || !q.ends_with("'") || q.size() < prefix.size() + 2)
        return error_action(400, "invalid_request_error", "parameter_invalid",
                            "only metadata['gateway_key']:'<key>' queries are supported");
    std::string const key(q.substr(prefix.size(), q.size() - prefix.size() - 1));
    std::int64_t const now = options_.now_ms();
    json::array data;
    for (Intent const &intent : ledger_.search_gateway_key(key, now)) data.push_back(intent_json(intent, now));
    json::object result{{"object", "search_result"},
                        {"url", "/v1/payment_intents/search"},
                        {"has_more", false},
                        {"data", std::move(data)}};
    return Action{Action::How::answer, 200, json::serialize(result)};
}

Action Provider::metrics() {
    LedgerTotals const totals = ledger_.totals(options_.now_ms());
    std::string text = "# HELP psp_charges_total Succeeded charges booked, each counted once, from the ledger.\n"
                       "# TYPE psp_charges_total counter\n"
                       "psp_charges_total " +
                       std::to_string(totals.charges) +
                       "\n"
                       "# HELP psp_charge_amount_total Minor units taken by succeeded charges.\n"
                       "# TYPE psp_charge_amount_total counter\n";
    for (auto const &[currency, amount] : totals.amount_by_currency)
        text += "psp_charge_amount_total{currency=\"" + currency + "\"} " + std::to_string(amount) + "\n";
    return Action{Action::How::answer, 200, std::move(text), "text/plain; version=0.0.4"};
}

} // namespace psp
