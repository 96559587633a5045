#!/bin/sh
# Hostile peers (tests/rdma/hostile_peer.c): a rank that rewrites its slot
# after delivery, replays a held slot and forges another rank's credit
# word; over verbs also lies in the polled ring (a length past the limit,
# credits for blocks never sent), strangers' connection requests and a
# rank claimed twice.  Each scenario must end as described there, within its time.
#
#   hostile-check.sh [--provider shm|verbs]
set -u
prov=shm
[ "${1:-}" = --provider ] && prov=$2
prog="${HETSGD_BUILDDIR:-.}/tests/rdma/hetsgd-hostile-check"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hostile.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

run() {	# scenario, seconds allowed
	t0=$(date +%s)
	"$prog" --provider "$prov" --scenario "$1" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	t=$(( $(date +%s) - t0 ))
	cat "$tmp/out" "$tmp/err"
	if [ $rc -ne 0 ]; then
		echo "hostile-check.sh: FAIL: $1 over $prov exited $rc"; fail=1
	elif [ "$t" -gt "$2" ]; then
		echo "hostile-check.sh: FAIL: $1 over $prov took $t s (allowed $2)"; fail=1
	fi
}

run rewrite 20
run forge 20
if [ "$prov" = verbs ]; then
	run poll-len 20
	run poll-credit 20
	run connect-bogus 30
	# One line per source, whatever the number of refused requests.
	n=$(grep -c 'refused a connection request from' "$tmp/err")
	if [ "$n" -ne 1 ]; then
		echo "hostile-check.sh: FAIL: $n refusal lines for 3 bogus requests from one source (want 1)"; fail=1
	fi
	grep -q 'proof of the job key is wrong' "$tmp/err" ||
		{ echo "hostile-check.sh: FAIL: the refusal does not say why"; fail=1; }
	run connect-dup 15
	grep -q 'connected twice, from .* and again from ' "$tmp/out" ||
		{ echo "hostile-check.sh: FAIL: the duplicate claim does not name both addresses"; fail=1; }
fi
exit $fail
