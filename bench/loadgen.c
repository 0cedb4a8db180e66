/* loadgen: paced autossh-style probe load for benchmark 3.
 *
 * N persistent TCP clients; each sends one probe line
 *     "<host> autossh <pid> <seq> <ts_ms> <nonce16hex> <msg>\r\n"
 * every 1/RATE s (open loop: the schedule does not wait for answers), with the start phases
 * spread evenly over the first period (send j of the whole run is due at t0 + j/(N*RATE), to
 * client j mod N). Every byte that comes back is compared with what that client sent; a probe
 * counts as answered when all of its bytes came back identical, and its latency is the time from
 * its write() to the read() that completed it. Single thread, epoll, so it can hold 10k sockets.
 *
 *   loadgen --port P --clients N --rate R --duration S [--connect-timeout S] [--drain S]
 *           [--sample-pid PID]     # prints one JSON object on stdout
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include <time.h>
#include <unistd.h>

#define EXP 4096   /* bytes sent and not yet echoed, per client */
#define QN 128     /* probes outstanding, per client */
#define LINEMAX 160

enum { C_IDLE, C_CONNECTING, C_UP, C_DEAD };

struct probe { uint64_t end; double sent; };
struct client {
    int fd, state;
    uint64_t seq, sent_bytes, recv_bytes;
    char exp[EXP];          /* ring: bytes [recv_bytes, sent_bytes) at exp[pos % EXP] */
    struct probe q[QN];     /* ring of outstanding probes */
    unsigned qh, qn;
    char out[LINEMAX]; size_t outn; /* unsent tail of a partial write */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static struct client *cl;
static int ep, nclients, port;
static double rate = 1, duration = 5, connect_timeout = 30, drain = 2;
static int sample_pid = 0;
static double *lat; static size_t nlat, latcap;
static double t0g, worst = -1, worst_at = -1; /* slowest echo and when (s after t0) it was sent */
static uint64_t slow_100ms;
static uint64_t scheduled, sent, answered, wrong, missing, unsent_dead, unsent_backlog;
static uint64_t closed_by_server, mismatched_clients, connect_failed;
static long rss_peak_kb, hwm_kb;
static int rss_samples;

static void sample(void) {
    if (!sample_pid) return;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", sample_pid);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "VmRSS: %ld", &v) == 1 && v > rss_peak_kb) rss_peak_kb = v;
        if (sscanf(line, "VmHWM: %ld", &v) == 1) hwm_kb = v;
    }
    rss_samples++;
    fclose(f);
}

