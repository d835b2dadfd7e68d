/* api_status: joint_status_str() and joint_status_is_fatal() for every status code the
 * header defines, and for codes it does not define. */
#include "testutil.h"

struct code {
    joint_status value;
    const char *name;
};

#define CODE(c) {c, #c}
static const struct code codes[] = {
    CODE(JOINT_OK),          CODE(JOINT_E_INVAL),       CODE(JOINT_E_NULL),
    CODE(JOINT_E_RECURSIVE), CODE(JOINT_E_STATE),       CODE(JOINT_E_LIMIT),
    CODE(JOINT_E_ADDRESS),   CODE(JOINT_E_TYPE),        CODE(JOINT_E_EOF),
    CODE(JOINT_E_IO),        CODE(JOINT_E_CONNREFUSED), CODE(JOINT_E_CLOSED),
    CODE(JOINT_E_TIMEOUT),   CODE(JOINT_E_CANCELLED),   CODE(JOINT_E_ADDRINUSE),   CODE(JOINT_E_TLS),
    CODE(JOINT_E_PROTOCOL),  CODE(JOINT_E_TOO_LARGE),   CODE(JOINT_E_REMOTE),
    CODE(JOINT_E_PANIC),     CODE(JOINT_E_POISONED),    CODE(JOINT_E_UNSUPPORTED),
    CODE(JOINT_WOULD_BLOCK), CODE(JOINT_DONE),
};
#define NCODES (sizeof codes / sizeof codes[0])

int main(void)
{
    static const joint_status unknown[] = {3, 100, -10, -99, -107, -199, -202, -299, -301,
                                           -899, -902, INT32_MAX, INT32_MIN + 1};
    const char *unknown_str = joint_status_str(12345);
    size_t i, j;

    CHECK(unknown_str != NULL);
    CHECK_STREQ(unknown_str, "unknown status");

    for (i = 0; i < NCODES; i++) {
        const char *s = joint_status_str(codes[i].value);
        printf("%-20s %5d  %-6s %s\n", codes[i].name, (int)codes[i].value,
               joint_status_is_fatal(codes[i].value) ? "fatal" : "", s);
        CHECK(s != NULL && s[0] != '\0');
        CHECK(strcmp(s, unknown_str) != 0);  /* every defined code has its own text */
        CHECK(joint_status_str(codes[i].value) == s); /* static: the same pointer each time */
        /* sign convention: 0 is success, positive codes are non-error outcomes, every error
         * is negative */
        CHECK(codes[i].value == JOINT_OK || codes[i].value == JOINT_WOULD_BLOCK ||
                      codes[i].value == JOINT_DONE
                  ? 1
                  : codes[i].value < 0);
        for (j = 0; j < i; j++) {
            CHECK(codes[j].value != codes[i].value);              /* no duplicate values */
            CHECK(strcmp(joint_status_str(codes[j].value), s) != 0); /* distinct texts */
        }
        /* Only a caught panic and its aftermath leave a context unusable. */
        CHECK(joint_status_is_fatal(codes[i].value) ==
              (codes[i].value == JOINT_E_PANIC || codes[i].value == JOINT_E_POISONED));
    }

    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK_STREQ(joint_status_str(unknown[i]), "unknown status");
        if (unknown[i] > JOINT_E_PANIC)
            CHECK(!joint_status_is_fatal(unknown[i]));
    }
    CHECK_STREQ(joint_status_str(INT32_MIN), "unknown status");

    /* Error groups documented in docs/c-api-conventions.md, "Status codes". */
    CHECK(JOINT_E_INVAL > -100 && JOINT_E_EOF > -100);
    CHECK(JOINT_E_IO <= -100 && JOINT_E_ADDRINUSE > -200);
    CHECK(JOINT_E_PROTOCOL <= -200 && JOINT_E_TOO_LARGE > -300);
    CHECK(JOINT_E_REMOTE <= -300 && JOINT_E_REMOTE > -900);
    CHECK(JOINT_E_PANIC <= -900 && JOINT_E_POISONED <= -900);
    printf("api_status: ok\n");
    return 0;
}
