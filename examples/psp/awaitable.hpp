#pragma once
// The completion token the simulator's coroutines share.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace psp {

/// An awaited operation answers (error_code, results...) instead of throwing.
inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

} // namespace psp
