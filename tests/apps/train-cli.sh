#!/bin/bash
# hetsgd-train and hetsgd-plot as a user meets them: bad configurations
# give one sentence and exit 2 before anything runs; a local run writes
# every output it promises; nothing is overwritten without --force; config
# files; per-worker LIBSVM files; budgets by epochs; plots.
set -u
b=${HETSGD_BUILDDIR:-.}
train=$b/apps/hetsgd-train
plot=$b/apps/hetsgd-plot
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-train-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0

ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_error "message part" args...: exit 2 and the message on stderr
expect_error() {
	local want=$1 out rc
	shift
	out=$("$train" "$@" --out "$tmp/never" 2>&1 >/dev/null)
	rc=$?
	if [ $rc -eq 2 ] && [[ $out == *"$want"* ]]; then
		ok "hetsgd-train $* -> exit 2: $out"
	else
		ko "hetsgd-train $* -> exit $rc, '$out' (wanted exit 2 and '$want')"
	fi
	[ -e "$tmp/never/metrics.csv" ] && ko "a refused configuration wrote $tmp/never/metrics.csv"
}

expect_error "unknown option '--bogus'" --bogus
expect_error "--merge applies to --method loscar" --method asgd --merge overwrite
expect_error "--malenia-s applies to --method malenia" --method ringleader --malenia-s 8
expect_error "--k and --k-fraction both give K" --method loscar --k 5 --k-fraction 0.1
expect_error "--averaging applies to --method loscar or sync" --method asgd --averaging sharded
expect_error "unknown averaging 'ring'" --method loscar --averaging ring
expect_error "--round-steps applies to --method loscar" --method sync --round-steps 3
expect_error "--round-time applies to --method loscar without --round-steps" --method loscar --round-time 0.1 --round-steps 3
expect_error "exceeds the model dimension d = 132" --method loscar --k 999 --data synth --synth-n 200 --synth-classes 4
expect_error "No such file or directory" --data "$tmp/missing.svm"
expect_error "give a number from" --time soon
expect_error "--alpha applies to --split dirichlet" --split iid --alpha 0.3
expect_error "is binary" --objective logreg --data synth --synth-n 200
expect_error "--data-per-worker needs --test" --data-per-worker "$tmp/w{i}.svm"
expect_error "cannot feed 8 workers" --data synth --synth-n 5 --workers 8

printf 'method = loscar\n# a comment\nbogus-key = 1\n' > "$tmp/bad.conf"
expect_error "bad.conf:3: unknown option 'bogus-key'" --config "$tmp/bad.conf"
printf 'method = loscar\nmerge = overwrite   # trailing comment\nk-fraction = 0.5\ndata = synth\n' > "$tmp/good.conf"
out=$("$train" --config "$tmp/good.conf" --seed 7 --check --out "$tmp/x" 2>&1)
if [[ $out == *"merge = overwrite"* && $out == *"seed = 7"* && $out == *"configuration ok"* ]]; then
	ok "a config file and the command line together: merge = overwrite, seed = 7"
else
	ko "config file: $out"
fi

# the printed configuration, fed back with --config, is the same configuration
roundtrip() {
	local out h1 h2
	out=$("$train" "$@" --check --out "$tmp/x" 2>&1)
	h1=$(sed -n 's/.*configuration ok (hash \([0-9a-f]*\)).*/\1/p' <<<"$out")
	sed -n '/configuration ok/,$p' <<<"$out" | tail -n +2 > "$tmp/rt.conf"
	out=$("$train" --config "$tmp/rt.conf" --check --out "$tmp/x" 2>&1)
	h2=$(sed -n 's/.*configuration ok (hash \([0-9a-f]*\)).*/\1/p' <<<"$out")
	if [ -n "$h1" ] && [ "$h1" = "$h2" ]; then
		ok "printed configuration reads back to hash $h1: $*"
	else
		ko "printed configuration of '$*' (hash '$h1') read back as '$h2': $out"
	fi
}
printf '1 1:0.5 2:1\n0 1:-1 3:2\n1 2:0.25\n0 1:1 2:1 3:1\n' > "$tmp/w0.svm"
cp "$tmp/w0.svm" "$tmp/w1.svm"
cp "$tmp/w0.svm" "$tmp/t.svm"
roundtrip --method loscar --k-fraction 0.01 --data synth --synth-n 400 --no-overlap --comm-delay 0.1
roundtrip --method asgd --policy ringmaster --ringmaster-r 3 --data synth --synth-n 400 --split iid --shuffle
roundtrip --method malenia --malenia-s 12 --data synth --synth-n 400 --workers 3
roundtrip --method ringleader --objective quad --dim 20 --time 2 --provider shm
roundtrip --method sync --objective quad --dim 20 --time 2 --provider shm --pin no
roundtrip --method sync --averaging sharded --objective quad --dim 20 --time 2 --provider shm
roundtrip --method loscar --averaging server --round-steps 4 --no-overlap --data synth --synth-n 400
roundtrip --objective mlp --hidden 8 --data synth --synth-n 400 --epochs 2 --target-loss 0.1 --threads 2
roundtrip --objective lsq --data synth-regression --synth-n 400 --gamma 0.01 --seed 99
roundtrip --objective logreg --data-per-worker "$tmp/w{i}.svm" --test "$tmp/t.svm" --workers 2 --target-acc 0.5

