/* build_header_c99: joint.h compiles as strict C99 (-std=c99 -Wall -Wextra -Wpedantic
 * -Wstrict-prototypes -Werror, set by CMake), twice (include guard), and every function it
 * declares links (the list, joint_functions.inc, is generated from the header by CMake). */
#include <joint.h>
#include <joint.h> /* the include guard makes a second inclusion harmless */

#include <stdio.h>

/* Compile-time checks of the constants' types and values. */
typedef char check_number[(JOINT_VERSION_NUMBER ==
                           ((JOINT_VERSION_MAJOR << 16) | (JOINT_VERSION_MINOR << 8) | JOINT_VERSION_PATCH))
                              ? 1 : -1];
typedef char check_ok[(JOINT_OK == 0 && JOINT_E_INVAL < 0) ? 1 : -1];
typedef char check_status[(sizeof(joint_status) == 4) ? 1 : -1];

typedef void (*any_fn)(void);
#define JOINT_FN(name) (any_fn)name,
static const any_fn functions[] = {
#include "joint_functions.inc"
};

int main(void)
{
    size_t i, n = sizeof functions / sizeof functions[0];
    check_number *unused_number = NULL;
    check_ok *unused_ok = NULL;
    check_status *unused_status = NULL;
    (void)unused_number, (void)unused_ok, (void)unused_status;

    for (i = 0; i < n; i++) {
        if (!functions[i]) {
            fprintf(stderr, "function %u is NULL\n", (unsigned)i);
            return 1;
        }
    }
    printf("joint %s: %u functions declared in joint.h, all linked (C99)\n", joint_version(), (unsigned)n);
    return n > 80 ? 0 : 1; /* the generated list must not be (nearly) empty */
}
