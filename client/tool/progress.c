/* Progress output for long transfers (stderr). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_fmt_bytes(uint64_t n, char *out, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    unsigned u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, size, "%llu B", (unsigned long long)n);
    else
        snprintf(out, size, "%.1f %s", v, units[u]);
}

void cli_progress_init(cli_progress *p, int quiet, uint64_t total)
{
    memset(p, 0, sizeof(*p));
    p->mode = quiet ? 0 : isatty(STDERR_FILENO) ? 2 : 1;
    p->total = total;
    p->start = p->last_draw = cli_now();
}

static void draw(cli_progress *p, double now)
{
    char done[32], total[32], rate[32];
    double el = now - p->start;
    cli_fmt_bytes(p->done, done, sizeof(done));
    cli_fmt_bytes(el > 0 ? (uint64_t)((double)p->done / el) : 0, rate, sizeof(rate));
    if (p->mode == 2) {
        char bar[31];
        int pct = -1;
        if (p->total) {
            pct = (int)(p->done * 100 / p->total);
            int fill = (int)(p->done * 30 / p->total);
            memset(bar, '#', (size_t)fill);
            memset(bar + fill, '.', (size_t)(30 - fill));
        } else {
            memset(bar, '?', 30);
        }
        bar[30] = 0;
        if (p->total) {
            cli_fmt_bytes(p->total, total, sizeof(total));
            fprintf(stderr, "\r[%s] %3d%% %s / %s  %s/s   ", bar, pct, done, total, rate);
        } else {
            fprintf(stderr, "\r[%s] %s  %s/s   ", bar, done, rate);
        }
        p->drawn = 1;
    } else if (p->mode == 1) {
        if (p->total) {
            cli_fmt_bytes(p->total, total, sizeof(total));
            fprintf(stderr, "progress: %s / %s (%d%%) %s/s\n", done, total,
                    (int)(p->done * 100 / p->total), rate);
        } else {
            fprintf(stderr, "progress: %s %s/s\n", done, rate);
        }
    }
    fflush(stderr);
}

void cli_progress_update(cli_progress *p, uint64_t done)
{
    p->done = done;
    if (p->mode == 0) return;
    double now = cli_now();
    double every = p->mode == 2 ? 0.1 : 5.0;
    if (now - p->last_draw < every) return;
    p->last_draw = now;
    draw(p, now);
}

void cli_progress_end(cli_progress *p)
{
    if (p->mode == 2 && p->drawn) {
        draw(p, cli_now());
        fputc('\n', stderr);
        fflush(stderr);
    }
}
