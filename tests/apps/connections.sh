#!/bin/sh
# Connections only where the method needs them, at 64 ranks over shm:
# ASGD (a server) connects a star -- the server 63 peers, every worker 1
# -- and LOSCAR with sharded averaging connects every pair (63 each).
# summary.txt's keys come from the transport (hetsgd_tp_get_footprint)
# on every rank, gathered by the engine.  Tiny model, 2 s each.
. "$(dirname "$0")/lib.sh"
test_tmp connections
train="${HETSGD_BUILDDIR:-.}/apps/hetsgd-train"

key() { sed -n "s/^$2 = //p" "$tmp/$1/summary.txt"; }

run() {
	out=$1
	shift
	"$train" --objective quad --dim 8 --workers 63 --time 2 --provider shm --no-plots --progress none \
		--out "$tmp/$out" "$@" >"$tmp/$out.log" 2>&1 || { cat "$tmp/$out.log"; ko "$out: the run failed"; return 1; }
}

# want FOLDER KEY VALUE
want() {
	got=$(key "$1" "$2")
	if [ "$got" = "$3" ]; then ok "$1: $2 = $3"; else ko "$1: $2 = '$got', want '$3'"; fi
}

if run star --method asgd; then
	want star connections star
	want star tp-peers-server 63
	want star tp-conns-server 63
	want star tp-peers-workers "1 .. 1"
	want star tp-conns-workers "1 .. 1"
	# a worker holds one ring and one set of send buffers: 1/63 of the server's rings
	srv=$(key star tp-registered-bytes-server)
	wrk=$(key star tp-registered-bytes-workers | sed 's/ .*//')
	expect "star: a worker registers $wrk bytes, the server $srv" \
		"star: a worker registers $wrk bytes, the server $srv (want < 1/8)" \
		test "$((wrk * 8))" -lt "$srv"
fi
if run sharded --method loscar --averaging sharded; then
	want sharded connections all
	want sharded tp-conns-server 63
	want sharded tp-peers-workers "63 .. 63"
	want sharded tp-conns-workers "63 .. 63"
fi
test_end
