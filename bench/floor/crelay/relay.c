/* relay: the raw loop of bench/floor in C, to compare a Go loop with a C one on the same
   machine (docs/benchmarks/analysis.md). Build: gcc -O2 -o /tmp/crelay bench/floor/crelay/relay.c
   Run: /tmp/crelay LISTEN_PORT TARGET_PORT (both on 127.0.0.1). A measurement, not a server:
   a write the socket does not take is retried at once. */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
static int peer[65536];
int main(int argc, char **argv) {
    int lport = atoi(argv[1]), tport = atoi(argv[2]);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons(lport)}, ta = {.sin_family = AF_INET, .sin_port = htons(tport)};
    inet_pton(AF_INET, "127.0.0.1", &la.sin_addr); inet_pton(AF_INET, "127.0.0.1", &ta.sin_addr);
    if (bind(lfd, (void *)&la, sizeof la) || listen(lfd, 4096)) { perror("listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[128];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    static char buf[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 128, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int s = socket(AF_INET, SOCK_STREAM, 0);
                    if (connect(s, (void *)&ta, sizeof ta)) { close(c); close(s); continue; }
                    fcntl(s, F_SETFL, O_NONBLOCK);
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    peer[c] = s; peer[s] = c;
                    ev.events = EPOLLIN; ev.data.fd = c; epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                    ev.data.fd = s; epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
                }
                continue;
            }
            ssize_t m = read(fd, buf, sizeof buf);
            if (m < 0 && errno == EAGAIN) continue;
            if (m <= 0) { close(peer[fd]); close(fd); continue; }
            for (ssize_t off = 0; off < m;) {
                ssize_t w = write(peer[fd], buf + off, m - off);
                if (w < 0) { if (errno == EAGAIN) continue; break; }
                off += w;
            }
        }
    }
}
