#!/bin/bash
# make bench-rdma: the transport against perftest over several boots of the
# soft-RoCE bed.  Each boot runs bench-vs-perftest.sh (medians of
# HETSGD_BENCH_ROUNDS, default 5, alternating rounds); this prints the
# ratios of every boot, the host's load average when it started, and the
# median over boots against the targets:
#   bandwidth     hetsgd / ib_write_bw   at 64 KiB, 256 KiB, 1 MiB   >= 1.0
#   message rate  hetsgd / ib_write_bw   MsgRate at 64 B             >= 0.9
#   latency       hetsgd / ib_write_lat  t_typical at 8 B            <= 1.1
# and whether any boot fell below 0.9 (above 1.3 for latency).  Next to
# them, ib_write_bw against itself at the bandwidth sizes (aa: a second
# run of it in each round over the first): the noise floor of the
# comparison.  A transport bound by the same device as perftest is at
# parity when its ratio is inside that floor; ">= 1.0" then holds in about
# half the boots, whatever either program does.
#
#   bench-rdma.sh [REPS]        (REPS, default 3: boots; at least 1)
#
# A benchmark: it fails only when a boot fails, never for a missed target
# (MISSED is printed).  The host is shared: with other work on it the
# ratios drop, because our receiver spins on its CPU while perftest's
# latency test does too but its bandwidth test sleeps in the kernel less;
# the load average is printed next to each boot for that reason.
# Run it under the beds' lock: flock /tmp/hetsgd-bed.lock make bench-rdma
set -u
here=$(cd "$(dirname "$0")" && pwd -P)
src=$(cd "$here/../.." && pwd -P)
reps=${1:-${REPS:-3}}
builddir=${HETSGD_BUILDDIR:-$PWD}
case $reps in ''|*[!0-9]*|0) echo "bench-rdma: REPS=$reps: give the number of boots, 1 or more" >&2; exit 2 ;; esac
log=${TMPDIR:-/tmp}/hetsgd-bench-rdma.$$
mkdir -p "$log"
keys="bw65536 bw262144 bw1048576 rate64 lat"
aakeys="aa65536 aa262144 aa1048576"
declare -A val
loads=()

for b in $(seq 1 "$reps"); do
	loads[$b]=$(cut -d' ' -f1-3 /proc/loadavg)
	echo "bench-rdma: boot $b of $reps (host load average ${loads[$b]})"
	HETSGD_BUILDDIR=$builddir bash "$src/tests/rxe/rxe-bed.sh" --builddir "$builddir" -- \
		"HETSGD_BENCH_AA=1 HETSGD_BENCH_ROUNDS=${HETSGD_BENCH_ROUNDS:-5} $src/tests/rdma/bench-vs-perftest.sh" \
		>"$log/boot$b.log" 2>&1
	rc=$?
	grep -E '^(what|bw |aa |rate |lat |hetsgd-bench vs|load average)|credit waits from|credit-bound' "$log/boot$b.log"
	if [ $rc -ne 0 ]; then
		tail -40 "$log/boot$b.log"
		echo "bench-rdma: boot $b failed (exit $rc); its log: $log/boot$b.log" >&2
		exit 1
	fi
	while read -r _ _ key r lo hi; do
		val[$key,$b]=$r
	done < <(grep '^bench-vs-perftest: ratio' "$log/boot$b.log")
done

echo
echo "bench-rdma: ratios per boot (hetsgd / perftest, each the ratio of medians of its boot's rounds)"
printf '%-5s %-18s' boot "host load (1/5/15)"
for k in $keys $aakeys; do printf ' %10s' "$k"; done
echo
for b in $(seq 1 "$reps"); do
	printf '%-5s %-18s' "$b" "${loads[$b]}"
	for k in $keys $aakeys; do printf ' %10s' "${val[$k,$b]:--}"; done
	echo
done
printf '%-24s' "median over boots"
verdicts=
for k in $keys; do
	vs=
	for b in $(seq 1 "$reps"); do vs="$vs ${val[$k,$b]:-}"; done
	m=$(echo $vs | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
	printf ' %10s' "${m:--}"
	verdicts="$verdicts$(echo $vs | awk -v k="$k" -v m="$m" '{
		lat = (k == "lat"); t = lat ? 1.1 : (k ~ /^rate/ ? 0.9 : 1.0); bad = 0; lo = 1e9; hi = 0
		for (i = 1; i <= NF; i++) { if ($i < lo) lo = $i; if ($i > hi) hi = $i
			if (lat ? $i > 1.3 : $i < 0.9) bad++ }
		ok = lat ? m <= t : m >= t
		printf "\n  %-10s median %s %s %s; range %s..%s over %d boots; %d boot(s) %s", k, m,
			ok ? "met" : "MISSED", (lat ? "<= " : ">= ") t, lo, hi, NF, bad, lat ? "above 1.3" : "below 0.9" }')"
done
for k in $aakeys; do
	vs=
	for b in $(seq 1 "$reps"); do vs="$vs ${val[$k,$b]:-}"; done
	m=$(echo $vs | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
	printf ' %10s' "${m:--}"
done
echo
echo "bench-rdma: targets$verdicts"
echo "bench-rdma: aa is ib_write_bw against itself (no target): bandwidth ratios inside its range are parity"
echo "bench-rdma: logs in $log"
