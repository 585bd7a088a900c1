/* util.c: allocation that aborts on out-of-memory, clocks, and the seedable generator. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rpc.h"

static void
oom(size_t n)
{
        fprintf(stderr, "mercato: out of memory allocating %zu bytes\n", n);
        abort();
}

void *
rpc_xmalloc(size_t n)
{
        void *p = malloc(n == 0 ? 1 : n);
        if (p == NULL) {
                oom(n);
        }
        return p;
}

void *
rpc_xcalloc(size_t count, size_t n)
{
        void *p = calloc(count == 0 ? 1 : count, n == 0 ? 1 : n);
        if (p == NULL) {
                oom(count * n);
        }
        return p;
}

void *
rpc_xrealloc(void *p, size_t n)
{
        void *q = realloc(p, n == 0 ? 1 : n);
        if (q == NULL) {
                oom(n);
        }
        return q;
}

char *
rpc_xstrdup(const char *s)
{
        size_t n = strlen(s) + 1;
        char *p = rpc_xmalloc(n);
        memcpy(p, s, n);
        return p;
}

int64_t
rpc_now_unix_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
rpc_now_mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
rpc_now_mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t
rpc_rand_next(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

bool
rpc_deadline_expired(int64_t deadline_unix_ms, int64_t now_unix_ms)
{
        return deadline_unix_ms > 0 && now_unix_ms >= deadline_unix_ms;
}

int64_t
rpc_deadline_remaining_ms(int64_t deadline_unix_ms, int64_t now_unix_ms)
{
        if (deadline_unix_ms <= 0) {
                return INT64_MAX;
        }
        if (now_unix_ms >= deadline_unix_ms) {
                return 0;
        }
        return deadline_unix_ms - now_unix_ms;
}

int64_t
rpc_backoff_ms(int attempt, int64_t initial_ms, int64_t max_ms, uint64_t *rng_state)
{
        int64_t ceiling = initial_ms;

        if (attempt < 1 || initial_ms <= 0 || max_ms <= 0) {
                return 0;
        }
        for (int i = 1; i < attempt && ceiling < max_ms; i++) {
                ceiling *= 2;
        }
        if (ceiling > max_ms) {
                ceiling = max_ms;
        }
        /* Full jitter: uniform in [0, ceiling]. */
        return (int64_t) (rpc_rand_next(rng_state) % (uint64_t) (ceiling + 1));
}

void
rpc_method_fullname(const ProtobufCServiceDescriptor *svc, unsigned index, char *buf, size_t len)
{
        snprintf(buf, len, "/%s/%s", svc->name, svc->methods[index].name);
}