static void kill_client(struct client *c, int by_server) {
    if (c->state == C_DEAD) return;
    if (c->fd >= 0) {
        struct linger lg = {1, 0}; /* RST: no TIME_WAIT pile-up across runs */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (by_server) closed_by_server++;
    missing += c->qn; /* whatever was outstanding never came back whole */
    c->qn = 0;
    c->state = C_DEAD;
}

static void start_connect(int i) {
    struct client *c = &cl[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { c->state = C_DEAD; connect_failed++; return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    if (r < 0 && errno != EINPROGRESS) { close(c->fd); c->fd = -1; c->state = C_DEAD; connect_failed++; return; }
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_readable(int i, double t) {
    struct client *c = &cl[i];
    char buf[16384];
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r == 0) { kill_client(c, 1); return; }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            kill_client(c, 1); return;
        }
        for (ssize_t k = 0; k < r; k++) {
            if (c->recv_bytes >= c->sent_bytes || buf[k] != c->exp[c->recv_bytes % EXP]) {
                /* wrong byte (or bytes never sent): the probe it falls in and every later one are wrong */
                wrong += c->qn; c->qn = 0; mismatched_clients++;
                kill_client(c, 0);
                return;
            }
            c->recv_bytes++;
        }
        while (c->qn && c->q[c->qh].end <= c->recv_bytes) {
            if (nlat == latcap) { latcap = latcap ? latcap * 2 : 65536; lat = realloc(lat, latcap * sizeof *lat); }
            double l = t - c->q[c->qh].sent;
            lat[nlat++] = l;
            if (l > worst) { worst = l; worst_at = c->q[c->qh].sent - t0g; }
            if (l > 0.1) slow_100ms++;
            answered++;
            c->qh = (c->qh + 1) % QN; c->qn--;
        }
    }
}

static void flush_out(struct client *c) {
    if (!c->outn) return;
    ssize_t w = write(c->fd, c->out, c->outn);
    if (w < 0) { if (errno != EAGAIN) kill_client(c, 1); return; }
    memmove(c->out, c->out + w, c->outn - w);
    c->outn -= w;
    if (!c->outn) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = c - cl};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void send_probe(int i, double wall_ms) {
    struct client *c = &cl[i];
    if (c->state != C_UP) { unsent_dead++; return; }
    char line[LINEMAX];
    uint64_t nonce = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ ((uint64_t)i << 20) ^ c->seq;
    int len = snprintf(line, sizeof line, "benchhost autossh %d %llu %.0f %016llx bench\r\n",
                       100000 + i, (unsigned long long)c->seq, wall_ms, (unsigned long long)nonce);
    if (c->qn == QN || c->sent_bytes - c->recv_bytes + len > EXP || c->outn) { unsent_backlog++; return; }
    for (int k = 0; k < len; k++) c->exp[(c->sent_bytes + k) % EXP] = line[k];
    double t = now();
    ssize_t w = write(c->fd, line, len);
    if (w < 0) {
        if (errno != EAGAIN) { kill_client(c, 1); unsent_dead++; return; }
        w = 0;
    }
    c->seq++; sent++;
    c->sent_bytes += len;
    c->q[(c->qh + c->qn) % QN] = (struct probe){c->sent_bytes, t};
    c->qn++;
    if (w < len) {
        memcpy(c->out, line + w, len - w); c->outn = len - w;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(double p) {
    if (!nlat) return -1;
    size_t k = (size_t)(p * (nlat - 1) + 0.5);
    return lat[k];
}

int main(int argc, char **argv) {
    static struct option opts[] = {
        {"port", 1, 0, 'p'}, {"clients", 1, 0, 'n'}, {"rate", 1, 0, 'r'}, {"duration", 1, 0, 'd'},
        {"connect-timeout", 1, 0, 'c'}, {"drain", 1, 0, 'D'}, {"sample-pid", 1, 0, 's'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p': port = atoi(optarg); break;
        case 'n': nclients = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'c': connect_timeout = atof(optarg); break;
        case 'D': drain = atof(optarg); break;
        case 's': sample_pid = atoi(optarg); break;
        default: return 1;
        }
    }
    if (!port || nclients <= 0 || rate <= 0 || duration <= 0) { fprintf(stderr, "bad arguments\n"); return 1; }
    signal(SIGPIPE, SIG_IGN);
    srand(getpid());
    cl = calloc(nclients, sizeof *cl);
    if (!cl) { perror("calloc"); return 2; }
    for (int i = 0; i < nclients; i++) cl[i].fd = -1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    static struct epoll_event evs[4096];

    /* connect phase: at most 256 handshakes in flight, bounded by --connect-timeout */
    double tc0 = now(), tcdead = tc0 + connect_timeout;
    int next = 0, inflight = 0, up = 0;
    while ((next < nclients || inflight) && now() < tcdead) {
        while (next < nclients && inflight < 256) { start_connect(next++); if (cl[next - 1].state == C_CONNECTING) inflight++; }
        int n = epoll_wait(ep, evs, 4096, 50);
        for (int k = 0; k < n; k++) {
            struct client *c = &cl[evs[k].data.u32];
            if (c->state != C_CONNECTING) continue;
            int err = 0; socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            inflight--;
            if (err || (evs[k].events & (EPOLLERR | EPOLLHUP))) { kill_client(c, 0); connect_failed++; continue; }
            c->state = C_UP; up++;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[k].data.u32};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    int never_tried = nclients - next;
    for (int i = 0; i < nclients; i++)
        if (cl[i].state == C_CONNECTING || cl[i].state == C_IDLE) { kill_client(&cl[i], 0); connect_failed++; }
    double connect_s = now() - tc0;

    /* paced phase */
    uint64_t total = (uint64_t)(nclients * rate * duration + 0.5);
    scheduled = total;
    double step = 1.0 / (nclients * rate);
    double t0 = now() + 0.1, last_sample = 0, end_send = t0 + duration, hard_end = end_send + drain;
    t0g = t0;
    struct timespec rt; clock_gettime(CLOCK_REALTIME, &rt);
    double wall0_ms = rt.tv_sec * 1e3 + rt.tv_nsec / 1e6 + 100;
    uint64_t j = 0;
    double lag_max = 0;
    for (;;) {
        double t = now();
        if (t - last_sample >= 0.5) { sample(); last_sample = t; }
        while (j < total && t0 + j * step <= t) {
            double late = t - (t0 + j * step);
            if (late > lag_max) lag_max = late;
            send_probe(j % nclients, wall0_ms + j * step * 1e3);
            j++;
        }
        if (j >= total) {
            int outstanding = 0;
            for (int i = 0; i < nclients && !outstanding; i++) outstanding = cl[i].qn > 0;
            if (!outstanding || t >= hard_end) break;
        }
        double due = j < total ? t0 + j * step : t + 0.01;
        double wait = due - t;
        if (wait < 0) wait = 0;
        if (wait > 0.05) wait = 0.05;
        struct timespec to = {0, (long)(wait * 1e9)};
        int n = epoll_pwait2(ep, evs, 4096, &to, NULL);
        double tr = now();
        for (int k = 0; k < n; k++) {
            int i = evs[k].data.u32;
            struct client *c = &cl[i];
            if (c->state != C_UP) continue;
            if (evs[k].events & EPOLLOUT) flush_out(c);
            if (c->state == C_UP && (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) on_readable(i, tr);
        }
    }
    sample();
    for (int i = 0; i < nclients; i++) { missing += cl[i].qn; cl[i].qn = 0; kill_client(&cl[i], 0); }
    qsort(lat, nlat, sizeof *lat, cmpd);
    printf("{\"clients\": %d, \"rate\": %g, \"duration\": %g, \"connected\": %d, \"connect_failed\": %llu, "
           "\"never_tried\": %d, \"connect_s\": %.3f, \"scheduled\": %llu, \"sent\": %llu, \"answered\": %llu, "
           "\"wrong\": %llu, \"missing\": %llu, \"unsent_dead\": %llu, \"unsent_backlog\": %llu, "
           "\"closed_by_server\": %llu, \"mismatched_clients\": %llu, "
           "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"max_sent_at_s\": %.3f, "
           "\"over_100ms\": %llu, \"send_lag_max_ms\": %.3f, "
           "\"rss_peak_kb\": %ld, \"hwm_kb\": %ld, \"rss_samples\": %d}\n",
           nclients, rate, duration, up, (unsigned long long)connect_failed, never_tried, connect_s,
           (unsigned long long)scheduled, (unsigned long long)sent, (unsigned long long)answered,
           (unsigned long long)wrong, (unsigned long long)missing, (unsigned long long)unsent_dead,
           (unsigned long long)unsent_backlog, (unsigned long long)closed_by_server,
           (unsigned long long)mismatched_clients, pct(0.5) * 1e3, pct(0.99) * 1e3,
           nlat ? lat[nlat - 1] * 1e3 : -1.0, worst_at, (unsigned long long)slow_100ms, lag_max * 1e3, rss_peak_kb, hwm_kb, rss_samples);
    return 0;
}
