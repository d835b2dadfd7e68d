/* rpc_client.c - MessagePack-RPC load generator (no dependencies).
 *
 *   rpc_client [--tls] HOST PORT DEPTH SECONDS [WARMUP_SECONDS]
 *
 * With --tls the connection is TLS (OpenSSL, TLS 1.2 or 1.3, the server's certificate not
 * verified: only the record layer's cost is of interest here); the handshake is done before
 * the warm-up.
 * Keeps DEPTH requests [0, msgid, "add", [a, b]] outstanding on ONE TCP
 * connection (TCP_NODELAY).  After every read() it sends as many new requests
 * as responses arrived, in one write().  DEPTH=1 is lock-step.  Responses may
 * come back in any order; each must carry an outstanding msgid, a nil error
 * and the right sum.  Calls are counted for SECONDS after a warm-up (default
 * 0.3 s).  Prints one line:
 *
 *   calls=<n> seconds=<s> calls_per_sec=<r> errors=<e>
 *
 * Exit status: 0 ok; 1 wrong results/error responses (errors > 0) or no call
 * completed; 2 usage; 3 connection or protocol failure.
 *
 * Build: cc -O2 -Wall -Wextra -o rpc_client rpc_client.c -lssl -lcrypto
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define REQ_SIZE 14
#define MAX_DEPTH 65536
#define RBUF_SIZE (1 << 20)

static void die(const char *what)
{
    fprintf(stderr, "rpc_client: %s\n", what);
    exit(3);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- minimal MessagePack decoding ---------------------------------------- */

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Length of the one complete object at p[0..n): >0 = its size, 0 = incomplete,
 * -1 = invalid (0xc1).  Iterative, so nesting depth is unbounded. */
static long skip_object(const uint8_t *p, size_t n)
{
    size_t pos = 0;
    uint64_t todo = 1; /* objects still to skip */
    while (todo > 0) {
        if (pos >= n)
            return 0;
        uint8_t t = p[pos];
        uint64_t hdr = 1, body = 0, kids = 0;
        int lb = 0; /* width of a big-endian length/count field after t */
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool */
        } else if (t <= 0x8f) {
            kids = 2u * (t & 0x0f);
        } else if (t <= 0x9f) {
            kids = t & 0x0f;
        } else if (t <= 0xbf) {
            body = t & 0x1f;
        } else if (t == 0xc1) {
            return -1;
        } else if (t <= 0xc6) { /* bin 8/16/32 */
            lb = 1 << (t - 0xc4);
        } else if (t <= 0xc9) { /* ext 8/16/32 */
            lb = 1 << (t - 0xc7);
            hdr = 2;
        } else if (t <= 0xd3) { /* float32/64, uint 8..64, int 8..64 */
            static const uint8_t sz[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
            body = sz[t - 0xca];
        } else if (t <= 0xd8) { /* fixext 1/2/4/8/16 */
            body = 1 + (1u << (t - 0xd4));
        } else if (t <= 0xdb) { /* str 8/16/32 */
            lb = 1 << (t - 0xd9);
        } else { /* 0xdc..0xdf: array 16/32, map 16/32 */
            lb = (t & 1) ? 4 : 2;
        }
        if (lb) {
            if (n - pos < 1 + (size_t)lb)
                return 0;
            uint64_t len = be(p + pos + 1, lb);
            hdr += (uint64_t)lb;
            if (t >= 0xdc)
                kids = t >= 0xde ? 2 * len : len;
            else
                body = len;
        }
        if (hdr + body > n - pos)
            return 0;
        pos += hdr + body;
        todo = todo - 1 + kids;
    }
    return (long)pos;
}

/* Reads an integer at *p (bounded by end); -1 if it is not one. */
static int read_int(const uint8_t **p, const uint8_t *end, int64_t *v)
{
    const uint8_t *q = *p;
    if (q >= end)
        return -1;
    uint8_t t = *q;
    int w;
    if (t <= 0x7f || t >= 0xe0) {
        *v = (int8_t)t;
        *p = q + 1;
        return 0;
    }
    if (t >= 0xcc && t <= 0xcf)
        w = 1 << (t - 0xcc);
    else if (t >= 0xd0 && t <= 0xd3)
        w = 1 << (t - 0xd0);
    else
        return -1;
    if (end - q < 1 + w)
        return -1;
    uint64_t u = be(q + 1, w);
    if (t >= 0xd0) { /* signed: sign-extend */
        if (w < 8 && (u >> (8 * w - 1)))
            u |= ~0ull << (8 * w);
        *v = (int64_t)u;
    } else {
        if (u > INT64_MAX)
            return -1;
        *v = (int64_t)u;
    }
    *p = q + 1 + w;
    return 0;
}

