#include <payments/application/store.hpp>

#include <boost/assert.hpp>

#include <algorithm>
#include <iterator>

namespace payments::application {

void Store::commit_async(Changes changes, Committed done) { done(commit(std::move(changes))); }

namespace {

// update()'s reading half: the stored invoice decided on and changed, as the
// commit to make and the events it publishes once made.
struct Decided {
    Changes commit;
    Changes published;
};

Result<Decided> decide_on_copy(Store const& store, domain::InvoiceId const& id, Store::Decide const& decide,
                               Store::Apply const& apply) {
    auto invoice = store.invoice(id);
    if (!invoice) return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
    auto decided = decide(*invoice);
    if (!decided) return decided.error();
    BOOST_ASSERT_MSG(!decided->invoice, "update() writes the invoice itself");
    std::uint64_t const version = invoice->version();
    apply(*invoice, *decided);
    // The commit may take its Changes apart; the events are published after it.
    Decided result;
    result.published.events = decided->events;
    result.published.scheduled = decided->scheduled;
    decided->invoice = Changes::InvoiceWrite{std::move(*invoice), version};
    result.commit = std::move(*decided);
    return result;
}

} // namespace

Result<Changes> Store::update(domain::InvoiceId const& id, Decide const& decide, Apply const& apply) {
    auto decided = decide_on_copy(*this, id, decide, apply);
    if (!decided) return decided.error();
    if (auto committed = commit(std::move(decided->commit)); !committed) return committed.error();
    return std::move(decided->published);
}

void Store::update_async(domain::InvoiceId const& id, Decide const& decide, Apply const& apply, Updated done) {
    auto decided = decide_on_copy(*this, id, decide, apply);
    if (!decided) return done(decided.error());
    commit_async(std::move(decided->commit),
                 [published = std::move(decided->published), done = std::move(done)](Result<void> committed) mutable {
                     if (!committed) return done(committed.error());
                     done(std::move(published));
                 });
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
