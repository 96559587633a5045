#!/bin/sh
# The simulator against real runs: each setting of apps/bench-algos.sh
# (8 runs: LOSCAR overlap / no overlap, delay-corrected / overwrite,
# Rescaled / vanilla ASGD on quadratics, Rescaled ASGD / sync on
# Fashion-MNIST) run for real with hetsgd-train and simulated with
# hetsgd-sim, each 3 times (seeds 1, 2, 3); medians of 3 compared.
#
#   sim-validate.sh [OUT]    HETSGD_BENCH_TIME=seconds per run (default 15)
#                            HETSGD_VALIDATE_REUSE=1: keep the runs OUT
#                            holds, only compare again
#   HETSGD_VALIDATE_PROVIDER=shm|verbs   the real runs' provider (shm)
#   HETSGD_VALIDATE_PHASE=all|real|sim   real: the calibration and the
#       real runs only (what the soft-RoCE bed runs in its guest, see
#       sim-validate-rxe.sh); sim: the simulations and the report, on the
#       real runs and calibration OUT holds (all: both, the default)
#   HETSGD_VALIDATE_BANDWIDTH=GBPS       the simulated links (default:
#       hetsgd-sim's 100 Gb/s; sim-validate-rxe.sh gives the device's)
#   HETSGD_VALIDATE_SEEDS="1 2 3"        the seeds (medians over them)
#
# The simulator is fed what it cannot know, measured in the same session
# by a calibration run that is none of the settings compared (ASGD with
# the delay-adaptive policy, seed 4, 5 s, on the quadratics with their
# profile: linear, 2 ms, noise 0.1) on the same provider, written to
# OUT/calibration.txt.  It runs at the message rate of the ASGD settings
# (about 1000 gradients/s) on purpose: in the soft-RoCE bed's TCG guest
# the delay grows with the load (rxe's packets are processed by the same
# two emulated CPUs as the five ranks); a first calibration with a
# constant profile and no noise, four workers sending in lockstep at
# 2000/s, measured 2.1 ms there against 0.45 ms in the compared runs.
# What it measures:
#   - the one-way latency of a message: half the median over workers of
#     (time waiting for the model) / gradients.  It is not the wire's:
#     the engine's progress loops doze when idle (the server 50 us after
#     64 empty polls, a worker's progress step up to 100 us), which a
#     message pays on each side; over shm on this host about 100 us.
#   - the step overhead: the median over workers of (compute time /
#     steps - the profile's target), the padding sleep's overshoot;
# and by a second one, unpadded (time unit 1 us), on Fashion-MNIST:
#   - the step floor of the Fashion-MNIST settings: the median over
#     workers of compute time / steps, a gradient's own time with four
#     workers computing at once.  Natively it is below every target
#     (the padding hides it); a TCG guest (the soft-RoCE bed) computes a
#     gradient in tens of milliseconds, far above its 1-4 ms target.
# Until 2026-11-30 the simulator ran here with its defaults (2 us, no
# overhead), which made every real ASGD gradient 0.2 ms slower than its
# simulated twin (README, "The simulator").
#
# Per setting, medians over the seeds (relative errors sim / real - 1):
#   - the time to a target loss, target = 1.10 x the larger of the two
#     median final losses (so that both reach it); n/a when the loss
#     starts below it (vanilla ASGD on the quadratics moves away from
#     the optimum of f);
#   - the final loss at the budget;
#   - the late loss: the mean of the evaluations in the second half of
#     the run (added after the first measurement: the final value of a
#     noisy run is one sample of a loss that moves by 20-50 %);
#   - gradients computed.
# The quadratics evaluate every 0.02 s (bench-algos: every 0.375 s): their
# loss reaches its noise floor within 0.3 s, so at 0.375 s the time to
# target was the first evaluation that happened to sample low noise (0.375
# or 0.75 s), and 20 samples of a heavy-tailed late loss made its mean
# move by 50 % between seeds.  The evaluation thread's cost at d = 100 is
# nothing next to a 2 ms step.
# The tolerance was fixed before any measurement:
#   time to target within 35 %, final loss within 15 %; the late loss is
#   held to the same 15 %.
# Takes 24 real runs of HETSGD_BENCH_TIME s plus loading and 24
# simulations: about 9 minutes at 15 s.  Not part of make check.  Writes
# OUT/REPORT.txt.
set -eu
b=${HETSGD_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
train=$b/apps/hetsgd-train
sim=$b/apps/hetsgd-sim
out=${1:-runs/sim-validate}
t=${HETSGD_BENCH_TIME:-15}
prov=${HETSGD_VALIDATE_PROVIDER:-shm}
phase=${HETSGD_VALIDATE_PHASE:-all}
seeds=${HETSGD_VALIDATE_SEEDS:-1 2 3}
bw=${HETSGD_VALIDATE_BANDWIDTH:-}
case $prov in shm|verbs) ;; *) echo "sim-validate: HETSGD_VALIDATE_PROVIDER=$prov: use shm or verbs" >&2; exit 2 ;; esac
case $phase in all|real|sim) ;; *) echo "sim-validate: HETSGD_VALIDATE_PHASE=$phase: use all, real or sim" >&2; exit 2 ;; esac
tol_t=0.35
tol_l=0.15
q="--force --progress none --no-plots --time $t --workers 4 --profile linear --noise 0.1"
lo="--data fashion-mnist --split iid --method loscar --k-fraction 0.1 --comm-delay 0.1 --time-unit 0.002"
ld="--data fashion-mnist --alpha 1 --method loscar --k-fraction 0.5 --comm-delay 0.2 --time-unit 0.002"
qd="--objective quad --dim 100 --method asgd --time-unit 0.002 --gamma 0.02 --eval-interval 0.02"
sa="--data fashion-mnist --alpha 0.5 --time-unit 0.001 --eval-interval 0.25"