# a local run writes every promised output
run=$tmp/run
if "$train" --data synth --synth-n 4000 --workers 3 --time 3 --out "$run" --progress plain > "$tmp/run.log" 2>&1; then
	ok "local run: $(tail -n 2 "$tmp/run.log" | head -n 1)"
else
	ko "local run failed: $(tail -n 5 "$tmp/run.log")"
fi
d=$(sed -n 's/^d = //p' "$run/summary.txt" 2>/dev/null)
last=$(tail -n 1 "$run/metrics.csv" 2>/dev/null)
rows=$(awk -F, 'NR > 1 && $4 > 0' "$run/workers.csv" 2>/dev/null | wc -l)
size=$(stat -c %s "$run/model.bin" 2>/dev/null || echo 0)
magic=$(head -c 8 "$run/model.bin" 2>/dev/null)
[ "${last##*,}" = 1 ] && ok "metrics.csv ends with the final point: $last" || ko "metrics.csv last line: '$last'"
# the loss is the objective f = (1/n) sum_i f_i: the mean of the workers' own losses
if awk -F, 'NR == 1 { for (c = 1; c <= NF; c++) { if ($c == "loss") l = c; if ($c ~ /^loss_w/) w[++k] = c; if ($c == "pooled_loss") p = c } next }
	{ s = 0; for (i = 1; i <= k; i++) s += $w[i]; m = s / k; bad += (k != 3 || !p || $p == "" || (m - $l)^2 > (1e-4 * $l)^2) }
	END { exit bad != 0 }' "$run/metrics.csv"; then
	ok "metrics.csv: loss is the mean of loss_w0..loss_w2 on every row, pooled_loss beside it"
else
	ko "metrics.csv: loss is not the mean of the workers' losses: $(head -n 2 "$run/metrics.csv" | tr '\n' ' ')"
fi
[ "$rows" -eq 3 ] && ok "workers.csv: 3 workers with steps" || ko "workers.csv has $rows stepping workers"
[ "$magic" = HSGDMDL1 ] && [ "$size" -eq $((64 + 4 * ${d:-0})) ] &&
	ok "model.bin: HSGDMDL1 and 64 + 4 x $d bytes" || ko "model.bin: magic '$magic', $size bytes for d = '$d'"
grep -q '^stop-reason = time budget' "$run/summary.txt" && ok "summary.txt names the stop reason" ||
	ko "summary.txt: $(head -c 300 "$run/summary.txt" 2>/dev/null)"
if command -v gnuplot >/dev/null; then
	for f in loss.png loss-work.png accuracy.png; do
		[ "$(head -c 4 "$run/$f" 2>/dev/null | tail -c 3)" = PNG ] && ok "$f is a PNG" || ko "$f missing or not a PNG"
	done
else
	grep -q 'gnuplot is not installed' "$tmp/run.log" && ok "without gnuplot the run says how to get plots" ||
		ko "no gnuplot and no word about it"
fi

# nothing is overwritten without --force
out=$("$train" --data synth --synth-n 4000 --workers 3 --time 1 --out "$run" 2>&1)
rc=$?
[ $rc -eq 2 ] && [[ $out == *"holds a previous run"* ]] && ok "a previous run is not overwritten: $out" ||
	ko "rerun into $run: exit $rc: $out"
"$train" --data synth --synth-n 4000 --workers 3 --epochs 0.5 --batch 16 --out "$run" --force --progress none --no-plots >/dev/null 2>&1 &&
	grep -q '^stop-reason = gradient budget' "$run/summary.txt" &&
	ok "--force reuses the folder; --epochs 0.5 stops on the gradient budget" || ko "--force / --epochs: $(grep stop-reason "$run/summary.txt")"

