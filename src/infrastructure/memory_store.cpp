#include <payments/infrastructure/memory_store.hpp>

#include <boost/container/small_vector.hpp>

#include <algorithm>

namespace payments::infrastructure {

using namespace domain;
using application::Changes;

struct InMemoryStore::Shard {
    mutable std::mutex mutex;
    std::unordered_map<InvoiceId, std::pair<Invoice, std::uint64_t>> invoices; // Owned by: mutex; with creation sequence
    std::unordered_map<PaymentId, Payment> payments;                           // Owned by: mutex
    // Padding: neighbouring shards' locks do not share a cache line.
    char pad[64];
};

// An entry of the creation order: where the invoice lives. The record's
// address is stable (unordered_map nodes never move) and invoices are never deleted.
struct InMemoryStore::Listed {
    std::pair<Invoice, std::uint64_t> const* record;
    Shard* shard;
};

InMemoryStore::InMemoryStore(std::size_t shards)
    : shard_count_(std::max<std::size_t>(shards, 1)), shards_(std::make_unique<Shard[]>(shard_count_)) {}

InMemoryStore::~InMemoryStore() = default;

template <class Id>
std::size_t InMemoryStore::index_of(Id const& id) const {
    return std::hash<Id>{}(id) % shard_count_;
}

InMemoryStore::Shard& InMemoryStore::shard_of(InvoiceId const& id) const { return shards_[index_of(id)]; }
InMemoryStore::Shard& InMemoryStore::shard_of(PaymentId const& id) const { return shards_[index_of(id)]; }

std::optional<Invoice> InMemoryStore::invoice(InvoiceId const& id) const {
    Shard const& shard = shard_of(id);
    std::lock_guard lock(shard.mutex);
    auto it = shard.invoices.find(id);
    if (it == shard.invoices.end()) return std::nullopt;
    return it->second.first;
}

application::InvoicePage InMemoryStore::invoices(application::InvoiceQuery const& query) const {
    std::lock_guard order_lock(order_mutex_);
    std::size_t from = 0;
    if (query.after) {
        Shard const& shard = shard_of(*query.after);
        std::lock_guard lock(shard.mutex);
        auto it = shard.invoices.find(*query.after);
        if (it == shard.invoices.end()) return {};
        from = it->second.second + 1;
    }
    application::InvoicePage page;
    for (std::size_t i = from; i < order_.size(); ++i) {
        std::lock_guard lock(order_[i].shard->mutex);
        Invoice const& invoice = order_[i].record->first;
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
    Shard const& shard = shard_of(id);
    std::lock_guard lock(shard.mutex);
    auto it = shard.payments.find(id);
    if (it == shard.payments.end()) return std::nullopt;
    return it->second;
}

std::vector<Payment> InMemoryStore::payments_of(InvoiceId const& id) const {
    // The invoice lists its attempts; every attempt was committed with it.
    auto const invoice = this->invoice(id);
    std::vector<Payment> result;
    if (!invoice) return result;
    result.reserve(invoice->attempts().size());
    for (PaymentId const& pid : invoice->attempts())
        if (auto found = payment(pid)) result.push_back(std::move(*found));
    return result;
}

Result<void> InMemoryStore::check_locked(Changes const& changes) const {
    if (changes.invoice) {
        auto const& [invoice, expected] = *changes.invoice;
        Shard const& shard = shard_of(invoice.id());
        auto it = shard.invoices.find(invoice.id());
        if (expected == 0 && it != shard.invoices.end())
            return reject(ErrorCode::already_exists, "invoice " + std::string(invoice.id().str()) + " already exists");
        if (expected != 0 && (it == shard.invoices.end() || it->second.first.version() != expected))
            return reject(ErrorCode::conflict, "invoice " + std::string(invoice.id().str()) + " changed since it was read");
    }
    for (auto const& [payment, expected] : changes.payments) {
        Shard const& shard = shard_of(payment.id());
        auto it = shard.payments.find(payment.id());
        if (expected == 0 && it != shard.payments.end())
            return reject(ErrorCode::already_exists, "payment " + std::string(payment.id().str()) + " already exists");
        if (expected != 0 && (it == shard.payments.end() || it->second.version() != expected))
            return reject(ErrorCode::conflict, "payment " + std::string(payment.id().str()) + " changed since it was read");
        // A new attempt is committed with its invoice, which lists it.
        if (expected == 0 && !(changes.invoice && changes.invoice->invoice.id() == payment.invoice_id())) {
            if (!shard_of(payment.invoice_id()).invoices.contains(payment.invoice_id()))
                return reject(ErrorCode::not_found, "no invoice " + std::string(payment.invoice_id().str()));
            return reject(ErrorCode::invalid_argument,
                          "payment " + std::string(payment.id().str()) + " must be committed with its invoice");
        }
        if (expected != 0 && it->second.invoice_id() != payment.invoice_id())
            return reject(ErrorCode::invalid_argument, "payment " + std::string(payment.id().str()) + " changed invoice");
    }
    return {};
}

Result<void> InMemoryStore::commit(Changes changes) {
    bool const creates = changes.invoice && changes.invoice->expected_version == 0;
    // Every shard the commit touches, locked in index order.
    // A commit touches a few shards: kept on the stack, no allocation per commit.
    boost::container::small_vector<std::size_t, 6> touched;
    if (changes.invoice) touched.push_back(index_of(changes.invoice->invoice.id()));
    for (auto const& write : changes.payments) {
        touched.push_back(index_of(write.payment.id()));
        touched.push_back(index_of(write.payment.invoice_id()));
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    std::unique_lock<std::mutex> order_lock;
    if (creates) order_lock = std::unique_lock(order_mutex_);
    boost::container::small_vector<std::unique_lock<std::mutex>, 6> locks;
    for (std::size_t i : touched) locks.emplace_back(shards_[i].mutex);

    if (auto ok = check_locked(changes); !ok) return ok;
    if (changes.invoice) {
        Invoice& invoice = changes.invoice->invoice;
        Shard& shard = shard_of(invoice.id());
        if (creates) {
            InvoiceId id = invoice.id(); // a copy: the record below takes the invoice apart
            auto [it, inserted] = shard.invoices.try_emplace(std::move(id), std::move(invoice), order_.size());
            order_.push_back({&it->second, &shard});
        } else {
            shard.invoices.find(invoice.id())->second.first = std::move(invoice);
        }
    }
    for (auto& [payment, expected] : changes.payments) {
        Shard& shard = shard_of(payment.id());
        PaymentId id = payment.id();
        shard.payments.insert_or_assign(std::move(id), std::move(payment));
    }
    return {};
}

InMemoryIdempotencyStore::InMemoryIdempotencyStore(Duration ttl) : ttl_(ttl) {}

application::IdempotencyClaim InMemoryIdempotencyStore::claim(application::IdempotencyKey const& key,
                                                             std::string_view fingerprint, Timestamp now) {
    using State = application::IdempotencyClaim::State;
    std::lock_guard lock(mutex_);
    // Amortised O(1): only records whose time has come are looked at.
    purge_locked(now);
    auto [it, inserted] = records_.try_emplace(key, Record{std::string(fingerprint), std::nullopt, now});
    if (inserted) {
        expiry_.push_back({now, &it->first});
        return {State::claimed, std::nullopt};
    }
    Record& record = it->second;
    if (record.released || expired(record, now)) {
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
    // Marked, not erased: its expiry entry still points at it.
    if (auto it = records_.find(key); it != records_.end()) {
        it->second.released = true;
        it->second.outcome.reset();
    }
}

std::size_t InMemoryIdempotencyStore::purge_expired(Timestamp now) {
    std::lock_guard lock(mutex_);
    return purge_locked(now);
}

std::size_t InMemoryIdempotencyStore::purge_locked(Timestamp now) {
    std::size_t purged = 0;
    while (!expiry_.empty() && expiry_.front().at + ttl_ < now) {
        Expiry const entry = expiry_.front();
        expiry_.pop_front();
        auto it = records_.find(*entry.key);
        if (expired(it->second, now)) {
            records_.erase(it);
            ++purged;
        } else {
            // Completed or claimed again since: look again when that expires.
            expiry_.push_back({it->second.since, entry.key});
        }
    }
    return purged;
}

std::size_t InMemoryIdempotencyStore::size() const {
    std::lock_guard lock(mutex_);
    return records_.size();
}

} // namespace payments::infrastructure
