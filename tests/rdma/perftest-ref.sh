#!/bin/bash
# Reference numbers of this device, measured in the same boot as our own
# tests: perftest's ib_write_bw (64 KiB) and ib_write_lat (8 B).  Anything
# of ours that claims a speed is compared against these, never against a
# number from another run.  Lines "perftest-ref: KEY VALUE" are for
# scripts; the tables are for people.
set -u
dev=${HETSGD_RDMA_DEV:?set HETSGD_RDMA_DEV (the bed does)}
gid=${HETSGD_GID_INDEX:-1}
addr=${HETSGD_TEST_ADDR:?set HETSGD_TEST_ADDR (the bed does)}
bw_iters=${HETSGD_PERF_BW_ITERS:-2000}
lat_iters=${HETSGD_PERF_LAT_ITERS:-2000}
tmp=${TMPDIR:-/tmp}

for t in ib_write_bw ib_write_lat; do
	command -v $t >/dev/null || { echo "perftest-ref: $t not found: apt-get install perftest" >&2; exit 1; }
done

# run_pair NAME PORT ARGS...: server in the background, client in front.
run_pair() {
	local name=$1 port=$2 srv_out="$tmp/$1.server.$$" rc; shift 2
	"$name" -d "$dev" -x "$gid" -p "$port" -F "$@" >"$srv_out" 2>&1 &
	local spid=$!
	sleep 1
	local try
	for try in 1 2 3 4 5; do
		if "$name" -d "$dev" -x "$gid" -p "$port" -F "$@" "$addr" >"$tmp/$name.client.$$" 2>&1; then
			rc=0; break
		fi
		rc=$?
		grep -q "Couldn't connect" "$tmp/$name.client.$$" || break
		sleep 1
	done
	wait $spid || rc=1
	cat "$tmp/$name.client.$$"
	if [ "$rc" -ne 0 ]; then
		echo "--- $name server output:"; cat "$srv_out"
	fi
	rm -f "$srv_out" "$tmp/$name.client.$$"
	return $rc
}

# The result row is the one that starts with the message size.
row() { awk -v s="$1" '$1 == s { print; exit }'; }

out=$(run_pair ib_write_bw 18515 -s 65536 -n "$bw_iters") || { echo "$out"; echo "perftest-ref: ib_write_bw failed" >&2; exit 1; }
echo "$out"
bw=$(echo "$out" | row 65536 | awk '{ print $4 }')
out=$(run_pair ib_write_lat 18516 -s 8 -n "$lat_iters") || { echo "$out"; echo "perftest-ref: ib_write_lat failed" >&2; exit 1; }
echo "$out"
lat=$(echo "$out" | row 8 | awk '{ print $5 }')
case $bw in ''|*[!0-9.]*) echo "perftest-ref: could not read ib_write_bw's BW average" >&2; exit 1;; esac
case $lat in ''|*[!0-9.]*) echo "perftest-ref: could not read ib_write_lat's typical latency" >&2; exit 1;; esac
echo "perftest-ref: device $dev gid $gid"
echo "perftest-ref: ib_write_bw_64KiB_MBps $bw"
echo "perftest-ref: ib_write_lat_8B_typical_us $lat"
