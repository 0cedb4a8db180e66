/* relay_tool: the peers and clients of the relay benchmark (relay_bench.py, section 9).
 *
 * Servers (127.0.0.1:PORT, one forked child per connection):
 *   relay_tool sink PORT        reads to the end of the stream, counts and hashes every byte,
 *                               then answers "<bytes> <hash16hex>\n" and closes
 *   relay_tool source PORT      reads one line "<bytes>\n", sends that many bytes of the
 *                               pattern, closes
 * Clients (each prints one JSON object on stdout; latencies in microseconds):
 *   relay_tool up PORT BYTES          BYTES of the pattern to a sink, a half-close, its answer
 *                                     (byte count and hash compared with what was sent)
 *   relay_tool down PORT BYTES        BYTES asked of a source, read to the end, hashed, compared
 *   relay_tool rr PORT COUNT SIZE     one connection to an echo service, COUNT round trips of
 *                                     SIZE bytes (each waits for its echo), after COUNT/10
 *                                     (at most 200) unrecorded ones
 *   relay_tool connect PORT COUNT SIZE  COUNT times: connect, SIZE bytes, their echo, close
 *                                     (RST); timed from before connect() to the echo's last byte;
 *                                     after COUNT/10 (at most 50) unrecorded ones
 *   relay_tool hold PORT COUNT WAIT   COUNT connections at once (256 handshakes in flight),
 *                                     each sends one line; prints a first JSON line once all
 *                                     are sent, then waits (at most WAIT s) until every line
 *                                     came back, byte for byte; times are CLOCK_MONOTONIC
 *
 * The pattern is 1 MiB of xorshift64 output (fixed seed) repeated; the hash is a 64-bit
 * word-at-a-time mix in four lanes (~4 GB/s, so not the bottleneck), independent of how the
 * stream is cut into reads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PATSZ (1 << 20)
#define IOBUF (256 * 1024)
static unsigned char pat[PATSZ];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) { perror(what); exit(2); }

static void make_pattern(void) {
    uint64_t x = 20240601ULL * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < PATSZ; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(pat + i, &x, 8);
    }
}

/* --- the stream hash: four lanes (word k of the stream goes to lane k % 4) for speed */
struct hash { uint64_t h[4], n, wi; unsigned char pb[8]; int np; };
static inline uint64_t mix(uint64_t h, uint64_t w) {
    h ^= w;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}
static inline void word(struct hash *s, const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    s->h[s->wi & 3] = mix(s->h[s->wi & 3], w);
    s->wi++;
}
static void hash_add(struct hash *s, const unsigned char *p, size_t len) {
    s->n += len;
    if (s->np) {
        while (s->np < 8 && len) { s->pb[s->np++] = *p++; len--; }
        if (s->np < 8) return;
        word(s, s->pb);
        s->np = 0;
    }
    for (; len >= 8 && (s->wi & 3); p += 8, len -= 8) word(s, p);
    for (; len >= 32; p += 32, len -= 32) {
        uint64_t w[4];
        memcpy(w, p, 32);
        for (int k = 0; k < 4; k++) s->h[k] = mix(s->h[k], w[k]);
        s->wi += 4;
    }
    for (; len >= 8; p += 8, len -= 8) word(s, p);
    while (len) { s->pb[s->np++] = *p++; len--; }
}
static uint64_t hash_end(const struct hash *s) {
    uint64_t w = 0, h = s->n;
    memcpy(&w, s->pb, s->np);
    for (int k = 0; k < 4; k++) h = mix(h, s->h[k]);
    return mix(h, w);
}
static uint64_t pattern_hash(uint64_t bytes) {
    struct hash s = {0};
    for (uint64_t done = 0; done < bytes;) {
        size_t k = bytes - done < PATSZ ? (size_t)(bytes - done) : PATSZ;
        hash_add(&s, pat, k);
        done += k;
    }
    return hash_end(&s);
}

/* --- sockets */
static struct sockaddr_in addr_of(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}
static void timeouts(int fd, int secs) {
    struct timeval tv = {secs, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}
static int dial(int port, int secs) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeouts(fd, secs);
    struct sockaddr_in a = addr_of(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); return -1; }
    return fd;
}
static void close_rst(int fd) {
    struct linger lg = {1, 0}; /* RST: thousands of connections leave no TIME_WAIT pile */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}
