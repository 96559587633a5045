#!/bin/bash
# Reference numbers of this device, measured in the same boot as our own
# tests: perftest's ib_write_bw (64 KiB) and ib_write_lat (8 B).  Anything
# of ours that claims a speed is compared against these, never against a
# number from another run.  Lines "perftest-ref: KEY VALUE" are for
# scripts; the tables (on stderr) are for people.
set -u
. "$(dirname "$0")/perftest-lib.sh"

bw=$(perftest_value bw 18515 65536 -n "${HETSGD_PERF_BW_ITERS:-2000}") ||
	{ echo "perftest-ref: ib_write_bw failed" >&2; exit 1; }
lat=$(perftest_value lat 18516 8 -n "${HETSGD_PERF_LAT_ITERS:-2000}") ||
	{ echo "perftest-ref: ib_write_lat failed" >&2; exit 1; }
echo "perftest-ref: device $dev gid $gid"
echo "perftest-ref: ib_write_bw_64KiB_MBps $bw"
echo "perftest-ref: ib_write_lat_8B_typical_us $lat"
