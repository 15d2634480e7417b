// POST /invoices, GET /invoices, GET /invoices/{id}, GET /invoices/{id}/events.
#include "errors.hpp"
#include "json_codec.hpp"
#include "routes.hpp"

#include <charconv>

namespace http_server {

namespace json = boost::json;
using namespace payments;
using namespace payments::domain;

void create_invoice(Context& context, Call& call, Respond respond) {
    auto body = json_body(call.request, {"id", "amount", "currency", "description"}, true);
    if (auto* bad = std::get_if<Reply>(&body)) return respond(std::move(*bad));
    auto const& fields = std::get<json::object>(body);
    auto const* amount = fields.if_contains("amount");
    if (amount == nullptr || !amount->is_int64())
        return respond(problem_reply(http::status::bad_request, "invalid_amount",
                                     "amount must be an integer number of minor units, 1 to 999999999999999"));
    auto currency_code = string_field(fields, "currency", "USD");
    if (auto* bad = std::get_if<Reply>(&currency_code)) return respond(std::move(*bad));
    auto currency = Currency::from_code(std::get<std::string>(currency_code));
    if (!currency) return respond(from_error(currency.error()));
    auto money = Money::positive(amount->as_int64(), *currency);
    if (!money) return respond(from_error(money.error()));
    auto description = string_field(fields, "description", "");
    if (auto* bad = std::get_if<Reply>(&description)) return respond(std::move(*bad));
    application::CreateInvoice command{std::nullopt, *money, std::get<std::string>(description), call.correlation_id};
    if (fields.contains("id")) {
        auto id = string_field(fields, "id", "");
        if (auto* bad = std::get_if<Reply>(&id)) return respond(std::move(*bad));
        auto parsed = InvoiceId::parse(std::get<std::string>(id));
        if (!parsed) return respond(from_error(parsed.error()));
        command.id = *parsed;
    }
    context.engine.service().create_invoice_async(
        std::move(command), [&engine = context.engine, respond = std::move(respond)](Result<Invoice> created) {
            if (!created) return respond(from_error(created.error()));
            Reply reply = json_reply(http::status::created, invoice_json(*created, engine.clock().now()));
            reply.headers.emplace_back("Location", "/invoices/" + std::string(created->id().str()));
            respond(std::move(reply));
        });
}

Reply get_invoice(Context& context, Call& call) {
    auto id = InvoiceId::parse(call.params[0]);
    if (!id) return problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]);
    auto invoice = context.engine.service().invoice(*id);
    if (!invoice) return from_error(invoice.error());
    return json_reply(http::status::ok, invoice_json(*invoice, context.engine.clock().now()));
}

Reply invoice_events(Context& context, Call& call) {
    auto id = InvoiceId::parse(call.params[0]);
    if (!id) return problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]);
    auto events = context.engine.service().history(*id);
    if (!events) return from_error(events.error());
    json::array data;
    for (Event const& e : *events) data.push_back(event_json(e));
    return json_reply(http::status::ok, json::object{{"data", std::move(data)}});
}

Reply list_invoices(Context& context, Call& call) { return invoice_page(context, call, std::nullopt); }

Reply invoice_page(Context& context, Call& call, std::optional<InvoiceStatus> only) {
    application::InvoiceQuery query;
    query.status = only;
    for (auto const& param : call.query) {
        if (param.key == "status" && !only) {
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
    auto page = context.engine.service().invoices(query);
    if (!page) return from_error(page.error());
    json::array data;
    for (Invoice const& invoice : page->data) data.push_back(invoice_json(invoice, context.engine.clock().now()));
    json::value next = page->next ? json::value(page->next->str()) : json::value(nullptr);
    return json_reply(http::status::ok, json::object{{"data", std::move(data)}, {"next", next}});
}

} // namespace http_server
