/* ref_server.c - minimal MessagePack-RPC reference server ("nothing but
 * syscalls + msgpack-c").  Single-threaded, blocking, one connection at a
 * time; after a client disconnects it accepts the next one.
 *
 *   ref_server PORT      listens on 127.0.0.1:PORT (0 = any free port; the
 *                        bound port is reported on stderr)
 *
 * Requests [0, msgid, method, params]:
 *   "add" [a, b] (integers) -> [1, msgid, nil, a+b]
 *   unknown method          -> [1, msgid, [1, "no such method"], nil]
 *   bad "add" params        -> [1, msgid, [2, "bad params"], nil]
 * Notifications [2, ...] are ignored; anything else closes the connection.
 *
 * Each read() takes as many bytes as are available, every complete request
 * in them is answered, and all answers go out in ONE write().
 *
 * Build: cc -O2 -Wall -Wextra -o ref_server ref_server.c -lmsgpackc
 */
#include <msgpack.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int get_int(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return 1;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 1;
    }
    return 0;
}

static void pack_error(msgpack_packer *pk, int code, const char *msg)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, code);
    msgpack_pack_str_with_body(pk, msg, strlen(msg));
    msgpack_pack_nil(pk);
}

/* Appends the response (if any) to pk.  Returns -1 on a protocol error. */
static int handle(const msgpack_object *msg, msgpack_packer *pk)
{
    if (msg->type != MSGPACK_OBJECT_ARRAY || msg->via.array.size < 1)
        return -1;
    const msgpack_object *f = msg->via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    if (f[0].via.u64 == 2 && msg->via.array.size == 3)
        return 0; /* notification: nothing to answer */
    if (f[0].via.u64 != 0 || msg->via.array.size != 4 ||
        f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[1].via.u64 > UINT32_MAX ||
        f[2].type != MSGPACK_OBJECT_STR)
        return -1;

    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 1);
    msgpack_pack_uint32(pk, (uint32_t)f[1].via.u64);

    const msgpack_object_str *m = &f[2].via.str;
    if (m->size != 3 || memcmp(m->ptr, "add", 3) != 0) {
        pack_error(pk, 1, "no such method");
        return 0;
    }
    const msgpack_object *p = &f[3];
    int64_t a, b, sum;
    if (p->type != MSGPACK_OBJECT_ARRAY || p->via.array.size != 2 ||
        !get_int(&p->via.array.ptr[0], &a) || !get_int(&p->via.array.ptr[1], &b) ||
        __builtin_add_overflow(a, b, &sum)) {
        pack_error(pk, 2, "bad params");
        return 0;
    }
    msgpack_pack_nil(pk);
    msgpack_pack_int64(pk, sum);
    return 0;
}

static void serve(int fd)
{
    msgpack_unpacker up;
    msgpack_unpacked res;
    msgpack_sbuffer out;
    msgpack_packer pk;

    if (!msgpack_unpacker_init(&up, READ_CHUNK)) {
        fprintf(stderr, "ref_server: out of memory\n");
        return;
    }
    msgpack_unpacked_init(&res);
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);

    for (;;) {
        if (!msgpack_unpacker_reserve_buffer(&up, READ_CHUNK)) {
            fprintf(stderr, "ref_server: out of memory\n");
            break;
        }
        ssize_t n = read(fd, msgpack_unpacker_buffer(&up), msgpack_unpacker_buffer_capacity(&up));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF or error: client is gone */
        msgpack_unpacker_buffer_consumed(&up, (size_t)n);

        msgpack_unpack_return r;
        int bad = 0;
        while ((r = msgpack_unpacker_next(&up, &res)) == MSGPACK_UNPACK_SUCCESS)
            if (handle(&res.data, &pk) < 0) {
                bad = 1;
                break;
            }
        if (out.size > 0 && write_all(fd, out.data, out.size) < 0)
            break;
        msgpack_sbuffer_clear(&out);
        if (bad || r == MSGPACK_UNPACK_PARSE_ERROR || r == MSGPACK_UNPACK_NOMEM_ERROR) {
            fprintf(stderr, "ref_server: protocol error, closing connection\n");
            break;
        }
    }
    msgpack_sbuffer_destroy(&out);
    msgpack_unpacked_destroy(&res);
    msgpack_unpacker_destroy(&up);
}

int main(int argc, char **argv)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end != '\0' || port < 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t salen = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 16) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &salen) < 0) {
        perror("ref_server: listen");
        return 1;
    }
    fprintf(stderr, "ref_server: listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));

    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("ref_server: accept");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve(fd);
        close(fd);
    }
}
