#!/bin/sh
# Past one server: LOSCAR with server and with sharded averaging at
# n = 2, 4, 8, 16, 32 workers over shm (issue #15), each pair of runs made
# one after the other here, so the ratio sharded/server shares the
# machine's speed and noise.  Tiny compute (a quadratic), real blocks:
# K = d = 8192 values (32 KiB) per round.  Per n and averaging it prints,
# from each run's summary.txt: the bytes the busiest rank received per
# round while training (headers included; the final models after STOP
# left out), rounds per second, and the seconds the server's transport
# took to connect; then the ratios sharded/server.  The busiest rank's
# bytes grow with n on the server path (n blocks in) and stay flat when
# sharded (n parts of K/n values in, n shard results in).
#
#   bench-scale.sh [OUT]     HETSGD_SCALE_TIME=seconds per run (default 3)
#                            HETSGD_SCALE_N="2 4 8 16 32" (the worker counts)
#
# Then ASGD over a sharded parameter server (--servers S = 1, 2, 4) with
# n = 8 workers (quadratic, d = 65536: 256 KiB gradients): per S, the bytes
# the busiest server rank received per update, updates per second, and
# the ratios to S = 1.  The busiest server's bytes fall as 1/S.
#
#   HETSGD_SCALE_SERVERS="1 2 4"   HETSGD_SCALE_PS_N=8
#
# On 2 cores the 33 ranks of n = 32 share two CPUs: rounds per second
# there measure the machine's contention as much as the averaging.
set -eu
b=${HETSGD_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
train=$b/apps/hetsgd-train
out=${1:-runs/bench-scale}
t=${HETSGD_SCALE_TIME:-3}
ns=${HETSGD_SCALE_N:-2 4 8 16 32}
[ -x "$train" ] || { echo "bench-scale: $train is not built: run make first" >&2; exit 1; }
q="--force --progress none --no-plots --pin no --time $t --method loscar --objective quad --dim 8192 --k-fraction 1 --round-time 0.01 --eval-interval 1000"

val() { awk -F' = ' -v k="$2" '$1 == k { print $2 }' "$1/summary.txt"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.3f", a / b }'; }

mkdir -p "$out"
runs=0
for n in $ns; do runs=$((runs + 2)); done
echo "bench-scale: $runs runs of $t s (LOSCAR, quadratic, K = d = 8192, round 10 ms); outputs in $out"
printf '%4s  %-8s %14s %9s %9s   %-8s %14s %9s %9s   %s\n' n server "bytes/round" "rounds/s" "connect" \
	sharded "bytes/round" "rounds/s" "connect" "sharded/server: bytes, rounds/s"
for n in $ns; do
	for a in server sharded; do
		d="$out/n$n-$a"
		if ! $train $q --workers "$n" --averaging "$a" --out "$d" >"$d.log" 2>&1; then
			echo "bench-scale: n = $n, $a averaging failed:" >&2
			tail -5 "$d.log" >&2
			exit 1
		fi
		eval "by_$a=\$(val \"\$d\" bytes-received-training-busiest-per-update)"
		eval "rs_$a=\$(awk -v u=\"\$(val \"\$d\" updates)\" -v e=\"\$(val \"\$d\" elapsed-s)\" 'BEGIN { printf \"%.1f\", u / e }')"
		eval "cn_$a=\$(val \"\$d\" connect-s)"
	done
	printf '%4s  %-8s %14s %9s %8ss   %-8s %14s %9s %8ss   %s, %s\n' "$n" "" "$by_server" "$rs_server" \
		"$cn_server" "" "$by_sharded" "$rs_sharded" "$cn_sharded" \
		"$(ratio "$by_sharded" "$by_server")" "$(ratio "$rs_sharded" "$rs_server")"
done

# ---- ASGD over S server ranks -------------------------------------------
ss=${HETSGD_SCALE_SERVERS:-1 2 4}
pn=${HETSGD_SCALE_PS_N:-8}
p="--force --progress none --no-plots --pin no --time $t --method asgd --objective quad --dim 65536 --eval-interval 1000"
echo "bench-scale: ASGD, $pn workers, quadratic d = 65536, over S server ranks"
printf '%4s %24s %10s   %s\n' S "busiest server bytes/upd" "updates/s" "vs S = 1: bytes, updates/s"
for S in $ss; do
	d="$out/asgd-s$S"
	if ! $train $p --workers "$pn" --servers "$S" --out "$d" >"$d.log" 2>&1; then
		echo "bench-scale: ASGD with $S servers failed:" >&2
		tail -5 "$d.log" >&2
		exit 1
	fi
	u=$(val "$d" updates)
	if [ "$S" -gt 1 ]; then
		most=$(sed -n 's/^server-shard-[0-9]* = .*, \([0-9]*\) bytes received,.*/\1/p' "$d/summary.txt" | sort -n | tail -n 1)
	else
		most=$(val "$d" bytes-received-training-server)
	fi
	bpu=$(awk -v b="$most" -v u="$u" 'BEGIN { printf "%.0f", u ? b / u : 0 }')
	ups=$(awk -v u="$u" -v e="$(val "$d" elapsed-s)" 'BEGIN { printf "%.1f", u / e }')
	[ -z "${bpu1:-}" ] && { bpu1=$bpu; ups1=$ups; }
	printf '%4s %24s %10s   %s, %s\n' "$S" "$bpu" "$ups" "$(ratio "$bpu" "$bpu1")" "$(ratio "$ups" "$ups1")"
done
