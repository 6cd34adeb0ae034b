/* rtpload.c - bounded RTP load for bench/media.py: G.711 phones on loopback.
 *
 *   rtpload ENDPOINTS_FILE SECONDS [PPS] [WARMUP_S] [SOCKETS]
 *
 * ENDPOINTS_FILE has one line per stream: "phone_port relay_port". Every stream sends a
 * 172-byte RTP packet (12-byte header + 160 bytes PCMU) to 127.0.0.1:relay_port every 1/PPS s
 * (the sends of all streams spread evenly over the period) and the relay's output is counted
 * where it arrives. Bytes 12..19 of the payload carry the send time (CLOCK_MONOTONIC ns), so
 * the receiver measures one-way latency through the relay.
 *
 * SOCKETS = 0 (default): each stream has its own socket bound to 127.0.0.1:phone_port, like a
 * real phone (one sendto and one recv per packet). SOCKETS = S > 0: the streams share S
 * sockets on ephemeral ports and use sendmmsg/recvmmsg in batches, so the load generator
 * stays cheap at high rates; the relay latches to where packets come from (symmetric RTP,
 * RFC 4961), so its output comes back to these sockets.
 *
 * Packets sent during the first WARMUP_S seconds (default 1) are left out of the loss and
 * latency figures (latching, session set-up). Prints one line of key=value figures.
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
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_NS 10000ULL /* 10 µs latency histogram buckets */
#define BUCKETS 20000      /* up to 200 ms */
#define BATCH 256
#define PKT 172

typedef struct { int fd; struct sockaddr_in dst; uint16_t seq; uint32_t ts, ssrc; } stream_t;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + t.tv_nsec;
}

static int bind_udp(int port) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    return s;
}

static unsigned long hist[BUCKETS + 1];
static unsigned long got, got_counted, late;
static uint64_t counted_after;

static void account(const unsigned char *rb, ssize_t r, uint64_t t) {
    got++;
    if (r < 20) return;
    uint64_t sent;
    memcpy(&sent, rb + 12, 8);
    if (sent < counted_after) return;
    got_counted++;
    uint64_t b = (t - sent) / BUCKET_NS;
    if (b >= BUCKETS) { late++; b = BUCKETS; }
    hist[b]++;
}

static void drain(int fd) {
    static unsigned char bufs[BATCH][2048];
    static struct iovec iov[BATCH];
    static struct mmsghdr m[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i]; iov[i].iov_len = sizeof bufs[i];
            memset(&m[i].msg_hdr, 0, sizeof m[i].msg_hdr);
            m[i].msg_hdr.msg_iov = &iov[i]; m[i].msg_hdr.msg_iovlen = 1;
        }
        int r = recvmmsg(fd, m, BATCH, MSG_DONTWAIT, NULL);
        if (r <= 0) return;
        uint64_t t = now_ns();
        for (int i = 0; i < r; i++) account(bufs[i], m[i].msg_len, t);
        if (r < BATCH) return;
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

/* Pending sends per socket, flushed with one sendmmsg. */
typedef struct { struct mmsghdr m[BATCH]; struct iovec iov[BATCH]; unsigned char buf[BATCH][PKT]; int n; } outq_t;

static unsigned long sent, sent_counted, send_fail;
static uint64_t lag_max, lag_sum;  /* how late sends left, against their schedule */

