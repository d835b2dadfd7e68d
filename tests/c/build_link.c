/* build_static / build_shared: prove which libjoint a program linked against joint::static
 * or joint::shared actually runs with, and that it works.
 *   JOINT_EXPECT_STATIC      no libjoint.so is mapped; joint_version lives in the program
 *   JOINT_EXPECT_SONAME="x"  the library mapped is the one named by the SONAME x, and
 *                            joint_version lives in it */
#define _GNU_SOURCE /* dladdr */
#include "testutil.h"

#include <dlfcn.h>

static int maps_contains(const char *needle)
{
    char line[4096];
    int found = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            found = 1;
    fclose(f);
    return found;
}

int main(void)
{
    Dl_info info;
    struct tu_pair p;
    joint_buf *result, *error;
    const char *where;

    CHECK(dladdr((void *)joint_version, &info) != 0 && info.dli_fname != NULL);
    where = info.dli_fname;
    printf("joint_version() is in %s\n", where);

#if defined(JOINT_EXPECT_STATIC)
    CHECK(!maps_contains("libjoint.so"));
    CHECK(strstr(where, "libjoint") == NULL); /* in the executable itself */
#elif defined(JOINT_EXPECT_SONAME)
    CHECK(maps_contains(JOINT_EXPECT_SONAME));
    CHECK(strstr(where, JOINT_EXPECT_SONAME) != NULL);
#else
#error "define JOINT_EXPECT_STATIC or JOINT_EXPECT_SONAME"
#endif

    /* and it works: a round trip through a real socket */
    tu_pair_open(&p, NULL);
    CHECK_OK(joint_ctx_register(p.ctx, "sum", tu_handle_sum, NULL, NULL));
    CHECK_OK(joint_conn_call_sync(p.client, "sum", NULL, 0, 5000, &result, &error));
    CHECK(tu_buf_int(result) == 0);
    joint_buf_free(result);
    joint_conn_free(p.client);
    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);
    printf("build_link: ok\n");
    return 0;
}
