#!/bin/sh
# make reproduce: each claim of the papers as a set of runs, several seeds
# per method, medians and interquartile ranges, and a verdict that holds
# only when the ranges separate.  Writes OUT/REPORT.md (one table per
# claim) and OUT/claimN.png (median line and q1-q3 band per method).
#
#   reproduce.sh [OUT]      (default runs/reproduce)
#   REPRO_QUICK=1           3 seeds, 3 s runs (a few minutes in all)
#   REPRO_SEEDS=N           seeds per method (default 5; 3 quick)
#   REPRO_TIME=S            seconds per run (default 15; 3 quick)
#
# Rule (stated once in the report): for a metric where lower is better,
# a claim "holds" when q3 of the method the paper says is better lies
# strictly below q1 of the other method; "not shown" otherwise (ranges
# overlap, or the order is the other way).  For a time or a step count
# to a target, "target not reached" when any run of either method misses
# the target within the budget.
#
# Targets are fixed here, before any run, from a reference run made once
# on the development machine (seed 1, 3 s, not one of the runs compared):
#   claim 2: test accuracy 0.75 (Rescaled ASGD, alpha 0.1, reached it at
#            about 1.5 s and ended at 0.795);
#   claim 4: loss 0.75 (LOSCAR without overlap ended its 3 s at 0.686).
# Override with REPRO_TARGET_ACC and REPRO_TARGET_LOSS, which the report
# records.
set -eu
b=${HETSGD_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
train=$b/apps/hetsgd-train
out=${1:-runs/reproduce}
if [ "${REPRO_QUICK:-0}" = 1 ]; then
	mode=quick; seeds=${REPRO_SEEDS:-3}; t=${REPRO_TIME:-3}
else
	mode=full; seeds=${REPRO_SEEDS:-5}; t=${REPRO_TIME:-15}
fi
tacc=${REPRO_TARGET_ACC:-0.75}
tloss=${REPRO_TARGET_LOSS:-0.75}
[ -x "$train" ] || { echo "reproduce: $train is missing; run make first" >&2; exit 1; }
mkdir -p "$out"
rep=$out/REPORT.md
q="--force --progress none --no-plots --time $t --workers 4 --profile linear --noise 0.1"
start=$(date +%s)

# ---- per-run collection ------------------------------------------------
# final DIR KEY: a summary.txt value
final() { awk -F' = ' -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print "nan" }' "$1/summary.txt"; }
# first_at CSV COL TARGET le|ge OUTCOL: column OUTCOL of the first row
# where column COL reaches the target; nan when none does
first_at() {
	awk -F, -v c="$2" -v tg="$3" -v dir="$4" -v oc="$5" '
		NR > 1 && $c != "" && ((dir == "le" && $c + 0 <= tg) || (dir == "ge" && $c + 0 >= tg)) {
			print $oc; found = 1; exit }
		END { if (!found) print "nan" }' "$1"
}
# run CLAIM METHOD SEED ARGS...: one run into OUT/CLAIM/METHOD/sSEED
run() {
	c=$1 m=$2 s=$3; shift 3
	d=$out/$c/$m/s$s
	printf '  %s %s seed %s\n' "$c" "$m" "$s"
	# shellcheck disable=SC2086
	if ! $train $q "$@" --seed "$s" --out "$d" >"$out/$c/$m/s$s.log" 2>&1; then
		echo "reproduce: run failed, see $out/$c/$m/s$s.log" >&2
		exit 1
	fi
}
# row CLAIM METHOD SEED VALUES...: append to OUT/CLAIM/runs.csv
row() {
	f=$out/$1/runs.csv; shift
	(IFS=,; echo "$*") >>"$f"
}

# ---- statistics (awk only) ------------------------------------------------
# stats CLAIM METHOD FIELD: "n reached median q1 q3" of field FIELD
# (1-based, counting from the first value after method and seed) of the
# method's rows; quartiles by linear interpolation (type 7)
stats() {
	awk -F, -v m="$2" -v fi="$3" '
		$1 == m { n++; v = $(fi + 2); if (v != "nan" && v != "") a[++k] = v + 0 }
		function q(p,   h, lo) { h = (k - 1) * p + 1; lo = int(h); return lo >= k ? a[k] : a[lo] + (h - lo) * (a[lo + 1] - a[lo]) }
		END {
			for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
			if (k == 0) printf "%d 0 nan nan nan\n", n
			else printf "%d %d %.6g %.6g %.6g\n", n, k, q(0.5), q(0.25), q(0.75)
		}' "$out/$1/runs.csv"
}
# cell "n k med q1 q3": the table cell
cell() {
	echo "$1" | awk '{ if ($2 == 0) print "not reached (0/" $1 ")";
		else { s = sprintf("%.4g [%.4g, %.4g]", $3, $4, $5); if ($2 < $1) s = s " (reached " $2 "/" $1 ")"; print s } }'
}
# verdict "stats of the better" "stats of the other" [target]: the rule
verdict() {
	echo "$1 $2" | awk -v tgt="${3:-}" '{
		if (tgt != "" && ($2 < $1 || $7 < $6)) { print "target not reached"; exit }
		if ($2 == 0 || $7 == 0) { print "not shown (no values)"; exit }
		if ($5 + 0 < $9 + 0) print "holds"; else print "not shown" }'
}

