#!/bin/bash
# hetsgd-bench on the bed's device next to perftest on the same device in
# the same boot: our put bandwidth and latency, perftest's, and the ratio
# per size, against the targets (bandwidth >= 0.9x ib_write_bw at 64 KiB
# and above; small-block latency <= 1.3x ib_write_lat).
#
# Soft-RoCE under emulation drifts by tens of percent within one boot, so
# perftest and hetsgd alternate, ROUNDS times per size, and the table
# compares medians.  This is a benchmark: it fails only if a program fails,
# and prints a missed target as MISSED, since a noisy machine is not a bug.
set -u
. "$(dirname "$0")/perftest-lib.sh"
bench="${HETSGD_BUILDDIR:-.}/apps/hetsgd-bench"
bw_sizes=${HETSGD_BENCH_BW_SIZES:-"65536 262144 1048576"}
lat_size=8
mb=${HETSGD_BENCH_MB:-24}
rounds=${HETSGD_BENCH_ROUNDS:-3}
# it prints its table at the end: say up front how long the quiet lasts
echo "bench-vs-perftest: $rounds alternating rounds of perftest and hetsgd-bench per size; about 100 s on rxe under qemu"
lat_iters=2000

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ours() { # ours SIZE bw|lat -> the number
	local csv
	csv=$("$bench" --provider verbs --device "$dev" --sizes "$1" --bytes "$mb" \
		--lat-iters $lat_iters --only "$2" --csv) || { echo "bench: hetsgd-bench failed" >&2; return 1; }
	echo "$csv" | awk -F, -v s="$1" -v f="$([ "$2" = bw ] && echo 3 || echo 4)" '$2 == s { print $f }'
}

declare -A ref ours_v
for r in $(seq 1 "$rounds"); do
	for s in $bw_sizes; do
		n=$(( mb * 1048576 / s )); [ $n -ge 100 ] || n=100
		v=$(perftest_value bw 18520 "$s" -n "$n" 2>"$tmp/pt.$$") ||
			{ cat "$tmp/pt.$$"; echo "bench: ib_write_bw -s $s failed" >&2; exit 1; }
		ref[$s]+="$v "
		v=$(ours "$s" bw) && is_number "$v" || exit 1
		ours_v[$s]+="$v "
	done
	v=$(perftest_value lat 18521 $lat_size -n $lat_iters 2>"$tmp/pt.$$") ||
		{ cat "$tmp/pt.$$"; echo "bench: ib_write_lat failed" >&2; exit 1; }
	ref[lat]+="$v "
	v=$(ours $lat_size lat) && is_number "$v" || exit 1
	ours_v[lat]+="$v "
done

rm -f "$tmp/pt.$$"
echo "hetsgd-bench vs perftest on $dev, same boot, median of $rounds alternating rounds (MB = 2^20 bytes)"
printf '%-9s %12s %14s %7s  %-16s %s\n' bytes "hetsgd MB/s" "perftest MB/s" ratio target "rounds (hetsgd/perftest)"
for s in $bw_sizes; do
	a=$(echo ${ours_v[$s]} | tr ' ' '\n' | median)
	b=$(echo ${ref[$s]} | tr ' ' '\n' | median)
	awk -v s="$s" -v a="$a" -v b="$b" -v ra="${ours_v[$s]}" -v rb="${ref[$s]}" 'BEGIN {
		r = a / b; printf "%-9s %12.2f %14.2f %7.2f  %-16s %s/ %s\n", s, a, b, r,
			(r >= 0.9 ? "met (>= 0.9)" : "MISSED (>= 0.9)"), ra, rb }'
done
printf '%-9s %12s %14s %7s  %-16s %s\n' bytes "hetsgd us" "perftest us" ratio target "rounds (hetsgd/perftest)"
a=$(echo ${ours_v[lat]} | tr ' ' '\n' | median)
b=$(echo ${ref[lat]} | tr ' ' '\n' | median)
awk -v s="$lat_size" -v a="$a" -v b="$b" -v ra="${ours_v[lat]}" -v rb="${ref[lat]}" 'BEGIN {
	r = a / b; printf "%-9s %12.2f %14.2f %7.2f  %-16s %s/ %s\n", s, a, b, r,
		(r <= 1.3 ? "met (<= 1.3)" : "MISSED (<= 1.3)"), ra, rb }'
