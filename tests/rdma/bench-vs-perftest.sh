#!/bin/bash
# hetsgd-bench on the bed's device next to perftest on the same device in
# the same boot: bandwidth, message rate and latency, perftest's, and the
# ratio per size, against the targets:
#   bandwidth     >= 1.0x ib_write_bw at 64 KiB and above
#   message rate  >= 0.9x ib_write_bw's MsgRate at 64 B (8..256 B printed)
#   latency       <= 1.1x ib_write_lat at 8 B
#
# Soft-RoCE under emulation drifts by tens of percent within one boot, so
# perftest and hetsgd alternate, ROUNDS (at least 5) times, and each row
# gives the ratio of the medians and the spread of the per-round ratios
# (min..max; a round is one perftest run next to one of ours).  This is a
# benchmark: it prints a missed target as MISSED, since a noisy machine is
# not a bug, and fails only if a program fails or the bandwidth stream was
# credit-bound: in every round, at 64 KiB and above, hetsgd-bench's sender
# must never have waited for a credit or a send-queue entry (after the
# first quarter of each run), with the ring at the depth the transport
# chose from the device (credit-waits-lib.sh; credit-waits.sh shows the
# check failing on a ring forced shallow).  Lines starting with
# "bench-vs-perftest: ratio" are for scripts (make bench-rdma).
#
# hetsgd-bench's sender chains its puts (hetsgd_tp_put_more, up to 16 per
# doorbell, its -l 16 default); perftest runs with its defaults (one post
# per write).  With HETSGD_BENCH_AA=1 each round also runs ib_write_bw a
# second time at the bandwidth sizes, and "aa" rows give perftest against
# itself, the same ratio and spread: the noise floor a device-bound
# comparison cannot get below (make bench-rdma sets it).
#
# Environment: HETSGD_BENCH_ROUNDS (5), HETSGD_BENCH_BW_SIZES ("65536 262144
# 1048576"), HETSGD_BENCH_RATE_SIZES ("8 64 256"), HETSGD_BENCH_MB (24),
# HETSGD_BENCH_RATE_ITERS (20000 blocks per rate run, both programs),
# HETSGD_BENCH_AA (0).
set -u
. "$(dirname "$0")/perftest-lib.sh"
. "$(dirname "$0")/credit-waits-lib.sh"
bench="${HETSGD_BUILDDIR:-.}/apps/hetsgd-bench"
bw_sizes=${HETSGD_BENCH_BW_SIZES:-"65536 262144 1048576"}
rate_sizes=${HETSGD_BENCH_RATE_SIZES:-"8 64 256"}
lat_size=8
mb=${HETSGD_BENCH_MB:-24}
rounds=${HETSGD_BENCH_ROUNDS:-5}
rate_iters=${HETSGD_BENCH_RATE_ITERS:-20000}
aa=${HETSGD_BENCH_AA:-0}
lat_iters=2000
[ "$rounds" -ge 1 ] 2>/dev/null || { echo "bench: HETSGD_BENCH_ROUNDS=$rounds: use a whole number >= 1 (5 or more for steady numbers)" >&2; exit 2; }
# it prints its table at the end: say up front how long the quiet lasts
echo "bench-vs-perftest: $rounds alternating rounds of perftest and hetsgd-bench; about $((rounds * 40)) s on rxe under qemu"
echo "bench-vs-perftest: load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# ours SIZES bw|lat ITERS [ARGS...] -> "size value rate" lines (the message rate: csv field 5);
# the CSV itself in $tmp/ours.csv.$$ (credit waits: field 6)
ours() {
	local csv sizes=${1// /,} what=$2 it=()
	[ -n "$3" ] && it=(--iters "$3")
	shift 3
	csv=$("$bench" --provider verbs --device "$dev" --sizes "$sizes" --bytes "$mb" --rounds 1 \
		--lat-iters $lat_iters --only "$what" "${it[@]}" "$@" --csv) || { echo "bench: hetsgd-bench failed" >&2; return 1; }
	echo "$csv" > "$tmp/ours.csv.$$"
	echo "$csv" | awk -F, -v w="$what" 'NR > 1 { print $2, (w == "bw" ? $3 : $4), $5 }'
}
# pick SIZE FIELD: from "size bw/lat rate" lines on stdin
pick() { awk -v s="$1" -v f="$2" '$1 == s { print $f }'; }

declare -A ref ours_v
credit_bound=0
for r in $(seq 1 "$rounds"); do
	for s in $bw_sizes; do
		n=$(( mb * 1048576 / s )); [ $n -ge 100 ] || n=100
		v=$(perftest_value bw 18520 "$s" -n "$n" 2>"$tmp/pt.$$") ||
			{ cat "$tmp/pt.$$"; echo "bench: ib_write_bw -s $s failed" >&2; exit 1; }
		ref[bw$s]+="$v "
	done
	for s in $bw_sizes; do
		[ "$aa" = 1 ] || break
		n=$(( mb * 1048576 / s )); [ $n -ge 100 ] || n=100
		v=$(perftest_value bw 18520 "$s" -n "$n" 2>"$tmp/pt.$$") ||
			{ cat "$tmp/pt.$$"; echo "bench: ib_write_bw -s $s failed" >&2; exit 1; }
		ours_v[aa$s]+="$v "
		ref[aa$s]=${ref[bw$s]}
	done
	for s in $rate_sizes; do
		v=$(perftest_value rate 18520 "$s" -n "$rate_iters" 2>"$tmp/pt.$$") ||
			{ cat "$tmp/pt.$$"; echo "bench: ib_write_bw -s $s failed" >&2; exit 1; }
		ref[rate$s]+="$v "
	done
	v=$(perftest_value lat 18521 $lat_size -n $lat_iters 2>"$tmp/pt.$$") ||
		{ cat "$tmp/pt.$$"; echo "bench: ib_write_lat failed" >&2; exit 1; }
	ref[lat]+="$v "

	# the ring's depth as the transport chose it from the device
	out=$(ours "$bw_sizes" bw "") || exit 1
	credit_waits_check "bench-vs-perftest: round $r" < "$tmp/ours.csv.$$" || credit_bound=1
	for s in $bw_sizes; do
		v=$(echo "$out" | pick "$s" 2); is_measure "$v" || { echo "bench: no bandwidth for $s B: $out" >&2; exit 1; }
		ours_v[bw$s]+="$v "
	done
	# 128 slots: the pipeline of ib_write_bw's default tx depth (-t 128)
	out=$(ours "$rate_sizes" bw "$rate_iters" --slots 128) || exit 1
	for s in $rate_sizes; do
		v=$(echo "$out" | pick "$s" 3); is_measure "$v" || { echo "bench: no message rate for $s B: $out" >&2; exit 1; }
		ours_v[rate$s]+="$v "
	done
	out=$(ours "$lat_size" lat "") || exit 1
	v=$(echo "$out" | pick "$lat_size" 2); is_measure "$v" || { echo "bench: no latency: $out" >&2; exit 1; }
	ours_v[lat]+="$v "
done
rm -f "$tmp/pt.$$" "$tmp/ours.csv.$$"

# row KEY LABEL SIZE UNIT DIR TARGET: medians, their ratio, per-round spread, verdict
row() {
	local key=$1 label=$2 size=$3 dir=$5 target=$6 a b
	a=$(echo ${ours_v[$key]} | tr ' ' '\n' | median)
	b=$(echo ${ref[$key]} | tr ' ' '\n' | median)
	awk -v label="$label" -v s="$size" -v a="$a" -v b="$b" -v ra="${ours_v[$key]}" -v rb="${ref[$key]}" \
		-v dir="$dir" -v t="$target" -v key="$key" 'BEGIN {
		n = split(ra, x, " "); split(rb, y, " ")
		lo = 1e30; hi = -1e30
		for (i = 1; i <= n; i++) { q = x[i] / y[i]; if (q < lo) lo = q; if (q > hi) hi = q }
		r = a / b
		if (t == "") v = "-"
		else if (dir == "ge") v = (r >= t ? "met" : "MISSED") " (>= " t ")"
		else v = (r <= t ? "met" : "MISSED") " (<= " t ")"
		printf "%-6s %-8s %12.4g %12.4g %6.2f  %5.2f..%-5.2f  %-16s %s/ %s\n", label, s, a, b, r, lo, hi, v, ra, rb
		printf "bench-vs-perftest: ratio %s %.4f %.4f %.4f\n", key, r, lo, hi }'
}