/* ---- request bookkeeping ----------------------------------------------- */

static uint32_t slot_msgid[MAX_DEPTH];
static int64_t slot_sum[MAX_DEPTH];
static uint8_t slot_busy[MAX_DEPTH];
static uint32_t free_slots[MAX_DEPTH];
static uint32_t nfree, seq;

/* Encodes one request for a free slot: 94 00 ce <msgid:4> a3 'a' 'd' 'd' 92 <a> <b> */
static uint8_t *put_request(uint8_t *o)
{
    uint32_t s = free_slots[--nfree];
    uint32_t id = (seq << 16) | s;
    uint8_t a = seq & 0x7f, b = (seq >> 7) & 0x7f; /* positive fixints, sum up to 254 */
    seq++;
    slot_msgid[s] = id;
    slot_sum[s] = a + b;
    slot_busy[s] = 1;
    *o++ = 0x94;
    *o++ = 0x00;
    *o++ = 0xce;
    *o++ = (uint8_t)(id >> 24);
    *o++ = (uint8_t)(id >> 16);
    *o++ = (uint8_t)(id >> 8);
    *o++ = (uint8_t)id;
    *o++ = 0xa3;
    *o++ = 'a';
    *o++ = 'd';
    *o++ = 'd';
    *o++ = 0x92;
    *o++ = a;
    *o++ = b;
    return o;
}