static void flush(int fd, outq_t *q) {
    int off = 0;
    while (off < q->n) {
        int w = sendmmsg(fd, q->m + off, q->n - off, MSG_DONTWAIT);
        if (w <= 0) { send_fail += q->n - off; break; }
        off += w;
    }
    q->n = 0;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: rtpload FILE SECONDS [PPS] [WARMUP_S] [SOCKETS]\n"); return 2; }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    double secs = atof(argv[2]);
    int pps = argc > 3 ? atoi(argv[3]) : 50;
    double warm = argc > 4 ? atof(argv[4]) : 1.0;
    int shared = argc > 5 ? atoi(argv[5]) : 0;
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 1; }
    stream_t *st = NULL; int n = 0, cap = 0, lp, rp;
    while (fscanf(f, "%d %d", &lp, &rp) == 2) {
        if (n == cap) { cap = cap ? 2 * cap : 256; st = realloc(st, cap * sizeof *st); }
        st[n].fd = shared ? -1 : bind_udp(lp);
        memset(&st[n].dst, 0, sizeof st[n].dst);
        st[n].dst.sin_family = AF_INET; st[n].dst.sin_port = htons(rp);
        inet_pton(AF_INET, "127.0.0.1", &st[n].dst.sin_addr);
        st[n].seq = rand(); st[n].ts = rand(); st[n].ssrc = rand();
        n++;
    }
    fclose(f);
    if (!n) { fprintf(stderr, "no streams\n"); return 1; }
    int nsock = shared ? shared : n;
    int *fds = malloc(nsock * sizeof *fds);
    outq_t *q = shared ? calloc(nsock, sizeof *q) : NULL;
    for (int s = 0; s < nsock; s++) fds[s] = shared ? bind_udp(0) : st[s].fd;
    for (int i = 0; shared && i < n; i++) st[i].fd = i % nsock;  /* index into fds */
    int epfd = epoll_create1(0);
    for (int s = 0; s < nsock; s++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = s};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fds[s], &ev);
    }
    unsigned char pkt[PKT];
    memset(pkt, 0xff, sizeof pkt); /* PCMU silence */
    uint64_t period = 1000000000ULL / pps, t0 = now_ns(), t_end = t0 + (uint64_t)(secs * 1e9);
    counted_after = t0 + (uint64_t)(warm * 1e9);
    long k_sent = 0;
    struct epoll_event evs[512];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= t_end) break;
        for (;;) {
            long k = k_sent / n; int i = k_sent % n;
            uint64_t due = t0 + k * period + (uint64_t)i * period / n;
            if (due > t) break;
            stream_t *e = &st[i];
            unsigned char *p = pkt;
            outq_t *oq = NULL;
            if (shared) {
                oq = &q[e->fd];
                if (oq->n == BATCH) flush(fds[e->fd], oq);
                p = oq->buf[oq->n];
                memcpy(p, pkt, PKT);
            }
            p[0] = 0x80; p[1] = 0;
            uint16_t seq = htons(e->seq++); memcpy(p + 2, &seq, 2);
            uint32_t ts = htonl(e->ts += 160); memcpy(p + 4, &ts, 4);
            uint32_t ss = htonl(e->ssrc); memcpy(p + 8, &ss, 4);
            uint64_t stamp = now_ns(); memcpy(p + 12, &stamp, 8);
            if (stamp - due > lag_max) lag_max = stamp - due;
            lag_sum += stamp - due;
            sent++;
            if (stamp >= counted_after) sent_counted++;
            if (shared) {
                struct mmsghdr *m = &oq->m[oq->n];
                oq->iov[oq->n].iov_base = p; oq->iov[oq->n].iov_len = PKT;
                memset(&m->msg_hdr, 0, sizeof m->msg_hdr);
                m->msg_hdr.msg_iov = &oq->iov[oq->n]; m->msg_hdr.msg_iovlen = 1;
                m->msg_hdr.msg_name = &e->dst; m->msg_hdr.msg_namelen = sizeof e->dst;
                oq->n++;
            } else if (sendto(e->fd, p, PKT, 0, (struct sockaddr *)&e->dst, sizeof e->dst) != PKT) {
                send_fail++;
            }
            k_sent++;
        }
        for (int s = 0; shared && s < nsock; s++) if (q[s].n) flush(fds[s], &q[s]);
        int r = epoll_wait(epfd, evs, 512, 1);
        for (int j = 0; j < r; j++) drain(fds[evs[j].data.u32]);
    }
    uint64_t td = now_ns() + 300000000ULL; /* drain what is still in flight */
    while (now_ns() < td) {
        int r = epoll_wait(epfd, evs, 512, 20);
        for (int j = 0; j < r; j++) drain(fds[evs[j].data.u32]);
    }
    double loss = sent_counted ? (double)((long)sent_counted - (long)got_counted) / sent_counted : 0;
    if (loss < 0) loss = 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    printf("streams=%d sockets=%d pps=%d seconds=%.1f sent=%lu received=%lu counted_sent=%lu "
           "counted_received=%lu send_fail=%lu loss=%.6f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f over_200ms=%lu "
           "load_cpu_pct=%.1f send_lag_avg_ms=%.3f send_lag_max_ms=%.3f\n",
           n, nsock, pps, secs, sent, got, sent_counted, got_counted, send_fail, loss,
           percentile(0.5), percentile(0.99), percentile(0.999), late,
           100.0 * cpu / ((now_ns() - t0) / 1e9), sent ? lag_sum / 1e6 / sent : 0, lag_max / 1e6);
    return 0;
}
