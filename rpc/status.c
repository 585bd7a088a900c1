/* status.c: the project-wide status codes and their gRPC names. */
#include <strings.h>

#include "rpc.h"

static const char *const status_names[] = {
        [RPC_OK] = "OK",
        [RPC_CANCELLED] = "CANCELLED",
        [RPC_UNKNOWN] = "UNKNOWN",
        [RPC_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [RPC_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
        [RPC_NOT_FOUND] = "NOT_FOUND",
        [RPC_ALREADY_EXISTS] = "ALREADY_EXISTS",
        [RPC_PERMISSION_DENIED] = "PERMISSION_DENIED",
        [RPC_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
        [RPC_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
        [RPC_ABORTED] = "ABORTED",
        [RPC_OUT_OF_RANGE] = "OUT_OF_RANGE",
        [RPC_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [RPC_INTERNAL] = "INTERNAL",
        [RPC_UNAVAILABLE] = "UNAVAILABLE",
        [RPC_DATA_LOSS] = "DATA_LOSS",
        [RPC_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *
rpc_status_name(rpc_status st)
{
        if ((int) st < 0 || st > RPC_STATUS_MAX) {
                return "UNKNOWN";
        }
        return status_names[st];
}

bool
rpc_status_from_name(const char *name, rpc_status *ret_st)
{
        if (name == NULL) {
                return false;
        }
        for (int i = 0; i <= RPC_STATUS_MAX; i++) {
                if (strcasecmp(name, status_names[i]) == 0) {
                        *ret_st = (rpc_status) i;
                        return true;
                }
        }
        return false;
}

rpc_status
rpc_status_from_wire(int32_t code)
{
        if (code < 0 || code > RPC_STATUS_MAX) {
                return RPC_UNKNOWN;
        }
        return (rpc_status) code;
}

bool
rpc_status_retryable(rpc_status st)
{
        switch (st) {
        case RPC_UNAVAILABLE:
        case RPC_DEADLINE_EXCEEDED:
        case RPC_ABORTED:
                return true;
        default:
                return false;
        }
}
