#!/bin/bash
# hetsgd-bench on the bed's device right after perftest on the same device
# in the same boot: our put bandwidth and latency, perftest's, and the
# ratio per size, next to the targets (bandwidth >= 0.9x ib_write_bw at
# 64 KiB and above; small-block latency <= 1.3x ib_write_lat).  This is a
# benchmark: it fails only if a program fails, and reports a missed
# target as MISSED rather than failing, since a noisy machine is not a bug.
set -u
. "$(dirname "$0")/perftest-lib.sh"
bench="${HETSGD_BUILDDIR:-.}/apps/hetsgd-bench"
bw_sizes=${HETSGD_BENCH_BW_SIZES:-"65536 262144 1048576"}
lat_size=8
mb=${HETSGD_BENCH_MB:-48}

declare -A ref_bw
for s in $bw_sizes; do
	n=$(( mb * 1048576 / s )); [ $n -ge 100 ] || n=100
	out=$(perftest_pair ib_write_bw 18520 -s "$s" -n "$n") || { echo "$out"; exit 1; }
	ref_bw[$s]=$(echo "$out" | perftest_bw "$s")
	is_number "${ref_bw[$s]}" || { echo "$out"; echo "bench: cannot read ib_write_bw at $s" >&2; exit 1; }
done
out=$(perftest_pair ib_write_lat 18521 -s $lat_size -n 2000) || { echo "$out"; exit 1; }
ref_lat=$(echo "$out" | perftest_lat $lat_size)
is_number "$ref_lat" || { echo "$out"; echo "bench: cannot read ib_write_lat" >&2; exit 1; }

sizes=$(echo $lat_size $bw_sizes | tr ' ' ',')
csv=$("$bench" --provider verbs --device "$dev" --sizes "$sizes" --bytes "$mb" --lat-iters 2000 --csv) ||
	{ echo "bench: hetsgd-bench failed" >&2; exit 1; }
echo "$csv"
echo
echo "hetsgd-bench vs perftest on $dev, same boot (MB = 2^20 bytes)"
printf '%-10s %14s %14s %8s %10s\n' bytes "hetsgd MB/s" "perftest MB/s" ratio target
for s in $bw_sizes; do
	ours=$(echo "$csv" | awk -F, -v s="$s" '$2 == s { print $3 }')
	awk -v s="$s" -v a="$ours" -v b="${ref_bw[$s]}" 'BEGIN {
		r = a / b; printf "%-10s %14.2f %14.2f %8.2f %10s\n", s, a, b, r, (r >= 0.9 ? "met" : "MISSED (>= 0.9)") }'
done
ours=$(echo "$csv" | awk -F, -v s="$lat_size" '$2 == s { print $4 }')
printf '%-10s %14s %14s %8s %10s\n' bytes "hetsgd us" "perftest us" ratio target
awk -v s="$lat_size" -v a="$ours" -v b="$ref_lat" 'BEGIN {
	r = a / b; printf "%-10s %14.2f %14.2f %8.2f %10s\n", s, a, b, r, (r <= 1.3 ? "met" : "MISSED (<= 1.3)") }'
