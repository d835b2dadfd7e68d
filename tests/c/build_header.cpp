// build_header_cxx11 / build_header_cxx17: joint.h compiles as C++ (-std=c++11 / c++17
// -Wall -Wextra -Wpedantic -Werror, set by CMake): its extern "C" guards give the
// functions C linkage (they link against libjoint), and its types mix with C++.
#include <joint.h>
#include <joint.h>

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(JOINT_VERSION_NUMBER ==
                  ((JOINT_VERSION_MAJOR << 16) | (JOINT_VERSION_MINOR << 8) | JOINT_VERSION_PATCH),
              "JOINT_VERSION_NUMBER composition");
static_assert(std::is_same<joint_status, int32_t>::value, "joint_status is int32_t");
static_assert(JOINT_OK == 0 && JOINT_E_INVAL < 0, "status sign convention");

typedef void (*any_fn)();
#define JOINT_FN(name) reinterpret_cast<any_fn>(&name),
static const any_fn functions[] = {
#include "joint_functions.inc"
};

// Callbacks written in C++ with C linkage, as the typedefs require.
extern "C" void free_fn(void *user_data) { (void)user_data; }
static_assert(std::is_same<decltype(&free_fn), joint_free_fn>::value, "joint_free_fn");

int main()
{
    const std::size_t n = sizeof functions / sizeof functions[0];
    for (std::size_t i = 0; i < n; i++)
        if (!functions[i])
            return 1;
    joint_writer *w = nullptr;
    if (joint_writer_new(&w) != JOINT_OK || joint_write_cstr(w, "c++") != JOINT_OK)
        return 1;
    joint_writer_free(w);
    if (std::strcmp(joint_version(), JOINT_VERSION_STRING) != 0)
        return 1;
    std::printf("joint %s: %u functions declared in joint.h, all linked (C++ %ld)\n", joint_version(),
                static_cast<unsigned>(n), static_cast<long>(__cplusplus));
    return n > 80 ? 0 : 1;
}
