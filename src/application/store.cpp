#include <payments/application/store.hpp>

#include <boost/assert.hpp>

#include <algorithm>
#include <iterator>

namespace payments::application {

void Store::commit_async(Changes changes, Committed done) { done(commit(std::move(changes))); }

Result<Changes> Store::update(domain::InvoiceId const& id, Decide const& decide, Apply const& apply) {
    auto invoice = this->invoice(id);
    if (!invoice) return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
    auto decided = decide(*invoice);
    if (!decided) return decided;
    BOOST_ASSERT_MSG(!decided->invoice, "update() writes the invoice itself");
    std::uint64_t const version = invoice->version();
    apply(*invoice, *decided);
    // commit() may take its Changes apart; the events are published after it.
    Changes published;
    published.events = decided->events;
    published.scheduled = decided->scheduled;
    decided->invoice = Changes::InvoiceWrite{std::move(*invoice), version};
    if (auto committed = commit(std::move(*decided)); !committed) return committed.error();
    return published;
}

std::vector<domain::Event> Store::undelivered() const {
    std::vector<domain::Event> events;
    OutboxCursor from;
    for (;;) {
        OutboxPage page = undelivered_page(from, 256);
        std::move(page.events.begin(), page.events.end(), std::back_inserter(events));
        if (!page.next) return events;
        from = *page.next;
    }
}

std::vector<ScheduledEvent> Store::scheduled() const {
    std::vector<ScheduledEvent> events;
    ScheduledCursor from;
    for (;;) {
        ScheduledPage page = scheduled_page(from, 256);
        std::move(page.events.begin(), page.events.end(), std::back_inserter(events));
        if (!page.next) return events;
        from = std::move(*page.next);
    }
}

} // namespace payments::application
