#!/usr/bin/env bash
# interop_health.sh: calls Health with nothing but protoc and nngcat, to prove the wire is plain protobuf over nng.
#
# usage: interop_health.sh PROTO_DIR -- SERVER_COMMAND...
#
# SERVER_COMMAND is any mercato server's command line; the word @URL@ in it is replaced by a
# tcp://127.0.0.1:<free port> address. The server is killed on exit, however the script ends.
# Needs protoc (protobuf-compiler), nngcat (nng-utils) and python3.
set -euo pipefail

die() {
        echo "interop_health: $*" >&2
        exit 1
}

[ $# -ge 3 ] && [ "$2" = "--" ] || die "usage: $0 PROTO_DIR -- SERVER_COMMAND... (with @URL@)"
proto_dir=$1
shift 2
[ -f "$proto_dir/rpc.proto" ] || die "no rpc.proto in $proto_dir"
for tool in protoc nngcat python3; do
        command -v "$tool" >/dev/null || die "$tool is not installed (see deploy/deps)"
done

work=$(mktemp -d /tmp/mercato-interop.XXXXXX)
server_pid=
cleanup() {
        if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
                kill -TERM "$server_pid" 2>/dev/null || true
                for _ in $(seq 1 100); do
                        kill -0 "$server_pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -KILL "$server_pid" 2>/dev/null || true
                wait "$server_pid" 2>/dev/null || true
        fi
        rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="tcp://127.0.0.1:$port"

cmd=()
substituted=no
for arg in "$@"; do
        if [[ $arg == *@URL@* ]]; then
                substituted=yes
        fi
        cmd+=("${arg//@URL@/$url}")
done
[ "$substituted" = yes ] || die "the server command has no @URL@ to listen on"

"${cmd[@]}" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

# The request, written in protobuf text format and encoded by protoc alone.
printf 'method: "/mercato.rpc.v1.StandardService/Health"\nrequest_id: "interop-health-1"\ntrace_id: "interop"\n' |
        protoc --proto_path="$proto_dir" --encode=mercato.rpc.v1.Request rpc.proto >"$work/req.bin"

# Retry until the server listens: nngcat's dial fails at once while nothing is there.
got=no
for _ in $(seq 1 100); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
                cat "$work/server.err" >&2
                die "the server exited before answering"
        fi
        if nngcat --req --dial "$url" --file "$work/req.bin" --raw --recv-timeout 3 \
                >"$work/reply.bin" 2>"$work/nngcat.err" && [ -s "$work/reply.bin" ]; then
                got=yes
                break
        fi
        sleep 0.1
done
[ "$got" = yes ] || { cat "$work/nngcat.err" >&2; die "no reply from $url"; }

protoc --proto_path="$proto_dir" --decode=mercato.rpc.v1.Reply rpc.proto \
        <"$work/reply.bin" >"$work/reply.txt" || die "the reply is not a mercato.rpc.v1.Reply"
echo "reply:"
sed 's/^/  /' "$work/reply.txt"

# OK is code 0, which text format leaves out; any other code is printed by name.
if grep -Eq '^[[:space:]]*code:' "$work/reply.txt" && ! grep -Eq '^[[:space:]]*code: OK$' "$work/reply.txt"; then
        die "Health did not answer OK"
fi

# The payload is field 2 (bytes) of Reply: cut it out with a small wire-format reader.
python3 - "$work/reply.bin" "$work/payload.bin" <<'PY'
import sys

def varint(buf, pos):
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise SystemExit("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos

buf = open(sys.argv[1], "rb").read()
pos = 0
payload = b""
while pos < len(buf):
    key, pos = varint(buf, pos)
    field, wire = key >> 3, key & 7
    if wire == 0:
        _, pos = varint(buf, pos)
    elif wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        n, pos = varint(buf, pos)
        if pos + n > len(buf):
            raise SystemExit("truncated field %d" % field)
        if field == 2:
            payload = buf[pos:pos + n]
        pos += n
    else:
        raise SystemExit("unexpected wire type %d" % wire)
open(sys.argv[2], "wb").write(payload)
PY

protoc --proto_path="$proto_dir" --decode=mercato.rpc.v1.HealthResponse rpc.proto \
        <"$work/payload.bin" >"$work/health.txt" || die "the payload is not a HealthResponse"
echo "payload:"
sed 's/^/  /' "$work/health.txt"
grep -Eq '^status: "SERVING"$' "$work/health.txt" || die "Health is not SERVING"
echo "1 passed, 0 failed"
