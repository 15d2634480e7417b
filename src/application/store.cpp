#include <payments/application/store.hpp>

#include <boost/assert.hpp>

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

} // namespace payments::application
