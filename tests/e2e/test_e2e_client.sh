#!/usr/bin/env bash
# test_e2e_client.sh: the six services on fresh databases, driven only through the mercato client.
#
# Needs MERCATO_TEST_PG (a conninfo without dbname; tests/run exports it) and
# MERCATO_BUILD_ROOT (meson's test env sets it). It creates seven databases, writes a
# topology with free ports, seeds through `mercato seed`, starts every service from the
# build folder, places a monolith order through the client and checks its effects with
# `--json` replies, then checks the client's exit codes. The services are stopped and the
# databases dropped on exit, also when a check fails.
set -euo pipefail

readonly SERVICES=(product cart user order payment dataplatform)
readonly USER_ID=3
readonly P1=4 Q1=2 P2=7 Q2=1
readonly BALANCE=500000 STOCK=50

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

step() {
        echo "--- $*"
}

if [ -z "${MERCATO_TEST_PG:-}" ]; then
        echo "test_e2e_client: MERCATO_TEST_PG is not set: run tests/run, or export a libpq" \
                "conninfo without dbname (e.g. \"host=127.0.0.1 port=55432 user=mercato\")" >&2
        exit 1
fi
BUILD=${MERCATO_BUILD_ROOT:-}
[ -n "$BUILD" ] || fail "MERCATO_BUILD_ROOT is not set (run through meson test)"
MERCATO=$BUILD/services/mercato/mercato
[ -x "$MERCATO" ] || fail "no client at $MERCATO"
for s in "${SERVICES[@]}"; do
        [ -x "$BUILD/services/$s/mercato-$s" ] || fail "no binary $BUILD/services/$s/mercato-$s"
done
command -v psql >/dev/null || fail "psql is not installed"

work=$(mktemp -d "${TMPDIR:-/tmp}/mercato-e2e.XXXXXX")
conf=$work/topology.conf
prefix="mercato_e2e_$$_$RANDOM"
declare -A pids=()
dbs=()
status=1

