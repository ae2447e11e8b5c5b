// Known truth: throws an exception through a 20-deep recursion and catches it, 200000
// times, so samples often land while the C++ unwinder is running; also burns CPU in
// Burner::burn. The program's result (the count of caught exceptions) goes to stdout.
#include <cstdio>
#include <stdexcept>
#include <string>
#include "common.h"

namespace rprof_test {
struct Burner {
    unsigned long acc = 0;
    __attribute__((noinline)) void burn() { acc += spin(2000); }
};

__attribute__((noinline)) int thrower(int depth, Burner &b) {
    if (depth == 0) {
        b.burn();
        throw std::runtime_error("deep " + std::to_string(depth));
    }
    return thrower(depth - 1, b) + 1;
}
}  // namespace rprof_test

int main() {
    rprof_test::Burner b;
    long caught = 0;
    for (int i = 0; i < 200000; i++) {
        try {
            rprof_test::thrower(20, b);
        } catch (const std::runtime_error &) {
            caught++;
        }
    }
    report_cpu();
    std::printf("caught %ld\n", caught);
    return 0;
}
