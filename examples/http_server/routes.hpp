#pragma once
// The handlers behind each route, grouped by resource in routes_*.cpp, and the
// table that names them (routes.cpp).

#include "api.hpp"
#include "reply.hpp"
#include "webhooks.hpp"

#include <boost/url/params_view.hpp>

#include <functional>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace http_server {

/// What every handler may use: the engine, the readiness flag, and the
/// operator routes' bearer token (empty: those routes are off).
struct Context {
    payments::Engine& engine;
    std::atomic<Readiness> const& readiness;
    std::string admin_token;
    WebhookOptions webhooks = {};
    std::shared_ptr<SeenEvents> seen_events = {}; ///< set when webhooks.secret is
};

/// The parts of a request a handler needs.
struct Call {
    Request const& request;
    std::vector<std::string> params; ///< path parameters, in order
    boost::urls::params_view query;
    payments::domain::CorrelationId correlation_id;
};

/// A handler that answers at once (it may wait for the store: it runs on the
/// server's handler threads).
using Handler = Reply (*)(Context&, Call&);
/// Where a command's handler sends its answer, exactly once.
using Respond = std::function<void(Reply)>;
/// A command's handler: reads the request, starts the use case and returns;
/// the use case answers through `respond` once its commit is durable (on the
/// engine's threads), or at once when it refuses early. It never waits for a
/// commit (it runs on the handler threads for its reads).
using CommandHandler = void (*)(Context&, Call&, Respond respond);

/// One route: method, path pattern ("/invoices/{id}/pay") and its handler,
/// one of the two kinds.
struct Route {
    http::verb method;
    std::string_view pattern;
    Handler handler = nullptr;
    CommandHandler command = nullptr;
};

/// Every route, in matching order.
std::span<Route const> route_table();

// routes_invoices.cpp
void create_invoice(Context&, Call&, Respond respond);
Reply get_invoice(Context&, Call&);
Reply list_invoices(Context&, Call&);
/// GET /invoices/{id}/events: the invoice's audit history.
Reply invoice_events(Context&, Call&);
/// A page of invoices (?limit, ?after; ?status unless `only` fixes it).
Reply invoice_page(Context&, Call&, std::optional<payments::domain::InvoiceStatus> only);

// routes_payments.cpp
void pay_invoice(Context&, Call&, Respond respond);
Reply list_payments(Context&, Call&);
Reply get_payment(Context&, Call&);

// routes_admin.cpp: the operator's routes, behind the bearer token
Reply list_reviews(Context&, Call&);
Reply resolve_review(Context&, Call&);
Reply list_dead_letters(Context&, Call&);
Reply replay_dead_letters(Context&, Call&);

// routes_webhooks.cpp: the provider's signed notices
Reply psp_webhook(Context&, Call&);

// routes_health.cpp
Reply health(Context&, Call&);
Reply ready(Context&, Call&);
Reply metrics(Context&, Call&);

} // namespace http_server
