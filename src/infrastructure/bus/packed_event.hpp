#pragma once

#include <payments/domain/events.hpp>

#include <cstdint>
#include <memory>

namespace payments::infrastructure {

// An event in a compact binary form, for events that wait long in memory (a
// scheduled retry may wait minutes, and there may be a million): a generated
// id takes 17 bytes instead of a 32-byte string and a heap block. unpack()
// gives back an equal event.
class PackedEvent {
public:
    explicit PackedEvent(domain::Event const& event);

    domain::Event unpack() const;

private:
    std::unique_ptr<std::uint8_t[]> bytes_;
};

} // namespace payments::infrastructure
