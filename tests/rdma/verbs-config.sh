#!/bin/bash
# The verbs provider's configuration on a real device: the environment
# overrides that users of NCCL and perftest rely on work, and every wrong
# setting fails with a message that names it.  Runs in the soft-RoCE bed.
set -u
prog="${HETSGD_BUILDDIR:-.}/tests/rdma/hetsgd-tp-check"
dev=${HETSGD_RDMA_DEV:?set HETSGD_RDMA_DEV (the bed does)}
gid=${HETSGD_GID_INDEX:?set HETSGD_GID_INDEX (the bed does)}
addr=${HETSGD_TEST_ADDR:?set HETSGD_TEST_ADDR (the bed does)}
fail=0

# expect_ok DESCRIPTION ENV...: the run passes with these settings.
expect_ok() {
	local what=$1 out; shift
	if out=$(env "$@" "$prog" --provider verbs --ranks 2 --puts 50 --quiet 2>&1); then
		echo "verbs-config: ok: $what"
	else
		echo "$out"; echo "verbs-config: FAIL: $what should work"; fail=1
	fi
}

# expect_err DESCRIPTION PATTERN ENV...: the run fails and says PATTERN.
expect_err() {
	local what=$1 pat=$2 out; shift 2
	if out=$(env "$@" "$prog" --provider verbs --ranks 2 --puts 50 --quiet 2>&1); then
		echo "verbs-config: FAIL: $what should fail"; fail=1
	elif ! grep -q -- "$pat" <<<"$out"; then
		echo "$out"; echo "verbs-config: FAIL: $what: message lacks '$pat'"; fail=1
	else
		echo "verbs-config: ok: $what: $(grep -m1 -- "$pat" <<<"$out" | sed 's/^tp-check: //')"
	fi
}

expect_ok "HETSGD_IB_DEV=$dev HETSGD_GID_INDEX=$gid HETSGD_IB_ADDR=$addr" \
	HETSGD_IB_DEV="$dev" HETSGD_GID_INDEX="$gid" HETSGD_IB_ADDR="$addr"
expect_err "unknown device" "not found; this host has: $dev" HETSGD_IB_DEV=nosuch0
expect_err "GID index that is not RoCE v2 IPv4" "HETSGD_GID_INDEX" HETSGD_GID_INDEX=0
expect_err "GID index out of range" 'HETSGD_GID_INDEX="70000"' HETSGD_GID_INDEX=70000
expect_err "address that is not an IPv4" "not an IPv4 address" HETSGD_IB_ADDR=nonsense
expect_err "address of no RDMA port" "HETSGD_IB_ADDR" HETSGD_IB_ADDR=192.0.2.77
expect_err "connect timeout that is not a number" "HETSGD_CONNECT_TIMEOUT" HETSGD_CONNECT_TIMEOUT=soon

# Registration under a small RLIMIT_MEMLOCK without CAP_IPC_LOCK (which
# exempts root): the message must say how to raise it.  Dropping the
# capability from the bounding set keeps us root, so the build tree stays
# readable wherever it lives (a clone in a 0700 /root, say).
if command -v setpriv >/dev/null; then
	if out=$(ulimit -l 64; setpriv --bounding-set=-ipc_lock \
		"$prog" --provider verbs --ranks 2 --puts 50 --slots 16 --slot-bytes 65536 --quiet 2>&1); then
		echo "verbs-config: FAIL: a 64 KiB memlock limit should refuse 2 MiB of rings"; fail=1
	elif grep -q "RLIMIT_MEMLOCK is 64 KiB" <<<"$out" && grep -q "ulimit -l" <<<"$out"; then
		echo "verbs-config: ok: small RLIMIT_MEMLOCK: $(grep -m1 RLIMIT_MEMLOCK <<<"$out" | sed 's/^tp-check: //' | cut -c1-160)..."
	else
		echo "$out"; echo "verbs-config: FAIL: small RLIMIT_MEMLOCK: no clear message"; fail=1
	fi
else
	echo "verbs-config: FAIL: cannot test RLIMIT_MEMLOCK without setpriv (util-linux)"; fail=1
fi
exit $fail
