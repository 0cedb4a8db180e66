/* minimal_echo: the baseline for benchmark 3. A single-threaded, nonblocking epoll echo server:
 * accept everything, read what arrives, write it straight back. Bytes that cannot be written at
 * once are kept in a per-connection buffer and the connection stops being read until it drains.
 *
 *   gcc -O2 -o minimal_echo minimal_echo.c && ./minimal_echo PORT   (listens on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ 65536

struct conn {
    int fd;
    size_t pending, off; /* unsent echo bytes in buf[off..off+pending) */
    char *buf;
};

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static void drop(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    free(c);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 1; }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 65535) < 0) { perror("bind/listen"); return 2; }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static struct epoll_event evs[1024];
    static char rbuf[BUFSZ];
    while (!stop) {
        int n = epoll_wait(ep, evs, 1024, 1000);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 2; }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) { /* listener */
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            if (evs[i].events & (EPOLLERR | EPOLLHUP)) { drop(ep, c); continue; }
            if (c->pending && (evs[i].events & EPOLLOUT)) { /* drain the backlog */
                ssize_t w = write(c->fd, c->buf + c->off, c->pending);
                if (w < 0 && errno != EAGAIN) { drop(ep, c); continue; }
                if (w > 0) { c->off += w; c->pending -= w; }
                if (!c->pending) {
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
                }
                continue;
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLRDHUP))) continue;
            ssize_t r = read(c->fd, rbuf, sizeof rbuf);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { drop(ep, c); continue; }
            if (r < 0) continue;
            ssize_t w = write(c->fd, rbuf, r);
            if (w < 0) { if (errno != EAGAIN) { drop(ep, c); continue; } w = 0; }
            if (w < r) { /* keep the rest, wait for EPOLLOUT, stop reading meanwhile */
                if (!c->buf) c->buf = malloc(BUFSZ);
                memcpy(c->buf, rbuf + w, r - w);
                c->off = 0;
                c->pending = r - w;
                struct epoll_event ce = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
            }
        }
    }
    return 0;
}
