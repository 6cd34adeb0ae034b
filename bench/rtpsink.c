/* rtpsink.c - held callers for bench/media.py --scenario hold: N phones that only listen.
 *
 *   rtpsink STREAMS PORTS_FILE SECONDS [WARMUP_S] [SOCKETS]
 *
 * Binds SOCKETS (default 32) UDP sockets on 127.0.0.1 (ephemeral ports, so parallel runs
 * cannot collide) and writes STREAMS lines to PORTS_FILE, the port each caller's SDP names
 * (stream k: socket k % SOCKETS); streams are told apart by their SSRC. Sharing a few
 * sockets keeps the loopback receive path (which runs on the sender's CPU) as cheap as a
 * real network's, as bench/rtpload.c does for the relay run. Then it waits for a line on
 * stdin ("go": the media server is playing to them) and listens for WARMUP_S (default 1) +
 * SECONDS seconds.
 * Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the figure is the
 * sender's pacing, not this process's scheduling.
 *
 * Pacing: within each stream, packet k is expected at t0 + 20 ms * (seq_k - seq_0); the
 * deviation from that grid, less the stream's median deviation (its phase), is collected
 * over every packet of the measured window; p50/p99/max of |deviation| are printed. A
 * stream that skipped ahead or stalled shows as large deviations; a sequence number that jumps
 * (a restarted stream) starts a new grid (counted as resyncs). Prints one line of key=value
 * figures.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <math.h>
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

#define BATCH 32
#define FRAME_NS 20000000.0

typedef struct {
    uint32_t ssrc;
    int have_first;
    double t0;
    uint16_t seq0;
    uint32_t wraps;
    uint16_t last_seq;
    double *dev;
    long n, cap;
} stream_t;

static double mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static double real_minus_mono(void) {
    struct timespec r, m;
    clock_gettime(CLOCK_REALTIME, &r);
    clock_gettime(CLOCK_MONOTONIC, &m);
    return (r.tv_sec - m.tv_sec) * 1e9 + (r.tv_nsec - m.tv_nsec);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: rtpsink STREAMS PORTS_FILE SECONDS [WARMUP_S]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    double seconds = atof(argv[3]);
    double warmup = argc > 4 ? atof(argv[4]) : 1.0;
    int nsock = argc > 5 ? atoi(argv[5]) : 32;
    if (nsock > n) nsock = n;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    stream_t *st = calloc(n, sizeof(stream_t));
    int *fds = calloc(nsock, sizeof(int));
    int *ports = calloc(nsock, sizeof(int));
    int tsize = 1;
    while (tsize < 4 * n) tsize <<= 1;
    int *table = malloc(tsize * sizeof(int)); /* SSRC -> stream, open addressing */
    for (int i = 0; i < tsize; i++) table[i] = -1;
    int nstreams = 0;
    int ep = epoll_create1(0);
    FILE *pf = fopen(argv[2], "w");
    if (!st || ep < 0 || !pf) {
        perror("rtpsink setup");
        return 1;
    }
    long cap = (long)(50 * (seconds + 2)) + 64;
    for (int i = 0; i < nsock; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        socklen_t alen = sizeof(a);
        int one = 1, rcvbuf = 1 << 18;
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0) {
            perror("rtpsink bind");
            return 1;
        }
        rcvbuf = 1 << 22;
        setsockopt(fds[i], SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        getsockname(fds[i], (struct sockaddr *)&a, &alen);
        ports[i] = ntohs(a.sin_port);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    for (int i = 0; i < n; i++) {
        fprintf(pf, "%d\n", ports[i % nsock]);
        st[i].dev = malloc(cap * sizeof(double));
        st[i].cap = cap;
    }
    fclose(pf);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1; /* wait for "go" */
    double offset = real_minus_mono();              /* SO_TIMESTAMPNS is CLOCK_REALTIME */
    double start = mono(), measure_from = start + warmup * 1e9, end = measure_from + seconds * 1e9;
    long received = 0, measured = 0, short_pkts = 0, resyncs = 0;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    unsigned char bufs[BATCH][2048];
    char ctrl[BATCH][128];
    struct epoll_event events[256];
    while (1) {
        double now = mono();
        if (now >= end) break;
        int k = epoll_wait(ep, events, 256, (int)((end - now) / 1e6) + 1);
        for (int e = 0; e < k; e++) {
            int fd = fds[events[e].data.u32];
            for (;;) {
                for (int j = 0; j < BATCH; j++) {
                    iov[j].iov_base = bufs[j];
                    iov[j].iov_len = sizeof bufs[j];
                    memset(&msgs[j].msg_hdr, 0, sizeof(struct msghdr));
                    msgs[j].msg_hdr.msg_iov = &iov[j];
                    msgs[j].msg_hdr.msg_iovlen = 1;
                    msgs[j].msg_hdr.msg_control = ctrl[j];
                    msgs[j].msg_hdr.msg_controllen = sizeof ctrl[j];
                }
                int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
                if (got <= 0) break;
                for (int j = 0; j < got; j++) {
                    received++;
                    if (msgs[j].msg_len < 12) {
                        short_pkts++;
                        continue;
                    }
                    double t = mono();
                    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[j].msg_hdr); c;
                         c = CMSG_NXTHDR(&msgs[j].msg_hdr, c)) {
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                            struct timespec ts;
                            memcpy(&ts, CMSG_DATA(c), sizeof ts);
                            t = ts.tv_sec * 1e9 + ts.tv_nsec - offset;
                        }
                    }
                    if (t < measure_from) continue;
                    uint32_t ssrc = ((uint32_t)bufs[j][8] << 24) | (bufs[j][9] << 16) |
                                    (bufs[j][10] << 8) | bufs[j][11];
                    uint32_t h = (ssrc * 2654435761u) & (tsize - 1);
                    while (table[h] >= 0 && st[table[h]].ssrc != ssrc) h = (h + 1) & (tsize - 1);
                    if (table[h] < 0) {
                        if (nstreams == n) {
                            short_pkts++; /* more SSRCs than callers: not counted */
                            continue;
                        }
                        table[h] = nstreams;
                        st[nstreams++].ssrc = ssrc;
                    }
                    stream_t *s = &st[table[h]];
                    uint16_t seq = (uint16_t)((bufs[j][2] << 8) | bufs[j][3]);
                    if (!s->have_first) {
                        s->have_first = 1;
                        s->t0 = t;
                        s->seq0 = s->last_seq = seq;
                    }
                    int16_t step = (int16_t)(seq - s->last_seq);
                    if (step < -100 || step > 1000) {
                        /* the sender restarted its sequence (a new stream): a new grid */
                        resyncs++;
                        s->t0 = t;
                        s->seq0 = seq;
                        s->wraps = 0;
                        s->last_seq = seq;
                    } else if (step > 0) {
                        if (seq < s->last_seq) s->wraps++;
                        s->last_seq = seq;
                    }
                    long frames = (long)s->wraps * 65536 + seq - s->seq0;
                    if (step <= 0 && seq > s->last_seq) frames -= 65536; /* late, before a wrap */
                    if (s->n < s->cap) s->dev[s->n++] = (t - s->t0) - frames * FRAME_NS;
                    measured++;
                }
                if (got < BATCH) break;
            }
        }
    }
    /* |deviation from the stream's own grid phase| over every measured packet */
    double *all = malloc((measured + 1) * sizeof(double));
    long m = 0, seen = 0;
    for (int i = 0; i < n; i++) {
        stream_t *s = &st[i];
        if (!s->n) continue;
        seen++;
        double *tmp = malloc(s->n * sizeof(double));
        memcpy(tmp, s->dev, s->n * sizeof(double));
        qsort(tmp, s->n, sizeof(double), cmp_double);
        double median = tmp[s->n / 2];
        free(tmp);
        for (long j = 0; j < s->n; j++) all[m++] = fabs(s->dev[j] - median);
    }
    qsort(all, m, sizeof(double), cmp_double);
    double p50 = m ? all[m / 2] / 1e6 : NAN, p99 = m ? all[(long)(m * 0.99)] / 1e6 : NAN;
    double mx = m ? all[m - 1] / 1e6 : NAN;
    double expected = 50.0 * seconds * n;
    printf("streams=%d streams_seen=%ld received=%ld measured=%ld expected=%.0f "
           "rate=%.4f short=%ld resyncs=%ld pacing_p50_ms=%.3f pacing_p99_ms=%.3f pacing_max_ms=%.3f\n",
           n, seen, received, measured, expected, expected ? measured / expected : 0.0,
           short_pkts, resyncs, p50, p99, mx);
    return 0;
}
