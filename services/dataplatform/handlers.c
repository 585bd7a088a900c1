/* handlers.c: the DataPlatformService methods: the received orders, paged, and the counts. */
#include <inttypes.h>
#include <stdio.h>

#include "dataplatform.pb-c.h"
#include "dataplatform_priv.h"
#include "dataplatform_store.h"
#include "svc.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100

RPC_HANDLER(handle_list_received, Mercato__Dataplatform__V1__ListReceivedRequest,
    Mercato__Dataplatform__V1__ListReceivedResponse)
{
        RPC_CLEANUP(rpc_freep) dp_record *recs = NULL;
        int32_t page_size = req->page_size;
        bool more = false;
        size_t n = 0;
        rpc_status st;

        if (page_size < 0 || page_size > PAGE_MAX) {
                return rpc_call_error(
                    call, RPC_INVALID_ARGUMENT, "page_size must be 0..%d", PAGE_MAX);
        }
        if (req->after_order_id < 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "after_order_id must be >= 0");
        }
        if (req->order_id < 0) {
                return rpc_call_error(call, RPC_INVALID_ARGUMENT, "order_id must be >= 0");
        }
        if (page_size == 0) {
                page_size = PAGE_DEFAULT;
        }
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = req->order_id > 0
            ? dataplatform_store_get_order(db, req->order_id, &recs, &n)
            : dataplatform_store_list(db, req->after_order_id, page_size, &recs, &n, &more);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        resp->n_received = n;
        resp->received = rpc_call_alloc(call, (n > 0 ? n : 1) * sizeof(*resp->received));
        for (size_t i = 0; i < n; i++) {
                Mercato__Dataplatform__V1__ReceivedOrder *r = rpc_call_alloc(call, sizeof(*r));

                mercato__dataplatform__v1__received_order__init(r);
                r->event_id = rpc_call_strdup(call, recs[i].event_id);
                r->order_id = recs[i].order_id;
                r->user_id = recs[i].user_id;
                r->amount = recs[i].amount;
                r->received_at_ms = recs[i].received_at_ms;
                resp->received[i] = r;
        }
        resp->next_after_order_id = more && n > 0 ? recs[n - 1].order_id : 0;
        return RPC_OK;
}

RPC_HANDLER(
    handle_stats, Mercato__Dataplatform__V1__StatsRequest, Mercato__Dataplatform__V1__StatsResponse)
{
        rpc_status st;

        (void) req;
        db_conn *db = svc_db(call);
        if (db == NULL) {
                return RPC_UNAVAILABLE;
        }
        st = dataplatform_store_stats(db, &resp->received, &resp->duplicates);
        if (st != RPC_OK) {
                return rpc_call_error(call, st, "database: %s", db_errmsg(db));
        }
        return RPC_OK;
}

const rpc_method dp_methods[DP_N_METHODS] = {
        RPC_METHOD_ENTRY("ListReceived", handle_list_received,
            mercato__dataplatform__v1__list_received_request__descriptor,
            mercato__dataplatform__v1__list_received_response__descriptor, RPC_METHOD_IDEMPOTENT),
        RPC_METHOD_ENTRY("Stats", handle_stats,
            mercato__dataplatform__v1__stats_request__descriptor,
            mercato__dataplatform__v1__stats_response__descriptor, RPC_METHOD_IDEMPOTENT),
};
