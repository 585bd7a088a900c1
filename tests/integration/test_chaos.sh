#!/usr/bin/env bash
# The fault suite end to end: `mercato-bench chaos` on a cluster of its own.
#
#   test_chaos.sh all    MERCATO_BENCH   every scenario in saga, 2pc and monolith passes, and
#                                        kill-coordinator and kill-services in orchestration
#                                        and tcc (the orchestrator killed at each crash point);
#                                        the full 9 x 5 runs are `mercato-bench chaos`'s own
#   test_chaos.sh broken MERCATO_BENCH   with 2pc recovery switched off (a test-only switch),
#                                        kill-coordinator in 2pc reports the violation
#
# chaos starts its own PostgreSQL (deploy/pg) and services, and removes them when it ends.
set -euo pipefail

what=${1:?usage: test_chaos.sh all|broken MERCATO_BENCH}
bench=${2:?usage: test_chaos.sh all|broken MERCATO_BENCH}
out=$(mktemp "${TMPDIR:-/tmp}/test_chaos.XXXXXX")
trap 'rm -f "$out"' EXIT

fail() {
        echo "test_chaos: FAIL: $*" >&2
        cat "$out" >&2
        exit 1
}

case $what in
all)
        # Short loads: the point is that every fault heals to a consistent state.
        rc=0
        timeout 660 "$bench" chaos --scenario all --mode saga,2pc,monolith --duration 2 \
                --clients 3 --converge-timeout 60 >"$out" || rc=$?
        # The orchestrator's modes: the scenario written for them, and one of the rest.
        timeout 180 "$bench" chaos --scenario kill-coordinator,kill-services \
                --mode orchestration,tcc --duration 2 --clients 3 --converge-timeout 60 \
                | grep -vE '^SCENARIO ' >>"$out" || rc=$?
        cat "$out"
        lines=$(grep -cE '^[a-z-]+ +(saga|2pc|monolith) ' "$out" || true)
        [ "$lines" -eq 27 ] || fail "want 27 lines (9 scenarios x 3 modes), got $lines"
        lines=$(grep -cE '^kill-(coordinator|services) +(orchestration|tcc) ' "$out" || true)
        [ "$lines" -eq 4 ] || fail "want 4 lines (2 scenarios x orchestration, tcc), got $lines"
        if grep -E '^[a-z-]+ +(saga|2pc|monolith|orchestration|tcc) .* FAIL' "$out" >/dev/null; then
                fail "some line failed"
        fi
        # The orchestrator died at each of its crash points: 9, and 13 in tcc.
        for m in orchestration:9 tcc:13; do
                line=$(grep -E "^kill-coordinator +${m%:*} " "$out")
                read -r _ _ _ _ _ _ _ _ faults _ <<<"$line"
                [ "$faults" -eq "${m#*:}" ] || fail "${m%:*}: $faults crash points fired, want ${m#*:}"
        done
        # A scenario is skipped only where namespaces cannot be made, and says why.
        while read -r line; do
                case $line in
                partition*SKIP*skipped:*) ;;
                *SKIP*) fail "unexpected skip: $line" ;;
                esac
        done < <(grep ' SKIP ' "$out" || true)
        [ "$rc" -eq 0 ] || fail "exit status $rc with every line passing"
        ;;
broken)
        rc=0
        timeout 300 "$bench" chaos --scenario kill-coordinator --mode 2pc --duration 3 \
                --clients 3 --converge-timeout 12 --set order.tpc_recovery=off >"$out" || rc=$?
        cat "$out"
        [ "$rc" -ne 0 ] || fail "chaos passed with 2pc recovery off"
        line=$(grep -E '^kill-coordinator +2pc ' "$out") || fail "no kill-coordinator 2pc line"
        # Columns: scenario mode attempted acked completed cancelled lost violations faults
        # converge result [note]
        read -r _ _ _ _ _ _ lost violations faults _ result _ <<<"$line"
        [ "$faults" -gt 0 ] || fail "no fault was injected"
        [ "$result" = FAIL ] || fail "the line says $result, not FAIL"
        [ "$lost" -gt 0 ] || [ "$violations" -gt 0 ] || fail "no lost order and no violation"
        ;;
*)
        echo "usage: test_chaos.sh all|broken MERCATO_BENCH" >&2
        exit 2
        ;;
esac
echo "test_chaos $what: ok"
