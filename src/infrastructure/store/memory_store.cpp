#include <payments/infrastructure/store/memory_store.hpp>

#include <boost/assert.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <list>
#include <map>
#include <set>

namespace payments::infrastructure {

using namespace domain;
using application::Changes;

struct InMemoryStore::Shard {
    mutable std::mutex mutex;
    std::unordered_map<InvoiceId, std::pair<Invoice, std::uint64_t>> invoices; // Owned by: mutex; with creation sequence
    std::unordered_map<PaymentId, Payment> payments;                           // Owned by: mutex
    std::set<PaymentId> open; // Owned by: mutex; the payments REQUESTED or UNKNOWN, for the janitor
    std::unordered_map<InvoiceId, std::vector<Event>> history;                 // Owned by: mutex
    // Padding: neighbouring shards' locks do not share a cache line.
    char pad[64];
};

// An entry of the creation order: where the invoice lives. The record's
// address is stable (unordered_map nodes never move) and invoices are never deleted.
struct InMemoryStore::Listed {
    std::pair<Invoice, std::uint64_t> const* record;
    Shard* shard;
};

// Events committed and not yet delivered, by a number in commit order.
struct InMemoryStore::Outbox {
    mutable std::mutex mutex;
    std::uint64_t next = 0;                                     // Owned by: mutex
    std::map<std::uint64_t, Event> pending;                     // Owned by: mutex
    std::unordered_map<EventId, std::uint64_t> pending_by_id;   // Owned by: mutex
    std::uint64_t scheduled = 0;                                // Owned by: mutex; the last scheduled row's number
    // Scheduled: each with its number in the order they were written (from 1).
    std::map<std::pair<Timestamp, EventId>, std::pair<std::uint64_t, Event>> later; // Owned by: mutex
    std::unordered_map<EventId, std::pair<Timestamp, EventId>> later_by_id; // Owned by: mutex
};

namespace {

// A commit touches a few shards: kept on the stack, no allocation per commit.
using ShardIndexes = boost::container::small_vector<std::size_t, 6>;

// The shards of a commit's invoice, payments (and their invoices) and events,
// each once, in index order: the order they are locked in.
template <class IndexOf>
ShardIndexes shards_touched(Changes const& changes, IndexOf index_of) {
    ShardIndexes touched;
    if (changes.invoice) touched.push_back(index_of(changes.invoice->invoice.id()));
    for (auto const& write : changes.payments) {
        touched.push_back(index_of(write.payment.id()));
        touched.push_back(index_of(write.payment.invoice_id()));
    }
    for (Event const& event : changes.events) touched.push_back(index_of(envelope_of(event).invoice_id));
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    return touched;
}

} // namespace

InMemoryStore::InMemoryStore(std::size_t shards)
    : shard_count_(std::max<std::size_t>(shards, 1)), shards_(std::make_unique<Shard[]>(shard_count_)),
      outbox_(std::make_unique<Outbox>()) {}

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

std::size_t InMemoryStore::invoice_count() const {
    std::lock_guard lock(order_mutex_);
    return order_.size();
}

std::size_t InMemoryStore::payment_count() const {
    std::size_t count = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
        std::lock_guard lock(shards_[i].mutex);
        count += shards_[i].payments.size();
    }
    return count;
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

application::OpenAttemptPage InMemoryStore::open_attempts(std::optional<PaymentId> const& after,
                                                          std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    // The first `limit` open payments after `after` of each shard, merged: the first `limit` of all.
    std::vector<Payment> candidates;
    for (std::size_t i = 0; i < shard_count_; ++i) {
        std::lock_guard lock(shards_[i].mutex);
        auto it = after ? shards_[i].open.upper_bound(*after) : shards_[i].open.begin();
        for (std::size_t n = 0; it != shards_[i].open.end() && n < limit; ++it, ++n)
            candidates.push_back(shards_[i].payments.at(*it));
    }
    std::sort(candidates.begin(), candidates.end(), [](Payment const& a, Payment const& b) { return a.id() < b.id(); });
    if (candidates.size() > limit) candidates.erase(candidates.begin() + static_cast<std::ptrdiff_t>(limit), candidates.end());
    application::OpenAttemptPage page;
    if (candidates.size() == limit) page.next = candidates.back().id();
    for (Payment& payment : candidates) {
        auto invoice = this->invoice(payment.invoice_id());
        if (!invoice) continue;
        bool const settling = invoice->status() == InvoiceStatus::processing ||
                              invoice->status() == InvoiceStatus::needs_review;
        bool const an_operators = invoice->status() == InvoiceStatus::needs_review && payment.unresolved() &&
                                  invoice->under_review() == payment.id();
        if (settling && !an_operators) page.data.push_back({std::move(*invoice), std::move(payment)});
    }
    return page;
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
    return check_payments_locked(changes, changes.invoice ? &changes.invoice->invoice.id() : nullptr);
}

// `with`: the invoice committed with the payments, if any.
Result<void> InMemoryStore::check_payments_locked(Changes const& changes, InvoiceId const* with) const {
    for (auto const& [payment, expected] : changes.payments) {
        Shard const& shard = shard_of(payment.id());
        auto it = shard.payments.find(payment.id());
        if (expected == 0 && it != shard.payments.end())
            return reject(ErrorCode::already_exists, "payment " + std::string(payment.id().str()) + " already exists");
        if (expected != 0 && (it == shard.payments.end() || it->second.version() != expected))
            return reject(ErrorCode::conflict, "payment " + std::string(payment.id().str()) + " changed since it was read");
        // A new attempt is committed with its invoice, which lists it.
        if (expected == 0 && !(with && *with == payment.invoice_id())) {
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
    ShardIndexes const touched = shards_touched(changes, [this](auto const& key) { return index_of(key); });
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
    write_locked(changes);
    locks.clear();
    if (order_lock) order_lock.unlock();
    enqueue(changes, false);
    return {};
}

// The payments and the invoices' histories of a checked commit; its shards are locked.
void InMemoryStore::write_locked(Changes& changes) {
    for (auto& [payment, expected] : changes.payments) {
        Shard& shard = shard_of(payment.id());
        PaymentId id = payment.id();
        if (payment.status() == PaymentStatus::requested || payment.unresolved()) shard.open.insert(id);
        else shard.open.erase(id);
        shard.payments.insert_or_assign(std::move(id), std::move(payment));
    }
    for (Event const& event : changes.events) {
        InvoiceId const& id = envelope_of(event).invoice_id;
        shard_of(id).history[id].push_back(event);
    }
}

// Into the outbox, once the commit is done; the events are copied when the caller still needs them.
void InMemoryStore::enqueue(Changes& changes, bool keep_events) {
    std::lock_guard lock(outbox_->mutex);
    for (Event& event : changes.events) {
        std::uint64_t const seq = outbox_->next++;
        outbox_->pending_by_id.emplace(envelope_of(event).id, seq);
        if (keep_events) outbox_->pending.emplace(seq, event);
        else outbox_->pending.emplace(seq, std::move(event));
    }
    for (auto& [event, at] : changes.scheduled) {
        std::pair<Timestamp, EventId> const key{at, envelope_of(event).id};
        outbox_->later_by_id.emplace(envelope_of(event).id, key);
        // Numbered only when it is a new row: `scheduled` is the last row's number (review 22, G6).
        std::uint64_t const seq = outbox_->scheduled + 1;
        bool const inserted = keep_events ? outbox_->later.emplace(key, std::pair{seq, event}).second
                                          : outbox_->later.emplace(key, std::pair{seq, std::move(event)}).second;
        if (inserted) outbox_->scheduled = seq;
    }
}

Result<Changes> InMemoryStore::update(InvoiceId const& id, Decide const& decide, Apply const& apply) {
    std::size_t const home = index_of(id);
    Shard& shard = shards_[home];
    std::unique_lock lock(shard.mutex);
    auto it = shard.invoices.find(id);
    if (it == shard.invoices.end()) return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
    // A reference stays valid when the map rehashes; an iterator would not.
    Invoice& invoice = it->second.first;
    auto decided = decide(invoice);
    if (!decided) return decided;
    Changes& changes = *decided;
    BOOST_ASSERT_MSG(!changes.invoice, "update() writes the invoice itself");
    std::uint64_t const version = invoice.version();

    // The shards of its new payments too, without letting go of the invoice's
    // when the lock order allows: lower ones only if free at once, higher ones
    // in order. Otherwise all are taken again in order, and the invoice must
    // not have moved meanwhile.
    ShardIndexes touched = shards_touched(changes, [this](auto const& key) { return index_of(key); });
    boost::container::small_vector<std::unique_lock<std::mutex>, 6> locks;
    bool in_order = true;
    for (std::size_t i : touched) {
        if (i == home) continue;
        if (i > home) locks.emplace_back(shards_[i].mutex);
        else if (!locks.emplace_back(shards_[i].mutex, std::try_to_lock).owns_lock()) {
            in_order = false;
            break;
        }
    }
    if (!in_order) {
        locks.clear();
        lock.unlock();
        touched.push_back(home);
        std::sort(touched.begin(), touched.end());
        touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
        for (std::size_t i : touched) locks.emplace_back(shards_[i].mutex);
        if (invoice.version() != version)
            return reject(ErrorCode::conflict, "invoice " + std::string(id.str()) + " changed since it was read");
    }
    if (auto ok = check_payments_locked(changes, &id); !ok) return ok.error();
    apply(invoice, changes);
    write_locked(changes);
    locks.clear();
    if (lock) lock.unlock();
    enqueue(changes, true);
    Changes published;
    published.events = std::move(changes.events);
    published.scheduled = std::move(changes.scheduled);
    return published;
}

application::OutboxPage InMemoryStore::undelivered_page(application::OutboxCursor const& from,
                                                        std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    std::lock_guard lock(outbox_->mutex);
    application::OutboxPage page;
    if (outbox_->next == 0) return page;
    // Numbered from 1 outside: 0 would be a row.
    std::uint64_t const through = from.through.value_or(outbox_->next);
    auto it = from.after.value_or(0) > 0 ? outbox_->pending.upper_bound(*from.after - 1) : outbox_->pending.begin();
    for (; it != outbox_->pending.end() && it->first + 1 <= through && page.events.size() < limit; ++it)
        page.events.push_back(it->second);
    if (page.events.size() == limit) page.next = application::OutboxCursor{std::prev(it)->first + 1, through};
    return page;
}

void InMemoryStore::mark_delivered(EventId const& id) {
    std::lock_guard lock(outbox_->mutex);
    if (auto it = outbox_->pending_by_id.find(id); it != outbox_->pending_by_id.end()) {
        outbox_->pending.erase(it->second);
        outbox_->pending_by_id.erase(it);
    }
    if (auto it = outbox_->later_by_id.find(id); it != outbox_->later_by_id.end()) {
        outbox_->later.erase(it->second);
        outbox_->later_by_id.erase(it);
    }
}

application::ScheduledPage InMemoryStore::scheduled_page(application::ScheduledCursor const& from,
                                                         std::size_t limit) const {
    BOOST_ASSERT(limit > 0);
    std::lock_guard lock(outbox_->mutex);
    application::ScheduledPage page;
    std::uint64_t const through = from.through.value_or(outbox_->scheduled);
    auto it = from.after ? outbox_->later.upper_bound({from.after->at, from.after->id}) : outbox_->later.begin();
    for (; it != outbox_->later.end() && page.events.size() < limit; ++it)
        if (it->second.first <= through) page.events.push_back({it->second.second, it->first.first});
    if (page.events.size() == limit)
        page.next = application::ScheduledCursor{{{std::prev(it)->first.first, std::prev(it)->first.second}}, through};
    return page;
}

std::vector<Event> InMemoryStore::history(InvoiceId const& id) const {
    Shard const& shard = shard_of(id);
    std::lock_guard lock(shard.mutex);
    auto it = shard.history.find(id);
    return it == shard.history.end() ? std::vector<Event>{} : it->second;
}

using application::IdempotencyKey;

// One record, and where it sits in the orders it belongs to.
struct InMemoryIdempotencyStore::Record {
    std::string fingerprint;
    std::optional<application::PaymentResult> outcome; // empty while the request runs
    Timestamp since;                                    // claimed, then completed
    std::list<IdempotencyKey const*>::iterator in_order;
    std::list<IdempotencyKey const*>::iterator in_scope; // while completed
};

// A client scope's completed records, oldest completion first: the ones it may lose at the cap.
struct InMemoryIdempotencyStore::Scope {
    std::list<IdempotencyKey const*> completed;
};

// Keys and list entries point into by_key and scopes, whose nodes never move.
struct InMemoryIdempotencyStore::Records {
    std::unordered_map<IdempotencyKey, Record> by_key;
    std::list<IdempotencyKey const*> order; // by `since`, oldest first: the expiry order
    std::unordered_map<std::string, Scope> scopes;
    std::set<std::pair<std::size_t, std::string const*>> by_size; // (completed records, scope); the largest last
    std::uint64_t evictions = 0;

    void link_completed(IdempotencyKey const& key, Record& record) {
        auto& [name, scope] = *scopes.try_emplace(key.scope()).first;
        by_size.erase({scope.completed.size(), &name});
        scope.completed.push_back(&key);
        record.in_scope = std::prev(scope.completed.end());
        by_size.insert({scope.completed.size(), &name});
    }

    void unlink_completed(IdempotencyKey const& key, Record& record) {
        auto it = scopes.find(key.scope());
        by_size.erase({it->second.completed.size(), &it->first});
        it->second.completed.erase(record.in_scope);
        if (it->second.completed.empty()) scopes.erase(it);
        else by_size.insert({it->second.completed.size(), &it->first});
    }

    void erase(std::unordered_map<IdempotencyKey, Record>::iterator it) {
        order.erase(it->second.in_order);
        if (it->second.outcome) unlink_completed(it->first, it->second);
        by_key.erase(it);
    }
};

namespace {

// The record is older than its time to live.
// Strictly after the time to live: a key used exactly ttl ago still replays.
bool expired(Timestamp since, Duration ttl, Timestamp now) { return since + ttl < now; }

} // namespace

InMemoryIdempotencyStore::InMemoryIdempotencyStore(Duration ttl, std::size_t max_records)
    : ttl_(ttl), max_records_(std::max<std::size_t>(1, max_records)), records_(std::make_unique<Records>()) {}

InMemoryIdempotencyStore::~InMemoryIdempotencyStore() = default;

application::IdempotencyClaim InMemoryIdempotencyStore::claim(IdempotencyKey const& key, std::string_view fingerprint,
                                                             Timestamp now) {
    using State = application::IdempotencyClaim::State;
    std::lock_guard lock(mutex_);
    // Amortised O(1): only records whose time has come are looked at.
    purge_locked(now);
    auto& r = *records_;
    if (auto it = r.by_key.find(key); it != r.by_key.end()) {
        Record const& record = it->second;
        if (!expired(record.since, ttl_, now)) {
            if (record.fingerprint != fingerprint) return {State::mismatch, std::nullopt};
            if (!record.outcome) return {State::in_use, std::nullopt};
            return {State::replay, record.outcome};
        }
        r.erase(it); // expired, though behind a newer one in the order
    }
    if (r.by_key.size() >= max_records_) evict_locked();
    auto [it, inserted] = r.by_key.try_emplace(key, Record{std::string(fingerprint), std::nullopt, now, {}, {}});
    r.order.push_back(&it->first);
    it->second.in_order = std::prev(r.order.end());
    return {State::claimed, std::nullopt};
}

void InMemoryIdempotencyStore::complete(IdempotencyKey const& key, application::PaymentResult outcome, Timestamp now) {
    std::lock_guard lock(mutex_);
    auto& r = *records_;
    auto it = r.by_key.find(key);
    if (it == r.by_key.end()) return;
    Record& record = it->second;
    if (record.outcome) r.unlink_completed(it->first, record);
    record.outcome = std::move(outcome);
    record.since = now;
    r.order.splice(r.order.end(), r.order, record.in_order);
    r.link_completed(it->first, record);
}

void InMemoryIdempotencyStore::release(IdempotencyKey const& key) {
    std::lock_guard lock(mutex_);
    if (auto it = records_->by_key.find(key); it != records_->by_key.end()) records_->erase(it);
}

std::size_t InMemoryIdempotencyStore::purge_expired(Timestamp now) {
    std::lock_guard lock(mutex_);
    return purge_locked(now);
}

std::size_t InMemoryIdempotencyStore::purge_locked(Timestamp now) {
    auto& r = *records_;
    std::size_t purged = 0;
    while (!r.order.empty()) {
        auto it = r.by_key.find(*r.order.front());
        if (!expired(it->second.since, ttl_, now)) break;
        r.erase(it);
        ++purged;
    }
    return purged;
}

// The cap's rule: the oldest completed record of the scope holding the most.
void InMemoryIdempotencyStore::evict_locked() {
    auto& r = *records_;
    if (r.by_size.empty()) return; // every record is a request still running
    Scope const& largest = r.scopes.find(*r.by_size.rbegin()->second)->second;
    r.erase(r.by_key.find(*largest.completed.front()));
    ++r.evictions;
}

std::size_t InMemoryIdempotencyStore::size() const {
    std::lock_guard lock(mutex_);
    return records_->by_key.size();
}

std::uint64_t InMemoryIdempotencyStore::evictions() const {
    std::lock_guard lock(mutex_);
    return records_->evictions;
}

} // namespace payments::infrastructure
