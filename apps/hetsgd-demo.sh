#!/bin/sh
# The main job: Fashion-MNIST on 4 heterogeneous workers (compute times
# tau_i = c (i + 1), shuffled over the workers, with 10% per-step noise),
# on this host over shm (or verbs with HETSGD_DEMO_PROVIDER=verbs).
#
#   1. Rescaled ASGD against vanilla ASGD, Dirichlet(0.1) label split:
#      every worker sees few classes, and the fast ones would pull vanilla
#      ASGD towards theirs.
#   2. LOSCAR-SGD delay-corrected against overwrite and against no
#      overlap, half the coordinates per round, 0.1 s extra delay on every
#      average (a slow network), Dirichlet(1) split.
#
# Writes runs under OUT (default runs/demo), the comparison plots
# OUT/asgd-*.png and OUT/loscar-*.png, and a table of the final numbers.
#   hetsgd-demo.sh [OUT]        HETSGD_DEMO_TIME=seconds per run (default 20)
set -eu
b=${HETSGD_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
train=$b/apps/hetsgd-train
plot=$b/apps/hetsgd-plot
out=${1:-runs/demo}
t=${HETSGD_DEMO_TIME:-20}
prov=${HETSGD_DEMO_PROVIDER:-shm}
common="--data fashion-mnist --workers 4 --profile linear --time-unit 0.002 --noise 0.1 --shuffle --time $t --provider $prov --force"

echo "demo: 5 runs of $t s each; outputs in $out"
run() { name=$1; shift; $train $common "$@" --name "$name" --out "$out/$name"; }
run asgd-rescaled --method asgd --policy rescaled --alpha 0.1
run asgd-vanilla --method asgd --policy vanilla --alpha 0.1
loscar="--method loscar --k-fraction 0.5 --round-time 0.05 --comm-delay 0.1 --alpha 1"
run loscar-delay-corrected $loscar --merge delay-corrected
run loscar-overwrite $loscar --merge overwrite
run loscar-no-overlap $loscar --no-overlap

$plot --out "$out" --prefix asgd- "$out/asgd-rescaled=Rescaled ASGD" "$out/asgd-vanilla=vanilla ASGD"
$plot --out "$out" --prefix loscar- "$out/loscar-delay-corrected=LOSCAR delay-corrected" \
	"$out/loscar-overwrite=LOSCAR overwrite" "$out/loscar-no-overlap=LOSCAR no overlap"

# One model's accuracy moves by a point or two between evaluations, so the
# table also gives the mean over the last quarter of each run.
echo
printf '%-24s %8s %8s %10s %10s %10s %8s\n' run "loss" "acc" "loss(q4)" "acc(q4)" gradients waiting
for r in asgd-rescaled asgd-vanilla loscar-delay-corrected loscar-overwrite loscar-no-overlap; do
	q4=$(awk -F, 'NR > 1 { t[NR] = $1; l[NR] = $5; a[NR] = $6; n = NR; T = $1 }
		END { for (i = 2; i <= n; i++) if (t[i] >= 0.75 * T) { sl += l[i]; sa += a[i]; k++ }
		      printf "%.4f %.4f", sl / k, sa / k }' "$out/$r/metrics.csv")
	awk -F' = ' -v r="$r" -v q4="$q4" '
		$1 == "final-loss" { l = $2 } $1 == "final-accuracy" { a = $2 }
		$1 == "gradients" { g = $2 } $1 == "waiting-share" { w = $2 }
		END { split(q4, q, " "); printf "%-24s %8.4f %8.4f %10.4f %10.4f %10d %7.0f%%\n", r, l, a, q[1], q[2], g, 100 * w }' \
		"$out/$r/summary.txt"
done
echo "(loss, acc: the final model; q4: the mean over the last quarter of the run; waiting: share of"
echo " the workers' time spent waiting for the network)"
echo "demo: plots $out/asgd-loss.png $out/asgd-accuracy.png $out/loscar-loss.png $out/loscar-accuracy.png"
