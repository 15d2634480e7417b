#include "support/builders.hpp"

#include <payments/infrastructure/system/seeded_random.hpp>

#include <unordered_set>

using namespace test;

TEST_CASE("caller-supplied ids are validated") {
    for (std::string const& good : std::vector<std::string>{"a", "inv_1", "A-z_9", std::string(64, 'x')}) {
        CAPTURE(good);
        CHECK(InvoiceId::parse(good));
    }
    for (std::string const& bad : std::vector<std::string>{"", std::string(65, 'x'), "a b", "inv/1", "inv\n", "caf\xc3\xa9", "a.b"}) {
        CAPTURE(bad);
        auto id = InvoiceId::parse(bad);
        REQUIRE_FALSE(id);
        CHECK(id.error().code == ErrorCode::invalid_argument);
    }
}

TEST_CASE("generated ids are prefixed, URL-safe, unique and reproducible from a seed") {
    infrastructure::SeededRandom random(7);
    std::unordered_set<std::string> seen;
    for (int i = 0; i < 10000; ++i) {
        auto id = InvoiceId::generate(random);
        REQUIRE(id.str().starts_with("inv_"));
        REQUIRE(id.str().size() == 30);
        REQUIRE(is_valid_id(id.str()));
        REQUIRE(seen.insert(std::string(id.str())).second);
    }
    CHECK(PaymentId::generate(random).str().starts_with("pay_"));
    infrastructure::SeededRandom a(99), b(99);
    CHECK(EventId::generate(a) == EventId::generate(b));
}

TEST_CASE("ids of every length copy, move and compare by their text") {
    for (std::size_t length : {1u, 30u, 39u, 40u, 64u}) {
        CAPTURE(length);
        std::string const text(length, 'a');
        auto const original = InvoiceId::parse(text).value();
        InvoiceId copy = original;
        CHECK(copy.str() == text);
        InvoiceId moved = std::move(copy);
        CHECK(moved == original);
        InvoiceId assigned = InvoiceId::parse("inv_other").value();
        assigned = moved;
        CHECK(assigned.str() == text);
        assigned = InvoiceId::parse(std::string(64, 'z')).value(); // replaces heap text or inline text
        CHECK(assigned.str() == std::string(64, 'z'));
        assigned = std::move(moved);
        CHECK(assigned == original);
        CHECK(std::hash<InvoiceId>{}(assigned) == std::hash<std::string_view>{}(text));
    }
    CHECK(InvoiceId::parse("inv_a").value() < InvoiceId::parse("inv_b").value());
    CHECK(InvoiceId::parse(std::string(50, 'a')).value() < InvoiceId::parse("b").value());
    CHECK(InvoiceId().empty());
}