# ---- figures: median and q1-q3 band per method over time ----------------
# band CLAIM METHOD COL: OUT/CLAIM/METHOD.band (t median q1 q3) on a grid
# of 40 steps, each seed's value the last one logged at or before t
band() {
	for f in "$out/$1/$2"/s*/metrics.csv; do
		awk -F, -v c="$3" 'NR > 1 && $c != "" { print $1, $c }' "$f"
		echo "#"
	done | awk -v T="$t" '
		/^#/ { ns++; next }
		{ tt[ns, ++cnt[ns]] = $1; vv[ns, cnt[ns]] = $2 }
		END {
			for (g = 0; g <= 40; g++) {
				x = T * g / 40; k = 0
				for (s = 0; s < ns; s++) {
					v = ""; for (i = 1; i <= cnt[s] && tt[s, i] <= x + 1e-9; i++) v = vv[s, i]
					if (v != "") a[++k] = v + 0
				}
				if (k == 0) continue
				for (i = 2; i <= k; i++) { y = a[i]; for (j = i - 1; j >= 1 && a[j] > y; j--) a[j + 1] = a[j]; a[j + 1] = y }
				printf "%g %g %g %g\n", x, qq(0.5), qq(0.25), qq(0.75)
			}
		}
		function qq(p,   h, lo) { h = (k - 1) * p + 1; lo = int(h); return lo >= k ? a[k] : a[lo] + (h - lo) * (a[lo + 1] - a[lo]) }' \
		>"$out/$1/$2.band"
}
# figure CLAIM COL YLABEL LOG METHODS...: OUT/CLAIM.png
figure() {
	c=$1 col=$2 yl=$3 lg=$4; shift 4
	command -v gnuplot >/dev/null 2>&1 || { echo "no gnuplot: no figure for $c" >&2; return 0; }
	plot="" i=1
	for m in "$@"; do
		band "$c" "$m" "$col"
		plot="$plot${plot:+, }'$out/$c/$m.band' using 1:3:4 with filledcurves fs transparent solid 0.2 lc $i notitle, '' using 1:2 with lines lw 2 lc $i title '$m'"
		i=$((i + 1))
	done
	gnuplot -e "set terminal pngcairo size 900,560; set output '$out/$c.png'; set xlabel 'time (s)'; set ylabel '$yl'; $lg set key outside right; set grid; set title '$c: median and q1-q3 band, $seeds seeds'; plot $plot" \
		2>"$out/$c.gnuplot.log" || echo "gnuplot failed for $c, see $out/$c.gnuplot.log" >&2
}

seq_seeds() { i=1; while [ "$i" -le "$seeds" ]; do echo "$i"; i=$((i + 1)); done; }

echo "reproduce ($mode): $seeds seeds, $t s per run; outputs in $out"

# ---- claim 1: Rescaled vs vanilla ASGD on heterogeneous quadratics -------
c=claim1
rm -rf "${out:?}/$c"; mkdir -p "$out/$c"
set1="--objective quad --dim 100 --method asgd --time-unit 0.002 --gamma 0.02"
for s in $(seq_seeds); do
	for p in rescaled vanilla; do
		mkdir -p "$out/$c/$p"
		# shellcheck disable=SC2086
		run "$c" "$p" "$s" $set1 --policy $p
		d=$out/$c/$p/s$s
		row "$c" "$p" "$s" "$(final "$d" final-distance-to-optimum)" "$(final "$d" distance-optimum-to-weighted)"
	done
done

