#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

namespace {

bool matched_nothing = false;

// ctest runs each test case in its own process, selected by name. A name that
// selects nothing (a name CMake split, a renamed case) would otherwise pass
// without running anything; this makes such a run fail.
struct EmptyRunGuard final : doctest::IReporter {
    explicit EmptyRunGuard(doctest::ContextOptions const&) {}
    void report_query(doctest::QueryData const&) override {}
    void test_run_start() override {}
    void test_run_end(doctest::TestRunStats const& stats) override {
        matched_nothing = stats.numTestCasesPassingFilters == 0;
    }
    void test_case_start(doctest::TestCaseData const&) override {}
    void test_case_reenter(doctest::TestCaseData const&) override {}
    void test_case_end(doctest::CurrentTestCaseStats const&) override {}
    void test_case_exception(doctest::TestCaseException const&) override {}
    void subcase_start(doctest::SubcaseSignature const&) override {}
    void subcase_end() override {}
    void log_assert(doctest::AssertData const&) override {}
    void log_message(doctest::MessageData const&) override {}
    void test_case_skipped(doctest::TestCaseData const&) override {}
};

REGISTER_LISTENER("empty-run-guard", 1, EmptyRunGuard);

} // namespace

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    int const result = context.run();
    if (context.shouldExit()) return result; // --help, --list-test-cases and other queries
    if (result == 0 && matched_nothing) {
        std::fputs("error: no test case matched the filters\n", stderr);
        return 1;
    }
    return result;
}