echo "hetsgd-bench vs perftest on $dev, same boot, medians of $rounds alternating rounds"
echo "(bw: MB/s, MB = 2^20 bytes; rate: Mpps, 10^6 blocks/s vs ib_write_bw MsgRate; lat: us, vs ib_write_lat t_typical;"
echo " aa: ib_write_bw's second run of each round against its first, the noise floor)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-8s %12s %12s %6s  %-12s  %-16s %s\n' what bytes hetsgd perftest ratio "min..max" target "rounds (hetsgd/ perftest)"
table=$(
	for s in $bw_sizes; do row "bw$s" bw "$s" MB/s ge 1.0; done
	if [ "$aa" = 1 ]; then for s in $bw_sizes; do row "aa$s" aa "$s" MB/s ge ""; done; fi
	for s in $rate_sizes; do row "rate$s" rate "$s" Mpps ge "$([ "$s" = 64 ] && echo 0.9)"; done
	row lat lat $lat_size us le 1.1
)
echo "$table" | grep -v '^bench-vs-perftest: ratio'
# for scripts: KEY median-ratio min max
echo "$table" | grep '^bench-vs-perftest: ratio'
if [ $credit_bound -ne 0 ]; then
	echo "bench-vs-perftest: FAIL: a bandwidth stream waited for credits (the rounds above name the sizes): the ring the transport chose is too shallow for the device" >&2
	exit 1
fi