# ---- claim 2: Rescaled ASGD vs the baselines on Fashion-MNIST, alpha 0.1 --
c=claim2
rm -rf "${out:?}/$c"; mkdir -p "$out/$c"
set2="--data fashion-mnist --split dirichlet --alpha 0.1 --shuffle --eval-interval 0.25"
m2="rescaled vanilla delay-adaptive ringmaster malenia ringleader sync"
for s in $(seq_seeds); do
	for m in $m2; do
		case $m in
		rescaled | vanilla | delay-adaptive | ringmaster) a="--method asgd --policy $m" ;;
		*) a="--method $m" ;;
		esac
		mkdir -p "$out/$c/$m"
		# shellcheck disable=SC2086
		run "$c" "$m" "$s" $set2 $a
		d=$out/$c/$m/s$s
		row "$c" "$m" "$s" "$(final "$d" final-loss)" "$(first_at "$d/metrics.csv" 6 "$tacc" ge 1)"
	done
done

# ---- claim 3: LOSCAR delay-corrected vs overwrite, 0.2 s delay -----------
c=claim3
rm -rf "${out:?}/$c"; mkdir -p "$out/$c"
set3="--data fashion-mnist --alpha 1 --method loscar --k-fraction 0.5 --comm-delay 0.2 --time-unit 0.002"
for s in $(seq_seeds); do
	for m in delay-corrected overwrite; do
		mkdir -p "$out/$c/$m"
		# shellcheck disable=SC2086
		run "$c" "$m" "$s" $set3 --merge $m
		row "$c" "$m" "$s" "$(final "$out/$c/$m/s$s" final-loss)"
	done
done

# ---- claim 4: LOSCAR overlap vs no overlap, equal delay -----------------
c=claim4
rm -rf "${out:?}/$c"; mkdir -p "$out/$c"
set4="--data fashion-mnist --split iid --method loscar --k-fraction 0.1 --comm-delay 0.1 --time-unit 0.002"
for s in $(seq_seeds); do
	for m in overlap no-overlap; do
		case $m in overlap) a="--overlap yes" ;; *) a="--overlap no" ;; esac
		mkdir -p "$out/$c/$m"
		# shellcheck disable=SC2086
		run "$c" "$m" "$s" $set4 $a
		f=$out/$c/$m/s$s/metrics.csv
		row "$c" "$m" "$s" "$(first_at "$f" 5 "$tloss" le 1)" "$(first_at "$f" 5 "$tloss" le 2)" \
			"$(final "$out/$c/$m/s$s" final-loss)"
	done
done

# ---- figures ---------------------------------------------------------------
figure claim1 9 'distance to x*' 'set logscale y;' rescaled vanilla
# shellcheck disable=SC2086
figure claim2 5 'loss f = (1/n) sum f_i' 'set logscale y;' $m2
figure claim3 5 'loss f' '' delay-corrected overwrite
figure claim4 5 'loss f' '' overlap no-overlap

