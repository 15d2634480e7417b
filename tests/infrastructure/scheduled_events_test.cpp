#include "support/builders.hpp"

#include "infrastructure/bus/scheduled_events.hpp"

#include <payments/infrastructure/system/seeded_random.hpp>

using namespace test;
using infrastructure::PackedEvent;
using infrastructure::ScheduledEvents;

namespace {

EventEnvelope generated_envelope(Random& random) {
    return {EventId::generate(random), t0() + 1234567us, CorrelationId::generate(random), InvoiceId::generate(random),
            PaymentId::generate(random), 3};
}

// Every kind, with generated ids (packed as bytes) and caller-chosen ones (packed as text).
std::vector<Event> every_kind() {
    infrastructure::SeededRandom random(11);
    EventEnvelope const chosen{EventId::parse("evt_1").value(), t0() - 5s, CorrelationId::parse("req-from-client").value(),
                               iid("inv_b42"), PaymentId(), 0};
    Money const yen = Money::positive(500, Currency::from_code("JPY").value()).value();
    std::string const key(PaymentId::generate(random).str());
    return {
        InvoiceCreated{chosen, usd(1999), "Order #7 \xe2\x82\xac, \"quoted\"\n"},
        InvoiceCreated{generated_envelope(random), yen, ""},
        PaymentRequested{generated_envelope(random), usd(1), "pm_card_ok", key, t0() + 90s, "psp-b"},
        PaymentRequested{chosen, usd(Money::max_minor_units), "", "a-key-that-is-not-an-id", t0()},
        PaymentSucceeded{generated_envelope(random), usd(250), "ch_1_" + key},
        PaymentFailed{generated_envelope(random), {FailureKind::unknown_outcome, "gateway did not answer"}},
        InvoicePaid{chosen, yen},
        InvoiceFailed{generated_envelope(random), {FailureKind::declined, std::string(300, 'x')}},
    };
}

} // namespace

TEST_CASE("a packed event unpacks equal to the original, for every kind") {
    for (Event const& event : every_kind()) {
        CAPTURE(event_name(event));
        CHECK(PackedEvent(event).unpack() == event);
    }
}

TEST_CASE("text that only looks like a generated id is packed as text and comes back unchanged") {
    // Right prefix and length, but 'z' first in a group holds more than the 4 bits a generated id has there.
    std::string const almost = "pay_zaaaaaaaaaaaaaaaaaaaaaaaaa";
    std::string const upper = "pay_AAAAAAAAAAAAAAAAAAAAAAAAAA";
    Event const event = PaymentRequested{{EventId::parse("evt_x").value(), t0(), {}, iid(), PaymentId::parse(almost).value(), 1},
                                         usd(5), "pm_card_ok", upper, t0()};
    CHECK(PackedEvent(event).unpack() == event);
}

TEST_CASE("scheduled events come out by due time, then in the order they were scheduled") {
    ScheduledEvents queue;
    std::vector<Event> const events = every_kind();
    // Due times 3, 1, 2, 1, 3, 1, 2, 1 seconds: ties must keep scheduling order.
    std::vector<int> const due = {3, 1, 2, 1, 3, 1, 2, 1};
    for (std::size_t i = 0; i < events.size(); ++i) queue.push(t0() + std::chrono::seconds(due[i]), events[i]);
    CHECK(queue.earliest() == t0() + 1s);

    std::vector<Event> out;
    queue.pop_due(t0() + 1s, 100, [&](Event e) { out.push_back(std::move(e)); });
    CHECK(out == std::vector<Event>{events[1], events[3], events[5], events[7]});

    out.clear();
    queue.pop_due(t0() + 10s, 3, [&](Event e) { out.push_back(std::move(e)); });
    CHECK(out == std::vector<Event>{events[2], events[6], events[0]});
    CHECK(queue.size() == 1);

    auto rest = queue.take_all();
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].first == t0() + 3s);
    CHECK(rest[0].second == events[4]);
    CHECK(queue.empty());
    CHECK_FALSE(queue.earliest());
}

TEST_CASE("a large random schedule comes out sorted and stable") {
    infrastructure::SeededRandom random(5);
    ScheduledEvents queue;
    std::vector<std::pair<Timestamp, int>> expected;
    for (int i = 0; i < 5000; ++i) {
        Timestamp const at = t0() + std::chrono::milliseconds(random.next_u64() % 200);
        queue.push(at, InvoicePaid{{EventId::parse("evt_" + std::to_string(i)).value(), at, {}, iid(), pid(1), i}, usd(1)});
        expected.emplace_back(at, i);
    }
    std::stable_sort(expected.begin(), expected.end(),
                     [](auto const& a, auto const& b) { return a.first < b.first; });
    std::vector<std::pair<Timestamp, int>> got;
    while (!queue.empty())
        queue.pop_due(t0() + 1s, 7, [&](Event e) {
            auto const& env = envelope_of(e);
            got.emplace_back(env.occurred_at, env.attempt);
        });
    CHECK(got == expected);
}