static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        c += w; n -= w;
    }
    return 0;
}
static int read_full(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r; n -= r;
    }
    return 0;
}
/* one line (at most cap-1 bytes, without its newline); -1 on EOF/error before it ended */
static int read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        if (buf[n] == '\n') break;
        n++;
    }
    buf[n] = 0;
    return (int)n;
}

/* --- servers */
static void sink_one(int fd) {
    static unsigned char buf[IOBUF];
    struct hash s = {0};
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        hash_add(&s, buf, r);
    }
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %016llx\n", (unsigned long long)s.n,
                     (unsigned long long)hash_end(&s));
    write_all(fd, line, n);
}
static void source_one(int fd) {
    char line[64];
    if (read_line(fd, line, sizeof line) < 0) return;
    uint64_t bytes = strtoull(line, NULL, 10), sent = 0;
    while (sent < bytes) {
        size_t off = sent % PATSZ, k = PATSZ - off;
        if (k > bytes - sent) k = bytes - sent;
        if (k > IOBUF) k = IOBUF;
        ssize_t w = write(fd, pat + off, k);
        if (w < 0) { if (errno == EINTR) continue; return; }
        sent += w;
    }
}
static int serve(int port, void (*one)(int)) {
    signal(SIGCHLD, SIG_IGN); /* children reaped by the kernel */
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in a = addr_of(port);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0) die("bind/listen");
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) { if (errno == EINTR || errno == ECONNABORTED) continue; die("accept"); }
        pid_t p = fork();
        if (p == 0) {
            close(ls);
            timeouts(fd, 120);
            one(fd);
            close(fd);
            _exit(0);
        }
        close(fd);
    }
}

/* --- bulk clients */
static int bulk_up(int port, uint64_t bytes) {
    uint64_t want = pattern_hash(bytes), sent = 0;
    int fd = dial(port, 60);
    if (fd < 0) { printf("{\"error\": \"connect: %s\"}\n", strerror(errno)); return 1; }
    double t0 = now();
    while (sent < bytes) {
        size_t off = sent % PATSZ, k = PATSZ - off;
        if (k > bytes - sent) k = bytes - sent;
        ssize_t w = write(fd, pat + off, k);
        if (w < 0) { if (errno == EINTR) continue; break; }
        sent += w;
    }
    double t_sent = now();
    shutdown(fd, SHUT_WR);
    char line[128];
    int got = read_line(fd, line, sizeof line);
    double t1 = now();
    close(fd);
    unsigned long long n = 0, h = 0;
    int parsed = got > 0 && sscanf(line, "%llu %llx", &n, &h) == 2;
    int ok = parsed && sent == bytes && n == bytes && h == want;
    printf("{\"bytes\": %llu, \"sent\": %llu, \"sink_bytes\": %llu, \"ok\": %s, \"seconds\": %.6f, "
           "\"send_s\": %.6f, \"mib_s\": %.2f%s}\n", (unsigned long long)bytes, (unsigned long long)sent,
           n, ok ? "true" : "false", t1 - t0, t_sent - t0, bytes / 1048576.0 / (t1 - t0),
           parsed ? "" : ", \"error\": \"no answer from the sink\"");
    return ok ? 0 : 1;
}
static int bulk_down(int port, uint64_t bytes) {
    static unsigned char buf[IOBUF];
    uint64_t want = pattern_hash(bytes);
    int fd = dial(port, 60);
    if (fd < 0) { printf("{\"error\": \"connect: %s\"}\n", strerror(errno)); return 1; }
    struct hash s = {0};
    char req[32];
    int n = snprintf(req, sizeof req, "%llu\n", (unsigned long long)bytes);
    double t0 = now(), t_first = 0;
    int err = write_all(fd, req, n) < 0;
    while (!err) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = 1;
        if (r <= 0) break;
        if (!s.n) t_first = now();
        hash_add(&s, buf, r);
    }
    double t1 = now();
    close(fd);
    int ok = !err && s.n == bytes && hash_end(&s) == want;
    printf("{\"bytes\": %llu, \"received\": %llu, \"ok\": %s, \"seconds\": %.6f, \"first_byte_s\": %.6f, "
           "\"mib_s\": %.2f}\n", (unsigned long long)bytes, (unsigned long long)s.n, ok ? "true" : "false",
           t1 - t0, t_first ? t_first - t0 : -1.0, bytes / 1048576.0 / (t1 - t0));
    return ok ? 0 : 1;
}