# ---- the report --------------------------------------------------------------
elapsed=$(($(date +%s) - start))
fig() { if [ -s "$out/$1.png" ]; then printf '\n![%s](%s.png)\n' "$1" "$1"; else printf '\nNo figure (gnuplot missing or failed).\n'; fi; }
{
	echo "# hetsgd: reproduction of the papers' claims"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) cores, mode $mode: $seeds seeds per method" \
		"(seeds 1..$seeds), $t s per run, 4 workers, tau_i linear (tau_i = c (i + 1)), noise 0.1; $elapsed s in all."
	echo
	echo "**Rule.** Each cell is the median [q1, q3] over the seeds (quartiles by linear interpolation)." \
		"Lower is better for every metric here. A claim *holds* when q3 of the method the papers say is better" \
		"lies strictly below q1 of the other; *not shown* otherwise (the ranges overlap, or the order is reversed)." \
		"For a time or a step count to a target: *target not reached* when any run of either method misses it" \
		"within the budget. Targets were fixed before any run, from a reference run (seed 1, 3 s) that is not one of" \
		"the runs compared: test accuracy $tacc (claim 2), loss $tloss (claim 4)."
	[ "$mode" = quick ] && echo && echo "Quick mode: too few seeds and too short runs to support a verdict; a check that the pipeline works."
	echo
	echo "## Claim 1: Rescaled ASGD reaches x*, vanilla ASGD the frequency-weighted point x_w"
	echo
	echo "Setting: --objective quad --dim 100 --method asgd --gamma 0.02 --time-unit 0.002, budget $t s." \
		"Metric: |x - x*| at the end (lower is better). |x* - x_w|: x_w the minimiser of sum_i w_i f_i," \
		"w_i the share of gradients worker i computed in that run, where vanilla ASGD settles."
	echo
	echo "| method | runs | distance to x* | \\|x* - x_w\\| |"
	echo "|---|---|---|---|"
	for m in rescaled vanilla; do
		echo "| $m | $(stats claim1 $m 1 | cut -d' ' -f1) | $(cell "$(stats claim1 $m 1)") | $(cell "$(stats claim1 $m 2)") |"
	done
	echo
	echo "Verdict (Rescaled closer to x* than vanilla): **$(verdict "$(stats claim1 rescaled 1)" "$(stats claim1 vanilla 1)")**"
	fig claim1
	echo
	echo "## Claim 2: Rescaled ASGD against the baselines, Fashion-MNIST, Dirichlet alpha 0.1"
	echo
	echo "Setting: softmax regression, --split dirichlet --alpha 0.1 --shuffle --profile linear --noise 0.1," \
		"evaluations every 0.25 s, budget $t s. Metrics: final loss f = (1/n) sum_i f_i; time (s) to test accuracy $tacc."
	echo
	echo "| method | runs | final loss | time to acc $tacc (s) | verdict: loss | verdict: time |"
	echo "|---|---|---|---|---|---|"
	for m in $m2; do
		if [ "$m" = rescaled ]; then v1="(reference)" v2="(reference)"; else
			v1=$(verdict "$(stats claim2 rescaled 1)" "$(stats claim2 "$m" 1)")
			v2=$(verdict "$(stats claim2 rescaled 2)" "$(stats claim2 "$m" 2)" target)
		fi
		echo "| $m | $(stats claim2 "$m" 1 | cut -d' ' -f1) | $(cell "$(stats claim2 "$m" 1)") | $(cell "$(stats claim2 "$m" 2)") | $v1 | $v2 |"
	done
	echo
	echo "Verdicts: Rescaled ASGD better than the method of the row."
	fig claim2
	echo
	echo "## Claim 3: LOSCAR, delay-corrected merge beats overwrite under a large delay"
	echo
	echo "Setting: Fashion-MNIST, --alpha 1, --method loscar --k-fraction 0.5 --comm-delay 0.2, budget $t s. Metric: final loss."
	echo
	echo "| merge | runs | final loss |"
	echo "|---|---|---|"
	for m in delay-corrected overwrite; do
		echo "| $m | $(stats claim3 $m 1 | cut -d' ' -f1) | $(cell "$(stats claim3 $m 1)") |"
	done
	echo
	echo "Verdict (delay-corrected lower): **$(verdict "$(stats claim3 delay-corrected 1)" "$(stats claim3 overwrite 1)")**"
	fig claim3
	echo
	echo "## Claim 4: LOSCAR, overlapping the average with local steps reaches a loss sooner"
	echo
	echo "Setting: Fashion-MNIST, --split iid, --method loscar --k-fraction 0.1 --comm-delay 0.1 (equal delay)," \
		"budget $t s. Metrics: time (s) and gradients to loss $tloss; final loss for reference."
	echo
	echo "| overlap | runs | time to loss $tloss (s) | gradients to loss $tloss | final loss |"
	echo "|---|---|---|---|---|"
	for m in overlap no-overlap; do
		echo "| $m | $(stats claim4 $m 1 | cut -d' ' -f1) | $(cell "$(stats claim4 $m 1)") | $(cell "$(stats claim4 $m 2)") | $(cell "$(stats claim4 $m 3)") |"
	done
	echo
	echo "Verdict, time (overlap sooner): **$(verdict "$(stats claim4 overlap 1)" "$(stats claim4 no-overlap 1)" target)**"
	echo
	echo "Steps (gradients) to the loss, overlap fewer: **$(verdict "$(stats claim4 overlap 2)" "$(stats claim4 no-overlap 2)" target)**" \
		"(the papers do not claim fewer steps: overlap trades steps for wall time; reported for the record)."
	fig claim4
	echo
	echo "Per-run values: CLAIM/runs.csv (method, seed, metrics in the order of the table); each run's folder CLAIM/METHOD/sSEED."
} >"$rep"
echo "reproduce: $elapsed s; report in $rep"