# one LIBSVM file per worker, with a test file, logistic regression
awk -v s=11 'BEGIN { srand(s); for (w = 0; w < 3; w++) { f = sprintf("'"$tmp"'/w%d.svm", w);
	for (i = 0; i < 300; i++) { y = (rand() < 0.3 + 0.2 * w) ? 1 : -1;
		printf "%+d 1:%.3f 2:%.3f 5:%.3f\n", y, y + rand(), rand(), -y + rand() > f } }
	for (i = 0; i < 200; i++) { y = (rand() < 0.5) ? 1 : -1;
		printf "%+d 1:%.3f 2:%.3f 5:%.3f\n", y, y + rand(), rand(), -y + rand() > "'"$tmp"'/test.svm" } }'
if "$train" --objective logreg --data-per-worker "$tmp/w{i}.svm" --test "$tmp/test.svm" --workers 3 --time 2 \
	--out "$tmp/svm" --progress none --no-plots > "$tmp/svm.log" 2>&1; then
	acc=$(sed -n 's/^final-accuracy = //p' "$tmp/svm/summary.txt")
	awk -v a="$acc" 'BEGIN { exit !(a >= 0.9) }' && ok "per-worker LIBSVM files, logistic regression: test accuracy $acc (>= 0.9)" ||
		ko "per-worker LIBSVM files: test accuracy $acc < 0.9"
else
	ko "per-worker LIBSVM run: $(tail -n 3 "$tmp/svm.log")"
fi

# quadratics report the distance to the optimum
"$train" --objective quad --dim 20 --time 2 --workers 2 --out "$tmp/quad" --progress none --no-plots >/dev/null 2>&1 &&
	grep -q '^final-distance-to-optimum = ' "$tmp/quad/summary.txt" &&
	ok "quad: $(grep '^final-distance-to-optimum' "$tmp/quad/summary.txt")" || ko "quad run or its distance to the optimum"

# a target stops the run when an evaluation reaches it
"$train" --data synth --synth-n 4000 --workers 2 --target-acc 0.9 --time 60 --out "$tmp/target" --progress none --no-plots >/dev/null 2>&1
el=$(sed -n 's/^elapsed-s = //p' "$tmp/target/summary.txt" 2>/dev/null)
grep -q '^stop-reason = target accuracy' "$tmp/target/summary.txt" 2>/dev/null &&
	awk -v e="$el" 'BEGIN { exit !(e < 30) }' && ok "--target-acc 0.9 stopped the run after $el s" ||
	ko "--target-acc: $(grep -E 'stop-reason|elapsed' "$tmp/target/summary.txt" 2>/dev/null | tr '\n' ' ')"

# a slow worker's padding does not hold the stop: with tau = 0.4 (1 + i^2)
# the third worker's steps take 2 s; a 1 s budget must end near 1 s
"$train" --objective quad --dim 10 --workers 3 --profile squared --time-unit 0.4 --noise 0 --time 1 \
	--out "$tmp/slow" --progress none --no-plots >/dev/null 2>&1
el=$(sed -n 's/^elapsed-s = //p' "$tmp/slow/summary.txt" 2>/dev/null)
awk -v e="$el" 'BEGIN { exit !(e != "" && e < 1.8) }' && ok "a 2 s padded step did not hold a 1 s budget: stopped after $el s" ||
	ko "slow padding held the stop: elapsed '$el' s (must be < 1.8)"

# hetsgd-plot compares runs
if command -v gnuplot >/dev/null; then
	if "$plot" --out "$tmp/cmp" --prefix both- "$run=epochs run" "$tmp/svm" >/dev/null 2>&1 &&
	   [ -s "$tmp/cmp/both-loss.png" ] && [ -s "$tmp/cmp/both-accuracy.png" ]; then
		ok "hetsgd-plot drew two runs"
	else
		ko "hetsgd-plot"
	fi
	out=$("$plot" --out "$tmp/cmp" "$tmp/nothing" 2>&1)
	[ $? -ne 0 ] && [[ $out == *"metrics.csv"* ]] && ok "hetsgd-plot names a folder that is not a run: $out" || ko "hetsgd-plot on a non-run: $out"
fi
echo "train-cli: $fails failed"
[ $fails -eq 0 ]
