// A consumer translation unit that uses a deprecated Asio name next to the
// engine: the library sets no Asio configuration macro that could reach it. Building
// payments_tests builds this (tests/CMakeLists.txt); it is never run.

#include <payments/engine.hpp>

#include <boost/asio/io_context.hpp>

namespace {

[[maybe_unused]] void run_with_work(boost::asio::io_context& io) {
    boost::asio::io_context::work work(io); // deprecated in Asio, still the application's choice
    auto engine = payments::Engine::builder().run_on(io).build();
    (void)engine;
}

} // namespace
