#!/bin/sh
# Algorithm benchmarks: each number is a ratio of two real runs made here,
# one after the other on the same machine, so they share its speed and
# noise.  Prints one line per claim of the papers, with both numbers, the
# ratio and what the papers lead us to expect.
#
#   bench-algos.sh [OUT]     HETSGD_BENCH_TIME=seconds per run (default 15)
#
# 1. LOSCAR time to a target loss, overlap vs no overlap (iid split,
#    K = d/10, 0.1 s extra delay on each average).  Target: the loss the
#    no-overlap run ends at (plus 2%), so both reach it.
# 2. LOSCAR final loss, delay-corrected vs overwrite, under a large
#    communication delay (0.2 s on each average, K = d/2).
# 3. Distance to the true optimum, Rescaled vs vanilla ASGD, on
#    heterogeneous quadratics (worker optima spread apart) with
#    tau_i = c (i + 1): vanilla converges to the frequency-weighted point.
# 4. Time to a target test accuracy, Rescaled ASGD vs synchronous
#    minibatch SGD, tau_i = i + 1 (milliseconds).  Target: 0.80
#    (HETSGD_BENCH_TARGET_ACC), which softmax regression reaches in a few
#    seconds here; evaluations every 0.25 s.
set -eu
b=${HETSGD_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
train=$b/apps/hetsgd-train
out=${1:-runs/bench-algos}
t=${HETSGD_BENCH_TIME:-15}
q="--force --progress none --no-plots --time $t --workers 4 --profile linear --noise 0.1"

# time_to CSV COLUMN TARGET DIR: first time the column reaches the target
time_to() {
	awk -F, -v c="$2" -v tg="$3" -v dir="$4" '
		NR > 1 && $c != "" && ((dir == "le" && $c + 0 <= tg) || (dir == "ge" && $c + 0 >= tg)) {
			print $1; found = 1; exit }
		END { if (!found) print "nan" }' "$1"
}
final() { awk -F' = ' -v k="$2" '$1 == k { print $2 }' "$1/summary.txt"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "nan"; else printf "%.3f", a / b }'; }
verdict() { awk -v r="$1" 'BEGIN { if (r == "nan") print "n/a"; else if (r + 0 < 1) print "as expected (< 1)"; else print "NOT as expected (>= 1)" }'; }

echo "bench-algos: 8 runs of $t s; outputs in $out"
lo="--data fashion-mnist --split iid --method loscar --k-fraction 0.1 --comm-delay 0.1 --time-unit 0.002"
$train $q $lo --out "$out/loscar-overlap" >/dev/null
$train $q $lo --no-overlap --out "$out/loscar-no-overlap" >/dev/null
target=$(awk -v l="$(final "$out/loscar-no-overlap" final-loss)" 'BEGIN { printf "%.4f", l * 1.02 }')
t_ov=$(time_to "$out/loscar-overlap/metrics.csv" 5 "$target" le)
t_no=$(time_to "$out/loscar-no-overlap/metrics.csv" 5 "$target" le)
r=$(ratio "$t_ov" "$t_no")
echo "1. LOSCAR time to loss $target: overlap $t_ov s, no overlap $t_no s: ratio $r, $(verdict "$r")"

ld="--data fashion-mnist --alpha 1 --method loscar --k-fraction 0.5 --comm-delay 0.2 --time-unit 0.002"
$train $q $ld --merge delay-corrected --out "$out/loscar-delay-corrected" >/dev/null
$train $q $ld --merge overwrite --out "$out/loscar-overwrite" >/dev/null
l_dc=$(final "$out/loscar-delay-corrected" final-loss)
l_ow=$(final "$out/loscar-overwrite" final-loss)
r=$(ratio "$l_dc" "$l_ow")
echo "2. LOSCAR final loss with 0.2 s delay: delay-corrected $l_dc, overwrite $l_ow: ratio $r, $(verdict "$r")"

qd="--objective quad --dim 100 --method asgd --time-unit 0.002 --gamma 0.02"
$train $q $qd --policy rescaled --out "$out/quad-rescaled" >/dev/null
$train $q $qd --policy vanilla --out "$out/quad-vanilla" >/dev/null
d_r=$(final "$out/quad-rescaled" final-distance-to-optimum)
d_v=$(final "$out/quad-vanilla" final-distance-to-optimum)
r=$(ratio "$d_r" "$d_v")
echo "3. distance to the optimum on heterogeneous quadratics: Rescaled $d_r, vanilla $d_v: ratio $r, $(verdict "$r")"

sa="--data fashion-mnist --alpha 0.5 --time-unit 0.001 --eval-interval 0.25"
$train $q $sa --method asgd --policy rescaled --out "$out/fmnist-rescaled" >/dev/null
$train $q $sa --method sync --out "$out/fmnist-sync" >/dev/null
target=${HETSGD_BENCH_TARGET_ACC:-0.80}
t_r=$(time_to "$out/fmnist-rescaled/metrics.csv" 6 "$target" ge)
t_s=$(time_to "$out/fmnist-sync/metrics.csv" 6 "$target" ge)
r=$(ratio "$t_r" "$t_s")
echo "4. time to test accuracy $target, tau_i = i + 1 ms: Rescaled ASGD $t_r s, synchronous SGD $t_s s: ratio $r, $(verdict "$r")"
