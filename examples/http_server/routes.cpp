#include "routes.hpp"

namespace http_server {

std::span<Route const> route_table() {
    static Route const table[] = {
        {http::verb::post, "/invoices", nullptr, &create_invoice},
        {http::verb::get, "/invoices", &list_invoices},
        {http::verb::get, "/invoices/{id}", &get_invoice},
        {http::verb::post, "/invoices/{id}/pay", nullptr, &pay_invoice},
        {http::verb::get, "/invoices/{id}/payments", &list_payments},
        {http::verb::get, "/invoices/{id}/events", &invoice_events},
        {http::verb::get, "/payments/{id}", &get_payment},
        {http::verb::get, "/health", &health},
        {http::verb::get, "/health/live", &health},
        {http::verb::get, "/health/ready", &ready},
        {http::verb::get, "/metrics", &metrics},
        {http::verb::get, "/admin/reviews", &list_reviews},
        {http::verb::post, "/admin/invoices/{id}/resolve", &resolve_review},
        {http::verb::get, "/admin/dead-letters", &list_dead_letters},
        {http::verb::post, "/admin/dead-letters/replay", &replay_dead_letters},
        {http::verb::post, "/webhooks/psp", &psp_webhook},
    };
    return table;
}

} // namespace http_server