settings="loscar-overlap|$lo
loscar-no-overlap|$lo --no-overlap
loscar-delay-corrected|$ld --merge delay-corrected
loscar-overwrite|$ld --merge overwrite
quad-rescaled|$qd --policy rescaled
quad-vanilla|$qd --policy vanilla
fmnist-rescaled|$sa --method asgd --policy rescaled
fmnist-sync|$sa --method sync"

final() { awk -F' = ' '$1 == "final-loss" { print $2 }' "$1/summary.txt"; }
# first time the loss (column 5) is <= the target
time_to() {
	awk -F, -v tg="$2" 'NR > 1 && $5 != "" && $5 + 0 <= tg { print $1; found = 1; exit }
		END { if (!found) print "nan" }' "$1"
}
# mean loss of the evaluations at t >= half the budget
late() { awk -F, -v h="$(awk -v t="$t" 'BEGIN { print t / 2 }')" 'NR > 1 && $1 + 0 >= h && $5 != "" { s += $5; n++ }
		END { if (n) printf "%.6g", s / n; else print "nan" }' "$1"; }
grads() { awk -F' = ' '$1 == "gradients" { print $2 }' "$1/summary.txt"; }
# the median of the arguments (the lower middle one of an even count;
# nan sorts first with sort -g, as "never reached" should not win)
median_lines() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
median() { printf '%s\n' "$@" | median_lines; }
err() { awk -v s="$1" -v r="$2" 'BEGIN { if (s == "nan" || r == "nan" || r + 0 == 0) print "nan"; else printf "%+.1f", 100 * (s / r - 1) }'; }
ok() { awk -v e="$1" -v tol="$2" 'BEGIN { if (e == "nan") print "n/a"; else if (e < 0 ? -e <= 100 * tol : e <= 100 * tol) print "ok"; else print "OUT" }'; }

mkdir -p "$out"
cal=$out/calibration.txt
start=$(date +%s)

# ---- real runs (and the calibration) ----
if [ "$phase" != sim ]; then
	d=$out/calibration-fmnist
	if [ "${HETSGD_VALIDATE_REUSE:-0}" != 1 ] || [ ! -f "$d/workers.csv" ]; then
		"$train" --force --progress none --no-plots --time 5 --workers 4 --profile const --noise 0 \
			--data fashion-mnist --split iid --method asgd --time-unit 1e-6 --policy vanilla \
			--seed 1 --provider "$prov" --out "$d" >/dev/null
	fi
	floor=$(awk -F, 'NR > 1 && $4 > 0 { printf "%.2f\n", 1e6 * $9 / $4 }' "$d/workers.csv" | median_lines)
	d=$out/calibration
	# when and under what load the calibration ran (kept when reused)
	when="$(date -u +%Y-%m-%dT%H:%MZ)"
	load="$(cut -d' ' -f1-3 /proc/loadavg)"
	if [ "${HETSGD_VALIDATE_REUSE:-0}" != 1 ] || [ ! -f "$d/workers.csv" ]; then
		"$train" --force --progress none --no-plots --time 5 --workers 4 --profile linear --noise 0.1 \
			--objective quad --dim 100 --method asgd --time-unit 0.002 --gamma 0.02 --policy delay-adaptive \
			--seed 4 --provider "$prov" --out "$d" >/dev/null
	elif [ -f "$cal" ]; then
		when=$(awk '$1 == "date" { print $2 }' "$cal")
		load=$(awk '$1 == "load" { print $2, $3, $4 }' "$cal")
	fi
	# workers.csv: steps $4, compute_s $9, idle_s $10, tau_target_s $2
	lat=$(awk -F, 'NR > 1 && $4 > 0 { printf "%.2f\n", 1e6 * $10 / $4 / 2 }' "$d/workers.csv" | median_lines)
	ovh=$(awk -F, 'NR > 1 && $4 > 0 { v = 1e6 * ($9 / $4 - $2); printf "%.2f\n", (v > 0 ? v : 0) }' "$d/workers.csv" | median_lines)
	{
		echo "provider $prov"
		echo "latency_us $lat"
		echo "step_overhead_us $ovh"
		echo "step_floor_fmnist_us $floor"
		echo "load $load"
		echo "date $when"
	} > "$cal"
	echo "sim-validate: calibration over $prov: one-way latency $lat us, step overhead $ovh us, Fashion-MNIST step floor $floor us (in $cal)"
	echo "$settings" | while IFS='|' read -r name opts; do
		for s in $seeds; do
			d=$out/$name-real-$s
			[ "${HETSGD_VALIDATE_REUSE:-0}" = 1 ] && [ -f "$d/summary.txt" ] && continue
			# shellcheck disable=SC2086
			"$train" $q $opts --provider "$prov" --seed "$s" --out "$d" >/dev/null
		done
		echo "sim-validate: $name: real runs done ($(($(date +%s) - start)) s, load $(cut -d' ' -f1 /proc/loadavg))"
	done
	[ "$phase" = real ] && exit 0
fi

# ---- simulations and the report ----
[ -f "$cal" ] || { echo "sim-validate: $cal missing: run the real phase first (HETSGD_VALIDATE_PHASE=real or all)" >&2; exit 1; }
lat=$(awk '$1 == "latency_us" { print $2 }' "$cal")
ovh=$(awk '$1 == "step_overhead_us" { print $2 }' "$cal")
floor=$(awk '$1 == "step_floor_fmnist_us" { print $2 }' "$cal")
cprov=$(awk '$1 == "provider" { print $2 }' "$cal")
net="--latency $lat --step-overhead $ovh"
[ -n "$bw" ] && net="$net --bandwidth $bw"
rep=$out/REPORT.txt
nseeds=$(echo "$seeds" | wc -w)
{
	echo "sim-validate: bench-algos settings over $cprov, $t s per run, medians of $nseeds seeds; simulator fed $net, Fashion-MNIST --step-floor $floor (calibration $(awk '$1 == "date" { print $2 }' "$cal"), load $(awk '$1 == "load" { print $2, $3, $4 }' "$cal"))"
	echo "tolerance: time to target $(awk -v x=$tol_t 'BEGIN{print 100*x}') %, final and late loss $(awk -v x=$tol_l 'BEGIN{print 100*x}') %; err% = sim / real - 1; verdict time/final/late; host load now $(cut -d' ' -f1-3 /proc/loadavg)"
	printf '%-24s %8s %7s %7s %6s %9s %9s %6s %9s %9s %6s %6s  %s\n' setting target real-t sim-t err% \
		real-final sim-final err% real-late sim-late err% grads verdict
} | tee "$rep"
echo "$settings" | while IFS='|' read -r name opts; do
	rf=""; sf=""; rl=""; sl=""; rg=""; sg=""
	for s in $seeds; do
		d=$out/$name-sim-$s
		[ -f "$out/$name-real-$s/summary.txt" ] ||
			{ echo "sim-validate: $out/$name-real-$s has no summary.txt: run the real phase first" >&2; exit 1; }
		if [ "${HETSGD_VALIDATE_REUSE:-0}" != 1 ] || [ ! -f "$d/summary.txt" ]; then
			fl=
			case $opts in *fashion-mnist*) fl="--step-floor $floor" ;; esac
			# shellcheck disable=SC2086
			"$sim" $q $opts $net $fl --seed "$s" --out "$d" >/dev/null
		fi
		rf="$rf $(final "$out/$name-real-$s")"
		sf="$sf $(final "$d")"
		rl="$rl $(late "$out/$name-real-$s/metrics.csv")"
		sl="$sl $(late "$d/metrics.csv")"
		rg="$rg $(grads "$out/$name-real-$s")"
		sg="$sg $(grads "$d")"
	done
	# shellcheck disable=SC2086
	mr=$(median $rf)
	# shellcheck disable=SC2086
	ms=$(median $sf)
	tg=$(awk -v a="$mr" -v b="$ms" 'BEGIN { m = a > b ? a : b; printf "%.5g", 1.10 * m }')
	rt=""; st=""
	for s in $seeds; do
		rt="$rt $(time_to "$out/$name-real-$s/metrics.csv" "$tg")"
		st="$st $(time_to "$out/$name-sim-$s/metrics.csv" "$tg")"
	done
	# shellcheck disable=SC2086
	mrt=$(median $rt)
	# shellcheck disable=SC2086
	mst=$(median $st)
	# shellcheck disable=SC2086
	mrl=$(median $rl)
	# shellcheck disable=SC2086
	msl=$(median $sl)
	et=$(err "$mst" "$mrt")
	el=$(err "$ms" "$mr")
	ell=$(err "$msl" "$mrl")
	# shellcheck disable=SC2086
	eg=$(err "$(median $sg)" "$(median $rg)")
	printf '%-24s %8s %7s %7s %6s %9s %9s %6s %9s %9s %6s %6s  %s\n' "$name" "$tg" "$mrt" "$mst" "$et" \
		"$mr" "$ms" "$el" "$mrl" "$msl" "$ell" "$eg" \
		"$(ok "$et" $tol_t)/$(ok "$el" $tol_l)/$(ok "$ell" $tol_l)" | tee -a "$rep"
done
echo "sim-validate: $(($(date +%s) - start)) s; report in $rep" | tee -a "$rep"
