/* breaker.c: a per-peer circuit breaker: closed, open for a cool-down, then one probe. */
#include "rpc.h"

void
rpc_breaker_init(rpc_breaker *b, int threshold, int64_t cooldown_ms)
{
        *b = (rpc_breaker) {
                .state = RPC_BREAKER_CLOSED,
                .threshold = threshold > 0 ? threshold : 1,
                .cooldown_ms = cooldown_ms > 0 ? cooldown_ms : 0,
        };
}

bool
rpc_breaker_allow(rpc_breaker *b, int64_t now_ms)
{
        switch (b->state) {
        case RPC_BREAKER_CLOSED:
                return true;
        case RPC_BREAKER_OPEN:
                if (now_ms - b->opened_at_ms < b->cooldown_ms) {
                        b->rejected++;
                        return false;
                }
                b->state = RPC_BREAKER_HALF_OPEN;
                b->probe_in_flight = true;
                return true;
        case RPC_BREAKER_HALF_OPEN:
                if (b->probe_in_flight) {
                        b->rejected++;
                        return false;
                }
                b->probe_in_flight = true;
                return true;
        }
        return false;
}

void
rpc_breaker_record(rpc_breaker *b, bool success, int64_t now_ms)
{
        if (success) {
                b->state = RPC_BREAKER_CLOSED;
                b->failures = 0;
                b->probe_in_flight = false;
                return;
        }
        switch (b->state) {
        case RPC_BREAKER_CLOSED:
                if (++b->failures >= b->threshold) {
                        b->state = RPC_BREAKER_OPEN;
                        b->opened_at_ms = now_ms;
                        b->opens++;
                }
                break;
        case RPC_BREAKER_HALF_OPEN:
        case RPC_BREAKER_OPEN:
                /* The probe failed (or a call from before the opening did): wait again. */
                if (b->state == RPC_BREAKER_HALF_OPEN) {
                        b->opens++;
                }
                b->state = RPC_BREAKER_OPEN;
                b->opened_at_ms = now_ms;
                b->probe_in_flight = false;
                break;
        }
}

const char *
rpc_breaker_state_name(rpc_breaker_state st)
{
        switch (st) {
        case RPC_BREAKER_CLOSED:
                return "closed";
        case RPC_BREAKER_OPEN:
                return "open";
        case RPC_BREAKER_HALF_OPEN:
                return "half_open";
        }
        return "unknown";
}