psql_admin() {
        psql "$MERCATO_TEST_PG dbname=postgres" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Stops one service: SIGTERM, then SIGKILL after 10 s.
stop_service() {
        local name=$1 pid=${pids[$1]:-} i
        [ -n "$pid" ] || return 0
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "pids[$name]"
}

cleanup() {
        local rc=$? name db
        trap - EXIT
        [ "$status" = 0 ] || rc=1
        for name in "${!pids[@]}"; do
                stop_service "$name"
        done
        for db in "${dbs[@]}"; do
                psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
                        echo "test_e2e_client: warning: could not drop $db" >&2
        done
        if [ "$rc" -ne 0 ]; then
                for name in "${SERVICES[@]}"; do
                        if [ -s "$work/$name.log" ]; then
                                echo "--- tail of $name.log" >&2
                                tail -n 30 "$work/$name.log" >&2
                        fi
                done
        fi
        rm -rf -- "$work"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free TCP ports on 127.0.0.1, one per service.
mapfile -t ports < <(python3 - "${#SERVICES[@]}" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
)

step "databases and topology ($work)"
{
        echo "# written by test_e2e_client.sh"
        echo "[defaults]"
        echo "workers = 2"
        echo "deadline_ms = 5000"
        echo "mode = saga"
} >"$conf"
i=0
for name in "${SERVICES[@]}" monolith; do
        db=${prefix}_$name
        for try in 1 2 3; do
                # Another test copying template1 at the same moment makes this fail: retry.
                psql_admin -c "CREATE DATABASE $db" && break
                [ "$try" -lt 3 ] || fail "cannot create database $db"
                sleep 1
        done
        dbs+=("$db")
        {
                echo
                echo "[$name]"
                if [ "$name" != monolith ]; then
                        echo "address = tcp://127.0.0.1:${ports[$i]}"
                fi
                echo "db = $MERCATO_TEST_PG dbname=$db"
        } >>"$conf"
        i=$((i + 1))
done

mercato() {
        "$MERCATO" --conf "$conf" "$@"
}

# Prints a Python expression over the JSON document on stdin, bound to d.
jq_py() {
        python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# Runs the client, expecting exit code $1; prints its stdout. The rest are its arguments.
expect_rc() {
        local want=$1 rc=0 out
        shift
        out=$(mercato "$@" 2>"$work/stderr") || rc=$?
        if [ "$rc" -ne "$want" ]; then
                echo "stdout: $out" >&2
                echo "stderr: $(cat "$work/stderr")" >&2
                fail "mercato $* exited $rc, want $want"
        fi
        printf '%s\n' "$out"
}

step "1. mercato seed, on databases no service has touched yet"
expect_rc 0 seed --products 20 --stock "$STOCK" --users 10 --balance "$BALANCE" --coupons 2 \
        --coupon-quantity 5 --declining-users 1 --seed 7 >"$work/seed.out"
cat "$work/seed.out"
grep -q "20 products, stock $STOCK each" "$work/seed.out" || fail "seed did not report the products"
[ "$(grep -c '^split' "$work/seed.out")" -eq 6 ] || fail "seed did not report 6 split stores"
[ "$(grep -c '^monolith' "$work/seed.out")" -eq 6 ] || fail "seed did not report 6 monolith stores"

step "start the services"
for name in "${SERVICES[@]}"; do
        "$BUILD/services/$name/mercato-$name" --conf "$conf" >"$work/$name.log" 2>&1 &
        pids[$name]=$!
done
deadline=$((SECONDS + 60))
until mercato --timeout 2000 health >/dev/null 2>&1; do
        for name in "${SERVICES[@]}"; do
                kill -0 "${pids[$name]}" 2>/dev/null || fail "mercato-$name exited at start-up"
        done
        [ "$SECONDS" -lt "$deadline" ] || fail "the services were not all healthy within 60 s"
        sleep 0.3
done
health=$(expect_rc 0 health)
echo "$health"
[ "$(grep -c ' SERVING ' <<<"$health")" -eq 6 ] || fail "health does not show six SERVING services"
n=$(expect_rc 0 --json health | jq_py 'sum(1 for e in d if e["health"]["status"] == "SERVING")')
[ "$n" -eq 6 ] || fail "health --json shows $n SERVING services, want 6"

step "seeding again while the services run gives the same data"
expect_rc 0 seed --products 20 --stock "$STOCK" --users 10 --balance "$BALANCE" --coupons 2 \
        --coupon-quantity 5 --declining-users 1 --seed 7 --dataset all >/dev/null
bal=$(expect_rc 0 --json balance get "$USER_ID" | jq_py 'd["balance"]')
[ "$bal" -eq "$BALANCE" ] || fail "split balance of user $USER_ID is $bal, want $BALANCE"
name=$(expect_rc 0 --json product get "$P1" | jq_py 'd["product"]["name"]')
[ "$name" = "product-$P1" ] || fail "product $P1 is named '$name'"

# The monolith order runs in the monolith database: everything below reads it there.
M=(--dataset monolith)
bal_before=$(expect_rc 0 "${M[@]}" --json balance get "$USER_ID" | jq_py 'd["balance"]')
stock1_before=$(expect_rc 0 "${M[@]}" --json product get "$P1" | jq_py 'd["product"]["stock"]')
stock2_before=$(expect_rc 0 "${M[@]}" --json product get "$P2" | jq_py 'd["product"]["stock"]')
[ "$bal_before" -eq "$BALANCE" ] || fail "monolith balance is $bal_before, want $BALANCE"
[ "$stock1_before" -eq "$STOCK" ] || fail "monolith stock of $P1 is $stock1_before, want $STOCK"

step "2. mercato cart add"
expect_rc 0 "${M[@]}" cart add "$USER_ID" "$P1" "$Q1"
held=$(expect_rc 0 "${M[@]}" --json cart list "$USER_ID" |
        jq_py "sum(i['quantity'] for i in d['items'] if i['product_id'] == $P1)")
[ "$held" -eq "$Q1" ] || fail "the cart holds $held of product $P1, want $Q1"

step "3. mercato order place --mode monolith"
expect_rc 0 --json order place "$USER_ID" "$P1:$Q1" "$P2:$Q2" --mode monolith >"$work/order.json"
cat "$work/order.json"
order_id=$(jq_py 'd["order"]["order_id"]' <"$work/order.json")
status_=$(jq_py 'd["order"]["status"]' <"$work/order.json")
amount=$(jq_py 'd["order"]["amount"]' <"$work/order.json")
mode=$(jq_py 'd["order"]["mode"]' <"$work/order.json")
[ "$status_" = ORDER_STATUS_COMPLETED ] || fail "the order ended $status_, want COMPLETED"
[ "$mode" = MODE_MONOLITH ] || fail "the order ran in $mode"
if [ "$order_id" -le 0 ] || [ "$amount" -le 0 ]; then
        fail "order id $order_id, amount $amount"
fi
expect_rc 0 "${M[@]}" order get "$order_id"

step "4. the order's effects"
bal_after=$(expect_rc 0 "${M[@]}" --json balance get "$USER_ID" | jq_py 'd["balance"]')
[ "$bal_after" -eq $((bal_before - amount)) ] ||
        fail "balance $bal_before -> $bal_after, want a drop of $amount"
stock1=$(expect_rc 0 "${M[@]}" --json product get "$P1" | jq_py 'd["product"]["stock"]')
stock2=$(expect_rc 0 "${M[@]}" --json product get "$P2" | jq_py 'd["product"]["stock"]')
[ "$stock1" -eq $((stock1_before - Q1)) ] || fail "stock of $P1 $stock1_before -> $stock1"
[ "$stock2" -eq $((stock2_before - Q2)) ] || fail "stock of $P2 $stock2_before -> $stock2"
st=$(expect_rc 0 "${M[@]}" --json order get "$order_id" | jq_py 'd["status"]')
[ "$st" = ORDER_STATUS_COMPLETED ] || fail "order get says $st"
expect_rc 0 "${M[@]}" --json payment get "$order_id" >"$work/payment.json"
[ "$(jq_py 'd["status"]' <"$work/payment.json")" = PAYMENT_STATUS_CAPTURED ] ||
        fail "the payment is not captured: $(cat "$work/payment.json")"
[ "$(jq_py 'd["amount"]' <"$work/payment.json")" -eq "$amount" ] || fail "payment amount"
n=$(expect_rc 0 --json order list "$USER_ID" | jq_py 'len(d["orders"])')
[ "$n" -eq 0 ] || fail "the split dataset holds $n orders of user $USER_ID, want none"
bal=$(expect_rc 0 --json balance get "$USER_ID" | jq_py 'd["balance"]')
[ "$bal" -eq "$BALANCE" ] || fail "the split balance moved to $bal"

# The data platform and the cart learn of the order through the outbox relay.
deadline=$((SECONDS + 10))
while :; do
        n=$(expect_rc 0 "${M[@]}" --json dataplatform list --order "$order_id" |
                jq_py "sum(1 for r in d['received']
                           if r['order_id'] == $order_id and r['amount'] == $amount)")
        [ "$n" -eq 1 ] && break
        [ "$SECONDS" -lt "$deadline" ] || fail "no data-platform record of order $order_id in 10 s"
        sleep 0.2
done
expect_rc 0 "${M[@]}" dataplatform list --order "$order_id"
deadline=$((SECONDS + 10))
while :; do
        held=$(expect_rc 0 "${M[@]}" --json cart list "$USER_ID" |
                jq_py "sum(1 for i in d['items'] if i['product_id'] == $P1)")
        [ "$held" -eq 0 ] && break
        [ "$SECONDS" -lt "$deadline" ] || fail "the cart still holds product $P1 after 10 s"
        sleep 0.2
done

step "mercato call: generic JSON, both key spellings"
id=$(expect_rc 0 call product GetProduct "{\"productId\": \"$P2\"}" | jq_py 'd["product"]["id"]')
[ "$id" -eq "$P2" ] || fail "call GetProduct returned product $id"
id=$(expect_rc 0 "${M[@]}" call order /mercato.order.v1.OrderService/GetOrder \
        "{\"order_id\": $order_id}" | jq_py 'd["order_id"]')
[ "$id" -eq "$order_id" ] || fail "call GetOrder returned order $id"
st=$(expect_rc 0 call user Health | jq_py 'd["status"]')
[ "$st" = SERVING ] || fail "call user Health says $st"
out=$(expect_rc 0 methods order)
echo "$out"
grep -q /mercato.order.v1.OrderService/PlaceOrder <<<"$out" || fail "methods order lacks PlaceOrder"
out=$(expect_rc 0 stats product)
echo "$out"
grep -q /mercato.product.v1.ProductService/GetProduct <<<"$out" || fail "stats lacks GetProduct"

step "exit codes"
expect_rc 2 order get not-a-number >/dev/null
expect_rc 2 order place "$USER_ID" 4x2 >/dev/null
expect_rc 2 call product GetProduct '{"no_such_field": 1}' >/dev/null
expect_rc 2 call product GetProduct '{"product_id": true}' >/dev/null
expect_rc 2 call product NoSuchMethod '{}' >/dev/null
expect_rc 2 no-such-command >/dev/null
expect_rc 1 product get 999999 >/dev/null
grep -q '^mercato: NOT_FOUND: ' "$work/stderr" || fail "no NOT_FOUND: $(cat "$work/stderr")"
expect_rc 1 "${M[@]}" order get 999999 >/dev/null
stop_service product
expect_rc 3 --timeout 3000 product get 1 >/dev/null
grep -q '^mercato: UNAVAILABLE: ' "$work/stderr" || fail "no UNAVAILABLE: $(cat "$work/stderr")"
expect_rc 3 --timeout 3000 health product >/dev/null
expect_rc 3 --timeout 3000 health >/dev/null
expect_rc 0 health cart user >/dev/null

status=0
echo "test_e2e_client: all checks passed"
