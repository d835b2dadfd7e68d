/* api_version: the four places the version lives must agree —
 *   Cargo.toml (read here at run time, path from CMake: JOINT_CARGO_TOML),
 *   CMake's project(VERSION) (read from Cargo.toml at configure time: JOINT_CMAKE_VERSION*),
 *   the header macros (JOINT_VERSION_*),
 *   the library (joint_version(), joint_version_number()),
 * including how JOINT_VERSION_NUMBER is composed: (major << 16) | (minor << 8) | patch. */
#include "testutil.h"

#ifndef JOINT_CMAKE_VERSION
#error "JOINT_CMAKE_VERSION must be defined by CMake"
#endif

/* The first `version = "X.Y.Z"` line of Cargo.toml (the [package] version). */
static void cargo_version(char *out, size_t size)
{
    char line[512];
    FILE *f = fopen(JOINT_CARGO_TOML, "r");
    CHECK(f != NULL);
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char *q1, *q2;
        if (strncmp(line, "version", 7) != 0 || !(q1 = strchr(line, '"')) || !(q2 = strchr(q1 + 1, '"')))
            continue;
        CHECK((size_t)(q2 - q1 - 1) < size);
        memcpy(out, q1 + 1, (size_t)(q2 - q1 - 1));
        out[q2 - q1 - 1] = '\0';
        break;
    }
    fclose(f);
    CHECK(out[0] != '\0');
}

int main(void)
{
    char cargo[64], from_macros[64];
    unsigned major = 99, minor = 99, patch = 99;
    uint32_t composed;

    cargo_version(cargo, sizeof cargo);
    printf("Cargo.toml:    %s\n", cargo);
    printf("CMake project: %s\n", JOINT_CMAKE_VERSION);
    printf("joint.h:       %s (%d.%d.%d, number 0x%06x)\n", JOINT_VERSION_STRING, JOINT_VERSION_MAJOR,
           JOINT_VERSION_MINOR, JOINT_VERSION_PATCH, (unsigned)JOINT_VERSION_NUMBER);
    printf("libjoint:      %s (number 0x%06x)\n", joint_version(), (unsigned)joint_version_number());

    /* Cargo.toml == CMake == header string == runtime string */
    CHECK_STREQ(JOINT_CMAKE_VERSION, cargo);
    CHECK_STREQ(JOINT_VERSION_STRING, cargo);
    CHECK_STREQ(joint_version(), cargo);

    /* The component macros spell the same version. */
    CHECK(sscanf(cargo, "%u.%u.%u", &major, &minor, &patch) == 3);
    CHECK_EQ_I64(JOINT_VERSION_MAJOR, major);
    CHECK_EQ_I64(JOINT_VERSION_MINOR, minor);
    CHECK_EQ_I64(JOINT_VERSION_PATCH, patch);
    CHECK_EQ_I64(JOINT_CMAKE_VERSION_MAJOR, major);
    CHECK_EQ_I64(JOINT_CMAKE_VERSION_MINOR, minor);
    CHECK_EQ_I64(JOINT_CMAKE_VERSION_PATCH, patch);
    snprintf(from_macros, sizeof from_macros, "%d.%d.%d", JOINT_VERSION_MAJOR, JOINT_VERSION_MINOR,
             JOINT_VERSION_PATCH);
    CHECK_STREQ(from_macros, JOINT_VERSION_STRING);

    /* NUMBER is composed from the components (rustls-ffi once shifted MINOR into PATCH's
     * place and its own test missed it: compare against an independent composition). */
    CHECK(major < 256 && minor < 256 && patch < 256);
    composed = ((uint32_t)major << 16) | ((uint32_t)minor << 8) | (uint32_t)patch;
    CHECK_EQ_I64(JOINT_VERSION_NUMBER, composed);
    CHECK_EQ_I64(joint_version_number(), composed);
    /* ... and orders versions correctly. */
    CHECK(JOINT_VERSION_NUMBER < (((uint32_t)major << 16) | ((uint32_t)minor << 8) | (patch + 1)));
    CHECK(JOINT_VERSION_NUMBER < (((uint32_t)major << 16) | ((uint32_t)(minor + 1) << 8)));
    CHECK(JOINT_VERSION_NUMBER < ((uint32_t)(major + 1) << 16));

    /* joint_version() is a static string: the same pointer every time. */
    CHECK(joint_version() == joint_version());
    printf("api_version: ok\n");
    return 0;
}
