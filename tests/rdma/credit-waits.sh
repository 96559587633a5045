#!/bin/bash
# The bandwidth stream's credit-wait check on its own, so that it is seen
# to fail: hetsgd-bench streams 64 KiB, 256 KiB and 1 MiB blocks over the
# bed's device and credit_waits_check (credit-waits-lib.sh, the check
# bench-vs-perftest.sh applies to its bandwidth rows) must find no credit
# wait.  With --expect-waits the ring is forced shallow by the extra
# arguments (e.g. --slots 2) and the test passes only if the same check
# fails: a sender with two slots must wait for credits.
#
#   credit-waits.sh [--expect-waits] [hetsgd-bench ARGS...]
set -u
here=$(cd "$(dirname "$0")" && pwd -P)
. "$here/credit-waits-lib.sh"
bench="${HETSGD_BUILDDIR:-.}/apps/hetsgd-bench"
dev=${HETSGD_RDMA_DEV:?set HETSGD_RDMA_DEV (the bed does)}
expect=0
[ "${1:-}" = --expect-waits ] && { expect=1; shift; }
csv=$("$bench" --provider verbs --device "$dev" --sizes 65536,262144,1048576 --bytes 16 --rounds 1 \
	--only bw --csv "$@") || { echo "credit-waits: FAIL: hetsgd-bench failed" >&2; exit 1; }
echo "$csv" | credit_waits_check "credit-waits${*:+ ($*)}"
rc=$?
if [ $expect -eq 1 ]; then
	[ $rc -ne 0 ] || { echo "credit-waits: FAIL: with $* the check found no credit wait: it cannot tell a shallow ring"; exit 1; }
	echo "credit-waits: PASS: with $* the check fails, as it must"
	exit 0
fi
[ $rc -eq 0 ] && echo "credit-waits: PASS" || echo "credit-waits: FAIL"
exit $rc
