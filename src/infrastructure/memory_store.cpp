#include <payments/infrastructure/memory_store.hpp>

namespace payments::infrastructure {

using namespace domain;
using application::Changes;

std::optional<Invoice> InMemoryStore::invoice(InvoiceId const& id) const {
    std::shared_lock lock(mutex_);
    auto it = invoices_.find(id);
    if (it == invoices_.end()) return std::nullopt;
    return it->second.invoice;
}

application::InvoicePage InMemoryStore::invoices(application::InvoiceQuery const& query) const {
    std::shared_lock lock(mutex_);
    auto from = creation_order_.begin();
    if (query.after) {
        auto it = invoices_.find(*query.after);
        if (it == invoices_.end()) return {};
        from = creation_order_.upper_bound(it->second.sequence);
    }
    application::InvoicePage page;
    for (auto it = from; it != creation_order_.end(); ++it) {
        Invoice const& invoice = invoices_.at(it->second).invoice;
        if (query.status && invoice.status() != *query.status) continue;
        if (page.data.size() == query.limit) {
            page.next = page.data.back().id();
            break;
        }
        page.data.push_back(invoice);
    }
    return page;
}

std::optional<Payment> InMemoryStore::payment(PaymentId const& id) const {
    std::shared_lock lock(mutex_);
    auto it = payments_.find(id);
    if (it == payments_.end()) return std::nullopt;
    return it->second;
}

std::vector<Payment> InMemoryStore::payments_of(InvoiceId const& id) const {
    std::shared_lock lock(mutex_);
    std::vector<Payment> result;
    auto it = invoices_.find(id);
    if (it == invoices_.end()) return result;
    result.reserve(it->second.payments.size());
    for (PaymentId const& pid : it->second.payments) result.push_back(payments_.at(pid));
    return result;
}

Result<void> InMemoryStore::check_locked(Changes const& changes) const {
    if (changes.invoice) {
        auto const& [invoice, expected] = *changes.invoice;
        auto it = invoices_.find(invoice.id());
        if (expected == 0 && it != invoices_.end())
            return reject(ErrorCode::already_exists, "invoice " + invoice.id().str() + " already exists");
        if (expected != 0 && (it == invoices_.end() || it->second.invoice.version() != expected))
            return reject(ErrorCode::conflict, "invoice " + invoice.id().str() + " changed since it was read");
    }
    for (auto const& [payment, expected] : changes.payments) {
        auto it = payments_.find(payment.id());
        if (expected == 0 && it != payments_.end())
            return reject(ErrorCode::already_exists, "payment " + payment.id().str() + " already exists");
        if (expected != 0 && (it == payments_.end() || it->second.version() != expected))
            return reject(ErrorCode::conflict, "payment " + payment.id().str() + " changed since it was read");
        bool const invoice_known = invoices_.contains(payment.invoice_id()) ||
                                   (changes.invoice && changes.invoice->invoice.id() == payment.invoice_id());
        if (!invoice_known) return reject(ErrorCode::not_found, "no invoice " + payment.invoice_id().str());
    }
    return {};
}

Result<void> InMemoryStore::commit(Changes changes) {
    std::unique_lock lock(mutex_);
    if (auto ok = check_locked(changes); !ok) return ok;
    if (changes.invoice) {
        Invoice& invoice = changes.invoice->invoice;
        auto it = invoices_.find(invoice.id());
        if (it == invoices_.end()) {
            std::uint64_t const sequence = next_sequence_++;
            InvoiceId id = invoice.id(); // a copy: the record below takes the invoice apart
            creation_order_.emplace(sequence, id);
            invoices_.emplace(std::move(id), InvoiceRecord{std::move(invoice), sequence, {}});
        } else {
            it->second.invoice = std::move(invoice);
        }
    }
    for (auto& [payment, expected] : changes.payments) {
        if (expected == 0) invoices_.at(payment.invoice_id()).payments.push_back(payment.id());
        payments_.insert_or_assign(payment.id(), std::move(payment));
    }
    return {};
}

InMemoryIdempotencyStore::InMemoryIdempotencyStore(Duration ttl) : ttl_(ttl) {}

application::IdempotencyClaim InMemoryIdempotencyStore::claim(application::IdempotencyKey const& key,
                                                             std::string_view fingerprint, Timestamp now) {
    using State = application::IdempotencyClaim::State;
    std::lock_guard lock(mutex_);
    // Amortised clean-up keeps memory bounded by the keys of the last ttl.
    if (++claims_since_purge_ >= 4096) purge_locked(now);
    auto [it, inserted] = records_.try_emplace(key, Record{std::string(fingerprint), std::nullopt, now});
    if (inserted) return {State::claimed, std::nullopt};
    Record& record = it->second;
    if (record.since + ttl_ <= now) {
        record = Record{std::string(fingerprint), std::nullopt, now};
        return {State::claimed, std::nullopt};
    }
    if (record.fingerprint != fingerprint) return {State::mismatch, std::nullopt};
    if (!record.outcome) return {State::in_use, std::nullopt};
    return {State::replay, record.outcome};
}

void InMemoryIdempotencyStore::complete(application::IdempotencyKey const& key,
                                        application::PaymentOutcome outcome, Timestamp now) {
    std::lock_guard lock(mutex_);
    auto it = records_.find(key);
    if (it == records_.end()) return;
    it->second.outcome = std::move(outcome);
    it->second.since = now;
}

void InMemoryIdempotencyStore::release(application::IdempotencyKey const& key) {
    std::lock_guard lock(mutex_);
    records_.erase(key);
}

std::size_t InMemoryIdempotencyStore::purge_expired(Timestamp now) {
    std::lock_guard lock(mutex_);
    return purge_locked(now);
}

std::size_t InMemoryIdempotencyStore::purge_locked(Timestamp now) {
    claims_since_purge_ = 0;
    return std::erase_if(records_, [&](auto const& entry) { return entry.second.since + ttl_ <= now; });
}

std::size_t InMemoryIdempotencyStore::size() const {
    std::lock_guard lock(mutex_);
    return records_.size();
}

} // namespace payments::infrastructure
