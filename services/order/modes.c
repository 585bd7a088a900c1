/* modes.c: the table of transaction modes: one entry per mode, each defined in its own file. */
#include "modes.h"

/* monolith.c, saga.c, tpc.c, orch.c, tcc.c */
extern const order_mode_ops order_monolith_ops;
extern const order_mode_ops order_orch_ops;
extern const order_mode_ops order_saga_ops;
extern const order_mode_ops order_tcc_ops;
extern const order_mode_ops order_tpc_ops;

static const order_mode_ops *const modes[ORDER_MODE_END] = {
        [ORDER_MODE_SAGA] = &order_saga_ops,
        [ORDER_MODE_TWO_PC] = &order_tpc_ops,
        [ORDER_MODE_MONOLITH] = &order_monolith_ops,
        [ORDER_MODE_ORCHESTRATION] = &order_orch_ops,
        [ORDER_MODE_TCC] = &order_tcc_ops,
};

const order_mode_ops *
order_mode_ops_of(order_mode mode)
{
        if (mode < 1 || mode >= ORDER_MODE_END) {
                return NULL;
        }
        return modes[mode];
}

/* Stops the modes below end, the last first. */
static void
stop_below(svc *s, int end)
{
        for (int m = end - 1; m >= 1; m--) {
                if (modes[m]->stop != NULL) {
                        modes[m]->stop(s);
                }
        }
}

rpc_status
order_modes_start(svc *s)
{
        for (int m = 1; m < ORDER_MODE_END; m++) {
                rpc_status st = modes[m]->start != NULL ? modes[m]->start(s) : RPC_OK;
                if (st != RPC_OK) {
                        stop_below(s, m);
                        return st;
                }
        }
        return RPC_OK;
}

void
order_modes_stop(svc *s)
{
        stop_below(s, ORDER_MODE_END);
}
