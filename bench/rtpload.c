/* rtpload.c - bounded RTP load for bench/media.py: symmetric G.711 endpoints on loopback.
 *
 *   rtpload ENDPOINTS_FILE SECONDS [PPS] [WARMUP_S]
 *
 * ENDPOINTS_FILE has one line per endpoint: "local_port server_port". Each endpoint binds
 * 127.0.0.1:local_port, sends a 172-byte RTP packet (12-byte header + 160 bytes PCMU) to
 * 127.0.0.1:server_port every 1/PPS s (sends of all endpoints spread evenly over the period),
 * and counts what arrives on the same socket (symmetric RTP: the relay sends the other leg's
 * stream back to where we send from). Bytes 12..19 of the payload carry the send time
 * (CLOCK_MONOTONIC ns), so the receiver measures one-way latency through the relay.
 * Packets sent during the first WARMUP_S seconds (default 1) are left out of the loss and
 * latency figures (latching and session set-up). Prints one line of key=value figures.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_NS 10000ULL /* 10 µs latency histogram buckets */
#define BUCKETS 20000      /* up to 200 ms */

typedef struct { int fd; struct sockaddr_in dst; uint16_t seq; uint32_t ts, ssrc; } ep_t;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + t.tv_nsec;
}

static int bind_udp(int port) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 1 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    return s;
}

static unsigned long hist[BUCKETS + 1];
static unsigned long got, got_counted, late;
static uint64_t counted_after;

static void drain(ep_t *e) {
    unsigned char rb[2048];
    ssize_t r;
    while ((r = recv(e->fd, rb, sizeof rb, 0)) > 0) {
        got++;
        if (r < 20) continue;
        uint64_t sent;
        memcpy(&sent, rb + 12, 8);
        if (sent < counted_after) continue;
        got_counted++;
        uint64_t lat = now_ns() - sent, b = lat / BUCKET_NS;
        hist[b > BUCKETS ? BUCKETS : b]++;
        if (b >= BUCKETS) late++;
    }
}

static double percentile(double p) {
    unsigned long total = 0, acc = 0;
    for (int i = 0; i <= BUCKETS; i++) total += hist[i];
    if (!total) return 0;
    for (int i = 0; i <= BUCKETS; i++) {
        acc += hist[i];
        if (acc >= p * total) return (i + 1) * BUCKET_NS / 1e6; /* upper edge, ms */
    }
    return BUCKETS * BUCKET_NS / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: rtpload FILE SECONDS [PPS] [WARMUP_S]\n"); return 2; }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    double secs = atof(argv[2]);
    int pps = argc > 3 ? atoi(argv[3]) : 50;
    double warm = argc > 4 ? atof(argv[4]) : 1.0;
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 1; }
    ep_t *ep = NULL; int n = 0, cap = 0, lp, sp;
    while (fscanf(f, "%d %d", &lp, &sp) == 2) {
        if (n == cap) { cap = cap ? 2 * cap : 256; ep = realloc(ep, cap * sizeof *ep); }
        ep[n].fd = bind_udp(lp);
        memset(&ep[n].dst, 0, sizeof ep[n].dst);
        ep[n].dst.sin_family = AF_INET; ep[n].dst.sin_port = htons(sp);
        inet_pton(AF_INET, "127.0.0.1", &ep[n].dst.sin_addr);
        ep[n].seq = rand(); ep[n].ts = rand(); ep[n].ssrc = rand();
        n++;
    }
    fclose(f);
    if (!n) { fprintf(stderr, "no endpoints\n"); return 1; }
    int epfd = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(epfd, EPOLL_CTL_ADD, ep[i].fd, &ev);
    }
    unsigned char pkt[172];
    memset(pkt, 0xff, sizeof pkt); /* PCMU silence */
    uint64_t period = 1000000000ULL / pps, t0 = now_ns(), t_end = t0 + (uint64_t)(secs * 1e9);
    counted_after = t0 + (uint64_t)(warm * 1e9);
    unsigned long sent = 0, sent_counted = 0, send_fail = 0;
    long k_sent = 0;
    struct epoll_event evs[512];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= t_end) break;
        for (;;) {
            long k = k_sent / n; int i = k_sent % n;
            uint64_t due = t0 + k * period + (uint64_t)i * period / n;
            if (due > t) break;
            ep_t *e = &ep[i];
            pkt[0] = 0x80; pkt[1] = 0;
            uint16_t seq = htons(e->seq++); memcpy(pkt + 2, &seq, 2);
            uint32_t ts = htonl(e->ts += 160); memcpy(pkt + 4, &ts, 4);
            uint32_t ss = htonl(e->ssrc); memcpy(pkt + 8, &ss, 4);
            uint64_t stamp = now_ns(); memcpy(pkt + 12, &stamp, 8);
            if (sendto(e->fd, pkt, sizeof pkt, 0, (struct sockaddr *)&e->dst, sizeof e->dst) == sizeof pkt) {
                sent++;
                if (stamp >= counted_after) sent_counted++;
            } else {
                send_fail++;
            }
            k_sent++;
        }
        int r = epoll_wait(epfd, evs, 512, 1);
        for (int j = 0; j < r; j++) drain(&ep[evs[j].data.u32]);
    }
    uint64_t td = now_ns() + 300000000ULL; /* drain what is still in flight */
    while (now_ns() < td) {
        int r = epoll_wait(epfd, evs, 512, 20);
        for (int j = 0; j < r; j++) drain(&ep[evs[j].data.u32]);
    }
    double loss = sent_counted ? (double)((long)sent_counted - (long)got_counted) / sent_counted : 0;
    if (loss < 0) loss = 0;
    printf("endpoints=%d pps=%d seconds=%.1f sent=%lu received=%lu counted_sent=%lu counted_received=%lu "
           "send_fail=%lu loss=%.6f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f over_200ms=%lu\n",
           n, pps, secs, sent, got, sent_counted, got_counted, send_fail, loss,
           percentile(0.5), percentile(0.99), percentile(0.999), late);
    return 0;
}