static void dump(const char *why, const uint8_t *m, size_t n)
{
    static int shown;
    if (++shown > 10) { /* report the first few problems only */
        if (shown == 11)
            fprintf(stderr, "rpc_client: (further problems not shown)\n");
        return;
    }
    fprintf(stderr, "rpc_client: %s:", why);
    for (size_t i = 0; i < n && i < 64; i++)
        fprintf(stderr, " %02x", m[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

/* Checks one complete response m[0..n).  Returns 0 if correct, 1 if it is a
 * well-formed response that is wrong (error set, bad sum, unknown msgid);
 * exits on anything that is not a MessagePack-RPC response. */
static int check_response(const uint8_t *m, size_t n)
{
    const uint8_t *p = m, *end = m + n;
    uint64_t count;
    int64_t type, msgid, result;
    if (*p >= 0x90 && *p <= 0x9f) {
        count = *p & 0x0f;
        p += 1;
    } else if (*p == 0xdc || *p == 0xdd) {
        int w = *p == 0xdc ? 2 : 4;
        count = be(p + 1, w);
        p += 1 + w;
    } else {
        count = 0;
    }
    if (count != 4 || read_int(&p, end, &type) < 0 || type != 1 ||
        read_int(&p, end, &msgid) < 0 || msgid < 0 || msgid > UINT32_MAX) {
        dump("not a response", m, n);
        exit(3);
    }
    uint32_t s = (uint32_t)msgid & 0xffff;
    if (s >= MAX_DEPTH || !slot_busy[s] || slot_msgid[s] != (uint32_t)msgid) {
        dump("response with unknown msgid", m, n);
        return 1; /* its request stays outstanding */
    }
    slot_busy[s] = 0;
    free_slots[nfree++] = s;
    if (*p != 0xc0) {
        dump("error response", m, n);
        return 1;
    }
    p++;
    if (read_int(&p, end, &result) < 0 || result != slot_sum[s]) {
        char why[64];
        snprintf(why, sizeof why, "wrong result (expected %lld)", (long long)slot_sum[s]);
        dump(why, m, n);
        return 1;
    }
    return 0;
}

/* ---- main loop --------------------------------------------------------- */

static SSL *tls; /* NULL: plain TCP */

/* read(2) or SSL_read: >0 bytes, 0 closed, -1 with errno set (EAGAIN: timed out). */
static ssize_t io_read(int fd, uint8_t *p, size_t n)
{
    if (!tls)
        return read(fd, p, n);
    int r = SSL_read(tls, p, n > (1u << 30) ? 1 << 30 : (int)n);
    if (r > 0)
        return r;
    int e = errno;
    switch (SSL_get_error(tls, r)) {
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (r == 0 || e == 0)
            return 0;
        errno = e;
        return -1;
    default:
        ERR_print_errors_fp(stderr);
        errno = EPROTO;
        return -1;
    }
}

static ssize_t io_write(int fd, const uint8_t *p, size_t n)
{
    if (!tls)
        return write(fd, p, n);
    int w = SSL_write(tls, p, n > (1u << 30) ? 1 << 30 : (int)n);
    return w > 0 ? w : -1;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = io_write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write failed (connection lost)");
        p += w;
        n -= (size_t)w;
    }
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, one = 1;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        die("cannot resolve host");
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("cannot connect");
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

int main(int argc, char **argv)
{
    int use_tls = argc > 1 && strcmp(argv[1], "--tls") == 0;
    if (use_tls) {
        argv++;
        argc--;
    }
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: %s [--tls] HOST PORT DEPTH SECONDS [WARMUP_SECONDS]\n", argv[0]);
        return 2;
    }
    long depth = strtol(argv[3], NULL, 10);
    double secs = strtod(argv[4], NULL), warm = argc > 5 ? strtod(argv[5], NULL) : 0.3;
    if (depth < 1 || depth > MAX_DEPTH || !(secs > 0) || !(warm >= 0)) {
        fprintf(stderr, "rpc_client: need 1 <= DEPTH <= %d, SECONDS > 0, WARMUP >= 0\n", MAX_DEPTH);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int fd = connect_to(argv[1], argv[2]);
    if (use_tls) {
        SSL_CTX *ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!ssl_ctx || !(tls = SSL_new(ssl_ctx)) || !SSL_set_fd(tls, fd))
            die("TLS setup failed");
        SSL_set_tlsext_host_name(tls, "localhost");
        int r;
        while ((r = SSL_connect(tls)) != 1) { /* SO_RCVTIMEO may interrupt it */
            int err = SSL_get_error(tls, r);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE &&
                !(err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))) {
                ERR_print_errors_fp(stderr);
                die("TLS handshake failed");
            }
        }
    }

    static uint8_t rbuf[RBUF_SIZE];
    uint8_t *wbuf = malloc((size_t)depth * REQ_SIZE), *o;
    size_t rlen = 0;
    uint64_t calls = 0, errors = 0;
    if (!wbuf)
        die("out of memory");
    for (long i = 0; i < depth; i++)
        free_slots[nfree++] = (uint32_t)(depth - 1 - i);

    double t0 = now(), t_start = t0 + warm, t_end = t_start + secs, t = t0;
    int measuring = warm == 0;
    if (measuring)
        t_start = t0;

    for (o = wbuf; nfree > 0;)
        o = put_request(o);
    write_all(fd, wbuf, (size_t)(o - wbuf));

    while (t < t_end) {
        /* Blocking read; SO_RCVTIMEO wakes us now and then to check the clock
         * if the server stalls.  (No poll(): one syscall per lock-step call.) */
        ssize_t n = io_read(fd, rbuf + rlen, sizeof rbuf - rlen);
        int e = errno;
        t = now();
        int counting = measuring; /* a batch that ends the warm-up is not counted */
        if (!measuring && t >= t_start) {
            measuring = 1;
            t_start = t;
            t_end = t + secs;
        }
        if (n < 0 && (e == EINTR || e == EAGAIN || e == EWOULDBLOCK))
            continue;
        if (n == 0)
            die("connection closed by server");
        if (n < 0)
            die("read failed (connection lost)");
        rlen += (size_t)n;

        size_t pos = 0;
        uint64_t got = 0;
        for (;;) {
            long len = skip_object(rbuf + pos, rlen - pos);
            if (len < 0) {
                dump("invalid MessagePack", rbuf + pos, rlen - pos);
                exit(3);
            }
            if (len == 0)
                break;
            errors += (uint64_t)check_response(rbuf + pos, (size_t)len);
            pos += (size_t)len;
            got++;
        }
        if (pos == 0 && rlen == sizeof rbuf)
            die("response larger than the read buffer");
        memmove(rbuf, rbuf + pos, rlen - pos);
        rlen -= pos;
        if (counting)
            calls += got;

        for (o = wbuf; nfree > 0;)
            o = put_request(o);
        if (o > wbuf)
            write_all(fd, wbuf, (size_t)(o - wbuf));
    }
    double elapsed = t - t_start;
    close(fd);
    printf("calls=%llu seconds=%.3f calls_per_sec=%.0f errors=%llu\n", (unsigned long long)calls,
           elapsed, elapsed > 0 ? (double)calls / elapsed : 0.0, (unsigned long long)errors);
    if (calls == 0)
        fprintf(stderr, "rpc_client: no call completed\n");
    return errors > 0 || calls == 0 ? 1 : 0;
}