/* --- latency clients */
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(const double *v, size_t n, double p) {
    return n ? v[(size_t)(p * (n - 1) + 0.5)] : -1;
}
static void print_lat(const char *what, double *lat, size_t n, size_t count, size_t warm, size_t errors,
                      double total) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += lat[i];
    qsort(lat, n, sizeof *lat, cmpd);
    printf("{\"what\": \"%s\", \"count\": %zu, \"warmup\": %zu, \"measured\": %zu, \"errors\": %zu, \"total_s\": %.3f, "
           "\"mean_us\": %.1f, \"min_us\": %.1f, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
           "\"p999_us\": %.1f, \"max_us\": %.1f}\n", what, count, warm, n, errors, total,
           n ? sum / n * 1e6 : -1.0, n ? lat[0] * 1e6 : -1.0, pct(lat, n, 0.5) * 1e6, pct(lat, n, 0.9) * 1e6,
           pct(lat, n, 0.99) * 1e6, pct(lat, n, 0.999) * 1e6, n ? lat[n - 1] * 1e6 : -1.0);
}
static void fill_msg(unsigned char *m, size_t size, uint64_t i) {
    for (size_t k = 0; k < size; k++) m[k] = pat[(i * 131 + k) % PATSZ];
}
static int rr(int port, size_t count, size_t size) {
    size_t warm = count / 10 < 200 ? count / 10 : 200, n = 0, errors = 0;
    double *lat = calloc(count, sizeof *lat);
    unsigned char *m = malloc(size), *back = malloc(size);
    int fd = dial(port, 10);
    if (fd < 0 || !lat || !m || !back) { printf("{\"error\": \"connect: %s\"}\n", strerror(errno)); return 1; }
    double t_all = now();
    for (size_t i = 0; i < warm + count; i++) {
        fill_msg(m, size, i);
        double t0 = now();
        if (write_all(fd, m, size) < 0 || read_full(fd, back, size) < 0) { errors++; break; }
        double t1 = now();
        if (memcmp(m, back, size)) { errors++; break; }
        if (i >= warm) lat[n++] = t1 - t0;
    }
    double total = now() - t_all;
    close_rst(fd);
    print_lat("rr", lat, n, count, warm, errors, total);
    return errors ? 1 : 0;
}
static int conn_echo(int port, size_t count, size_t size) {
    size_t warm = count / 10 < 50 ? count / 10 : 50, n = 0, errors = 0;
    double *lat = calloc(count, sizeof *lat);
    unsigned char *m = malloc(size), *back = malloc(size);
    if (!lat || !m || !back) die("malloc");
    double t_all = now();
    for (size_t i = 0; i < warm + count; i++) {
        fill_msg(m, size, i);
        double t0 = now();
        int fd = dial(port, 5);
        int bad = fd < 0 || write_all(fd, m, size) < 0 || read_full(fd, back, size) < 0 || memcmp(m, back, size);
        double t1 = now();
        if (fd >= 0) close_rst(fd);
        if (bad) { errors++; usleep(10000); continue; }
        if (i >= warm) lat[n++] = t1 - t0;
    }
    print_lat("connect", lat, n, count, warm, errors, now() - t_all);
    return errors ? 1 : 0;
}

/* --- hold: many connections at once, each one line */
enum { H_IDLE, H_CONNECTING, H_SENT, H_OK, H_RESET, H_EOF, H_WRONG, H_FAILED };
struct hc { int fd, state, len, got; char line[40]; };

static void raise_nofile(size_t need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = need;
        if (rl.rlim_max < need) rl.rlim_max = need; /* root may raise the hard limit */
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("setrlimit RLIMIT_NOFILE");
    }
}
static void hold_connect(struct hc *c, int i, int port, int ep) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { c->state = H_FAILED; return; }
    struct sockaddr_in a = addr_of(port);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(c->fd); c->fd = -1; c->state = H_FAILED; return;
    }
    c->len = snprintf(c->line, sizeof c->line, "held %d %08x\n", i, (unsigned)rand());
    c->state = H_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}
