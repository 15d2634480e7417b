#pragma once
// What every benchmark figure prints: one tab-separated row per figure, so
// that scripts/bench can gather rows from several processes into one table.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <utility>
#include <string>
#include <string_view>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace bench {

/// Which way a ratio (figure / baseline) or an absolute figure must go.
enum class Goal { at_most, at_least };

/// One row of the table: the figure, the raw baseline measured in the same
/// run (0: none, the target is absolute), and the target.
struct Row {
    std::string name;
    double value = 0;
    double baseline = 0;
    std::string unit;
    Goal goal = Goal::at_most;
    double target = 0; ///< a ratio when there is a baseline, else in `unit`
};

/// A number as a reader wants it: whole above 1,000, four digits below.
inline std::string number(double v) { return v >= 1000 ? fmt::format("{:.0f}", v) : fmt::format("{:.4g}", v); }

inline void print(Row const& row) {
    bool const relative = row.baseline > 0;
    double const compared = relative ? row.value / row.baseline : row.value;
    bool const met = row.goal == Goal::at_most ? compared <= row.target : compared >= row.target;
    std::string_view const sign = row.goal == Goal::at_most ? "<=" : ">=";
    fmt::print("ROW\t{}\t{} {}\t{}\t{}\t{} {}{}\t{}\n", row.name, number(row.value), row.unit,
               relative ? fmt::format("{} {}", number(row.baseline), row.unit) : "-",
               relative ? fmt::format("{:.3f}", compared) : "-", sign, number(row.target),
               relative ? "x" : " " + row.unit, met ? "met" : "NOT MET");
    std::fflush(stdout);
}

/// Nanoseconds `fn` takes, the median of `repetitions` runs (noise only ever adds time).
template <class F>
double median_ns(int repetitions, F&& fn) {
    std::vector<double> samples;
    for (int i = 0; i < repetitions; ++i) {
        auto const start = std::chrono::steady_clock::now();
        fn();
        samples.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(samples.begin(), samples.end());
    return samples[samples.size() / 2];
}

/// One timed thing: `setup` runs untimed before each run.
struct Trial {
    std::function<void()> setup;
    std::function<void()> run;
};

/// Median nanoseconds of a figure's runs and of its baseline's, alternated
/// run by run so that the machine's noise falls on both alike.
inline std::pair<double, double> paired_median_ns(int repetitions, Trial const& figure, Trial const& baseline) {
    std::vector<double> a, b;
    auto timed = [](Trial const& trial) {
        trial.setup();
        auto const start = std::chrono::steady_clock::now();
        trial.run();
        return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    };
    for (int i = 0; i < repetitions; ++i) {
        a.push_back(timed(figure));
        b.push_back(timed(baseline));
    }
    auto median = [](std::vector<double>& v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    return {median(a), median(b)};
}

/// `total` divided by a count.
inline double per(double total, std::size_t count) { return total / static_cast<double>(count); }

/// The process's resident set, in bytes.
inline long resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    long pages = 0, resident = 0;
    statm >> pages >> resident;
    return resident * sysconf(_SC_PAGESIZE);
}

/// Runs `fn(arg)` in a child process and returns what it returned: a fresh
/// heap for each resident-memory figure. Call it before starting threads.
template <class F>
long in_child(F fn, std::size_t arg) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_t const pid = fork();
    if (pid == 0) {
        long result = -1;
        try {
            result = fn(arg);
        } catch (...) {
        }
        [[maybe_unused]] auto written = write(fds[1], &result, sizeof result);
        _exit(0);
    }
    long result = -1;
    [[maybe_unused]] auto got = read(fds[0], &result, sizeof result);
    close(fds[0]);
    close(fds[1]);
    waitpid(pid, nullptr, 0);
    if (result < 0) throw std::runtime_error("a memory measurement failed");
    return result;
}

} // namespace bench
