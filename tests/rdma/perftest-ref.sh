#!/bin/bash
# Reference numbers of this device, measured in the same boot as our own
# tests: perftest's ib_write_bw (64 KiB) and ib_write_lat (8 B).  Anything
# of ours that claims a speed is compared against these, never against a
# number from another run.  Lines "perftest-ref: KEY VALUE" are for
# scripts; the tables are for people.
set -u
. "$(dirname "$0")/perftest-lib.sh"

out=$(perftest_pair ib_write_bw 18515 -s 65536 -n "${HETSGD_PERF_BW_ITERS:-2000}") ||
	{ echo "$out"; echo "perftest-ref: ib_write_bw failed" >&2; exit 1; }
echo "$out"
bw=$(echo "$out" | perftest_bw 65536)
out=$(perftest_pair ib_write_lat 18516 -s 8 -n "${HETSGD_PERF_LAT_ITERS:-2000}") ||
	{ echo "$out"; echo "perftest-ref: ib_write_lat failed" >&2; exit 1; }
echo "$out"
lat=$(echo "$out" | perftest_lat 8)
is_number "$bw" || { echo "perftest-ref: could not read ib_write_bw's BW average" >&2; exit 1; }
is_number "$lat" || { echo "perftest-ref: could not read ib_write_lat's typical latency" >&2; exit 1; }
echo "perftest-ref: device $dev gid $gid"
echo "perftest-ref: ib_write_bw_64KiB_MBps $bw"
echo "perftest-ref: ib_write_lat_8B_typical_us $lat"