/* a connecting socket became ready: send its line (an empty socket takes 40 bytes at once) */
static void hold_connected(struct hc *c, int ep, uint32_t events) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err || (events & (EPOLLERR | EPOLLHUP)) || write(c->fd, c->line, c->len) != c->len) {
        c->state = H_FAILED; epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); c->fd = -1; return;
    }
    c->state = H_SENT;
}
static int hold_read(struct hc *c) { /* 1 when the connection is done (echoed or failed) */
    char buf[64];
    ssize_t r = read(c->fd, buf, sizeof buf);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (r <= 0) { c->state = r == 0 ? H_EOF : (errno == ECONNRESET ? H_RESET : H_FAILED); return 1; }
    if (c->got + r > c->len || memcmp(buf, c->line + c->got, r)) { c->state = H_WRONG; return 1; }
    c->got += r;
    if (c->got == c->len) { c->state = H_OK; return 1; }
    return 0;
}
static int hold(int port, int count, double wait) {
    raise_nofile((size_t)count + 64);
    srand(getpid());
    struct hc *cl = calloc(count, sizeof *cl);
    double *t_ok = calloc(count, sizeof *t_ok);
    static struct epoll_event evs[4096];
    int ep = epoll_create1(EPOLL_CLOEXEC), next = 0, inflight = 0, sent = 0, done = 0, nok = 0;
    if (!cl || !t_ok || ep < 0) die("setup");
    double t0 = now(), deadline = t0 + wait;
    while ((next < count || inflight) && now() < deadline) {
        while (next < count && inflight < 256) {
            hold_connect(&cl[next], next, port, ep);
            if (cl[next++].state == H_CONNECTING) inflight++;
        }
        int n = epoll_wait(ep, evs, 4096, 50);
        for (int k = 0; k < n; k++) {
            struct hc *c = &cl[evs[k].data.u32];
            if (c->state != H_CONNECTING) continue;
            inflight--;
            hold_connected(c, ep, evs[k].events);
            if (c->state != H_SENT) continue;
            sent++;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[k].data.u32};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    double t_sent = now();
    printf("{\"phase\": \"sent\", \"sent\": %d, \"t_sent\": %.6f, \"connect_s\": %.3f}\n", sent, t_sent, t_sent - t0);
    fflush(stdout);
    for (int i = 0; i < count; i++) if (cl[i].state != H_SENT) done++;
    while (done < count && now() < deadline) {
        int n = epoll_wait(ep, evs, 4096, 50);
        double t = now();
        for (int k = 0; k < n; k++) {
            struct hc *c = &cl[evs[k].data.u32];
            if (c->state != H_SENT || !hold_read(c)) continue;
            done++;
            if (c->state == H_OK) t_ok[nok++] = t;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            if (c->state != H_OK) { close(c->fd); c->fd = -1; } /* the echoed stay open to the end */
        }
    }
    int st[H_FAILED + 1] = {0};
    for (int i = 0; i < count; i++) { st[cl[i].state]++; if (cl[i].fd >= 0) close_rst(cl[i].fd); }
    qsort(t_ok, nok, sizeof *t_ok, cmpd);
    printf("{\"phase\": \"done\", \"count\": %d, \"sent\": %d, \"echoed\": %d, \"reset\": %d, \"eof\": %d, "
           "\"wrong\": %d, \"failed\": %d, \"unanswered\": %d, \"never_tried\": %d, \"t_sent\": %.6f, "
           "\"t_first_ok\": %.6f, \"t_p50_ok\": %.6f, \"t_p99_ok\": %.6f, \"t_last_ok\": %.6f, \"t_end\": %.6f}\n",
           count, sent, st[H_OK], st[H_RESET], st[H_EOF], st[H_WRONG], st[H_FAILED], st[H_SENT],
           st[H_IDLE] + st[H_CONNECTING], t_sent, nok ? t_ok[0] : -1.0, pct(t_ok, nok, 0.5), pct(t_ok, nok, 0.99),
           nok ? t_ok[nok - 1] : -1.0, now());
    return st[H_OK] == count ? 0 : 1;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    make_pattern();
    if (argc == 3 && !strcmp(argv[1], "sink")) return serve(atoi(argv[2]), sink_one);
    if (argc == 3 && !strcmp(argv[1], "source")) return serve(atoi(argv[2]), source_one);
    if (argc == 4 && !strcmp(argv[1], "up")) return bulk_up(atoi(argv[2]), strtoull(argv[3], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "down")) return bulk_down(atoi(argv[2]), strtoull(argv[3], NULL, 10));
    if (argc == 5 && !strcmp(argv[1], "rr")) return rr(atoi(argv[2]), atol(argv[3]), atol(argv[4]));
    if (argc == 5 && !strcmp(argv[1], "connect")) return conn_echo(atoi(argv[2]), atol(argv[3]), atol(argv[4]));
    if (argc == 5 && !strcmp(argv[1], "hold")) return hold(atoi(argv[2]), atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: relay_tool sink|source PORT | up|down PORT BYTES | rr|connect PORT COUNT SIZE"
                    " | hold PORT COUNT WAIT\n");
    return 2;
}
