#!/bin/sh
# The simulator at scale: time to a target loss for n = 16, 128, 1024 and
# 8192 workers, LOSCAR with server vs sharded averaging and Rescaled vs
# vanilla ASGD (and Rescaled over 16 server ranks, --servers 16), on 100 Gb/s and 10 Gb/s links (2 us latency), for the
# traffic of two model sizes:
#   fmnist  31,400 bytes: the Fashion-MNIST softmax example (7,850 floats),
#           2 ms per gradient (--time-unit 0.002)
#   100M    400,000,000 bytes: a 100M-parameter model, 100 ms per gradient
# The loss curves are those of small proxies, costed for each model's
# bytes (hetsgd-sim --model-bytes):
#   ASGD    the quadratics example (--objective quad --dim 100, worker
#           optima spread apart: vanilla ASGD's bias shows), step 0.08 / n
#           (bench-algos' 0.02 at n = 4; a delay ~ n needs gamma ~ 1/n)
#   LOSCAR  softmax regression on synthetic data (8 features, 4 classes,
#           d = 36, batch 8) split Dirichlet(0.1) over the workers, so
#           that averaging matters; step 0.05, rounds of 25 c, K = d / 10.
#           (On the spread-apart quadratics LOSCAR with K = d / 10 does
#           not reach the target at any n, in real runs as in the
#           simulator; on iid data the local steps alone reach it and
#           the averaging's cost never shows.)
# Compute times tau_i = c (1 + sqrt(i)) with 10 % noise.  Target: 10 % of
# the starting loss; "-" when not reached within the budget of 15000 c
# (30 s of simulated time for the 2 ms model, 1500 s for the 100M one).
#
#   sim-scale.sh [OUT]     writes OUT/TABLE.md; about 2 minutes on 2 cores (101 s quiet; 190 s at load 9 before the servers column)
set -eu
b=${HETSGD_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
sim=$b/apps/hetsgd-sim
out=${1:-runs/sim-scale}
mkdir -p "$out"
tab=$out/TABLE.md
start=$(date +%s)

# time_to CSV: first time the loss is <= 10 % of the first row's
time_to() {
	awk -F, 'NR == 2 { tg = $5 / 10 } NR > 2 && $5 != "" && $5 + 0 <= tg { printf "%.3g", $1; found = 1; exit }
		END { if (!found) print "-" }' "$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

{
	echo "| n | link | model | LOSCAR server (s) | LOSCAR sharded (s) | sharded / server | ASGD Rescaled (s) | ASGD vanilla (s) | ASGD Rescaled, 16 servers (s) |"
	echo "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$tab"
for model in fmnist 100M; do
	if [ "$model" = fmnist ]; then
		mb=31400; c=0.002; budget=30
	else
		mb=400000000; c=0.1; budget=1500
	fi
	round=$(awk -v c=$c 'BEGIN { print 25 * c }')
	ev=$(awk -v b=$budget 'BEGIN { print b / 300 }')
	for gbps in 100 10; do
		for n in 16 128 1024 8192; do
			base="--force --progress none --no-plots --workers $n --profile sqrt
				--noise 0.1 --time-unit $c --time $budget --eval-interval $ev --bandwidth $gbps --latency 2
				--model-bytes $mb"
			lo="--method loscar --gamma 0.05 --round-time $round --k-fraction 0.1 --data synth
				--synth-n 400000 --synth-p 8 --synth-classes 4 --objective softmax --split dirichlet
				--alpha 0.1 --batch 8"
			as="--method asgd --gamma $(awk -v n=$n 'BEGIN { print 0.08 / n }') --objective quad --dim 100"
			r=$out/$model-$gbps-$n
			# shellcheck disable=SC2086
			$sim $base $lo --averaging server --out "$r-server" >/dev/null
			# shellcheck disable=SC2086
			$sim $base $lo --averaging sharded --out "$r-sharded" >/dev/null
			# shellcheck disable=SC2086
			$sim $base $as --policy rescaled --out "$r-rescaled" >/dev/null
			# shellcheck disable=SC2086
			$sim $base $as --policy vanilla --out "$r-vanilla" >/dev/null
			# shellcheck disable=SC2086
			$sim $base $as --policy rescaled --servers 16 --out "$r-servers" >/dev/null
			ts=$(time_to "$r-server/metrics.csv")
			th=$(time_to "$r-sharded/metrics.csv")
			echo "| $n | $gbps Gb/s | $model | $ts | $th | $(ratio "$th" "$ts") | $(time_to "$r-rescaled/metrics.csv") | $(time_to "$r-vanilla/metrics.csv") | $(time_to "$r-servers/metrics.csv") |" >>"$tab"
		done
	done
done
cat "$tab"
echo "sim-scale: 80 simulations in $(($(date +%s) - start)) s; table in $tab"
