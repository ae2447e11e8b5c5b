// Known truth for C++ allocation: make_widgets leaks 1000 Widgets (64 bytes each) made with
// new; drop_widgets news and deletes 500 more; fill_vector grows a global std::vector<int>
// to 100000 elements (libstdc++ doubles capacity from 1: buffers of 4·(2^k) bytes,
// k = 0..17, 1048572 bytes in all); build_map inserts 1000 entries (a tree node and a
// heap string each) into a global std::map. The globals are destroyed at exit, before
// the exit-time profile is written, so only the Widgets are still in use then.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

struct Widget {
    char data[64];
};

static std::vector<Widget *> widgets;
static std::vector<int> numbers;
static std::map<int, std::string> names;
static Widget *volatile escape;

__attribute__((noinline)) void make_widgets() {
    widgets.reserve(1000);
    for (int i = 0; i < 1000; i++) widgets.push_back(new Widget());
}

__attribute__((noinline)) void drop_widgets() {
    for (int i = 0; i < 500; i++) {
        // Published through a volatile pointer so the compiler cannot elide new/delete.
        Widget *w = new Widget();
        escape = w;
        delete w;
    }
}

__attribute__((noinline)) void fill_vector() {
    for (int i = 0; i < 100000; i++) numbers.push_back(i);
}

__attribute__((noinline)) void build_map() {
    for (int i = 0; i < 1000; i++) names[i] = "a name that is longer than the small string buffer";
}

int main() {
    make_widgets();
    drop_widgets();
    fill_vector();
    build_map();
    std::printf("heap_cxx done %zu %zu %zu\n", widgets.size(), numbers.size(), names.size());
    return 0;
}
