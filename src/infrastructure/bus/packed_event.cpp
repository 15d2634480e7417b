#include "packed_event.hpp"

#include "../codec/event_layout.hpp"

#include <array>
#include <optional>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace payments::infrastructure {

using namespace domain;

namespace {

// Text in the form generate_id() makes (a known prefix, then two groups of 13
// base32 characters holding 64 bits each) is stored as a prefix number and
// 16 bytes; anything else as its length and characters.
constexpr std::array<std::string_view, 4> prefixes = {InvoiceIdTag::prefix, PaymentIdTag::prefix,
                                                      EventIdTag::prefix, CorrelationIdTag::prefix};
constexpr std::string_view alphabet = "abcdefghijklmnopqrstuvwxyz234567";
constexpr std::size_t group = 13;

// The value of each base32 character, or -1.
constexpr std::array<std::int8_t, 256> base32_values = [] {
    std::array<std::int8_t, 256> table{};
    table.fill(-1);
    for (std::size_t i = 0; i < alphabet.size(); ++i)
        table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return table;
}();

// The 64 bits of one group, if the group is canonical (its first character
// carries only the top 4 bits).
std::optional<std::uint64_t> group_bits(std::string_view text) {
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < group; ++i) {
        int const v = base32_values[static_cast<unsigned char>(text[i])];
        if (v < 0 || (i == 0 && v >= 16)) return std::nullopt;
        bits = (bits << 5) | static_cast<std::uint64_t>(v);
    }
    return bits;
}

char* write_group(char* out, std::uint64_t bits) {
    for (int i = group - 1; i >= 0; --i) *out++ = alphabet[(bits >> (i * 5)) & 31];
    return out;
}

class Writer : public codec::VarintWriter {
public:
    void text(std::string_view t) {
        for (std::size_t p = 0; p < prefixes.size(); ++p) {
            std::string_view const prefix = prefixes[p];
            if (t.size() != prefix.size() + 2 * group || !t.starts_with(prefix)) continue;
            auto const high = group_bits(t.substr(prefix.size(), group));
            auto const low = group_bits(t.substr(prefix.size() + group, group));
            if (!high || !low) break;
            byte(static_cast<std::uint8_t>(p + 1));
            raw64(*high);
            raw64(*low);
            return;
        }
        byte(0);
        varint(t.size());
        out_.append(t);
    }

    void money(Money m) {
        integer(m.minor_units());
        out_.append(m.currency().code());
    }

    std::string& out() { return out_; }

private:
    void raw64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) byte(static_cast<std::uint8_t>(v >> (i * 8)));
    }
};

class Reader {
public:
    explicit Reader(std::uint8_t const* p) : p_(p) {}

    std::uint8_t byte() { return *p_++; }

    std::uint64_t varint() {
        std::uint64_t v = 0;
        for (int shift = 0;; shift += 7) {
            std::uint8_t const b = byte();
            v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
            if (b < 0x80) return v;
        }
    }

    std::int64_t integer() { return codec::unzigzag(varint()); }

    // The text, in the packed bytes or, for a generated id, rebuilt in `scratch`.
    std::string_view text(char (&scratch)[max_generated_id]) {
        std::uint8_t const tag = byte();
        if (tag == 0) {
            auto const n = static_cast<std::size_t>(varint());
            std::string_view const t(reinterpret_cast<char const*>(p_), n);
            p_ += n;
            return t;
        }
        std::string_view const prefix = prefixes[tag - 1];
        char* out = std::copy(prefix.begin(), prefix.end(), scratch);
        out = write_group(out, raw64());
        out = write_group(out, raw64());
        return {scratch, static_cast<std::size_t>(out - scratch)};
    }

    std::string text() {
        char scratch[max_generated_id];
        return std::string(text(scratch));
    }

    // Packed events are never read by an older release: the last field is always there.
    std::string trailing_text() { return text(); }

    template <class Id>
    Id id() {
        char scratch[max_generated_id];
        std::string_view const t = text(scratch);
        if (t.empty()) return Id();
        return Id::parse(t).value();
    }

    Timestamp time() { return Timestamp(Duration(integer())); }

    Money money() {
        std::int64_t const minor = integer();
        std::string_view const code(reinterpret_cast<char const*>(p_), 3);
        p_ += 3;
        return Money::of(minor, Currency::from_code(code).value()).value();
    }

    Failure failure() {
        auto const kind = static_cast<FailureKind>(byte());
        return {kind, text()};
    }

private:
    std::uint64_t raw64() {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(byte()) << (i * 8);
        return v;
    }

    std::uint8_t const* p_;
};

} // namespace

PackedEvent::PackedEvent(Event const& event) {
    thread_local Writer writer;
    writer.out().clear();
    codec::write_event(writer, event);
    bytes_ = std::make_unique_for_overwrite<std::uint8_t[]>(writer.out().size());
    std::memcpy(bytes_.get(), writer.out().data(), writer.out().size());
}

Event PackedEvent::unpack() const {
    Reader reader(bytes_.get());
    return codec::read_event(reader, [](std::uint8_t) { throw std::logic_error("PackedEvent: unknown event kind"); });
}

} // namespace payments::infrastructure
