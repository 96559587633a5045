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
$train $common --method asgd --policy rescaled --alpha 0.1 --out "$out/asgd-rescaled"
$train $common --method asgd --policy vanilla --alpha 0.1 --out "$out/asgd-vanilla"
loscar="--method loscar --k-fraction 0.5 --round-time 0.05 --comm-delay 0.1 --alpha 1"
$train $common $loscar --merge delay-corrected --out "$out/loscar-delay-corrected"
$train $common $loscar --merge overwrite --out "$out/loscar-overwrite"
$train $common $loscar --no-overlap --out "$out/loscar-no-overlap"

$plot --out "$out" --prefix asgd- "$out/asgd-rescaled=Rescaled ASGD" "$out/asgd-vanilla=vanilla ASGD"
$plot --out "$out" --prefix loscar- "$out/loscar-delay-corrected=LOSCAR delay-corrected" \
	"$out/loscar-overwrite=LOSCAR overwrite" "$out/loscar-no-overlap=LOSCAR no overlap"

echo
printf '%-26s %10s %10s %12s %10s\n' run "final loss" "test acc" gradients waiting
for r in asgd-rescaled asgd-vanilla loscar-delay-corrected loscar-overwrite loscar-no-overlap; do
	awk -F' = ' -v r="$r" '
		$1 == "final-loss" { l = $2 } $1 == "final-accuracy" { a = $2 }
		$1 == "gradients" { g = $2 } $1 == "waiting-share" { w = $2 }
		END { printf "%-26s %10.4f %10.4f %12d %9.0f%%\n", r, l, a, g, 100 * w }' "$out/$r/summary.txt"
done
echo "demo: plots $out/asgd-loss.png $out/asgd-accuracy.png $out/loscar-loss.png $out/loscar-accuracy.png"
