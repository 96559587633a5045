#!/bin/bash
# hetsgd-train's outputs are never half-written or mixed, and --init.
#
# Decision: every output file is written under a temporary name in its
# folder (NAME.tmp; metrics.csv.part while the run goes) and renamed into
# place only when complete.  summary.txt is written first saying
# "stop-reason = unfinished: ...", last with the real stop reason, and on
# a failure with "stop-reason = failed: WHY"; a folder whose summary.txt
# has a stop reason other than failed is a previous run, refused without
# --force, and --force (or a failed run's folder) clears only the known
# output names before the new run writes any.
#
# The cases: a full disk (a 256 KiB tmpfs: needs root; SKIP otherwise)
# stops the run naming the file, leaves no final name half-written, keeps
# another run's complete files, and records the failure in summary.txt;
# that folder is then reused without --force; --force clears a finished
# run's files (and nothing else) and a refused --force run clears
# nothing; --init continues from a model.bin and refuses a mismatched one;
# a gnuplot that fails leaves and claims no PNG; a disk that fills during
# a run with --checkpoint-every stops it naming the file and leaves the
# last checkpoint whole (the run resumes from it).
set -u
b=${HETSGD_BUILDDIR:-.}
b=$(cd "$b" && pwd)
train=$b/apps/hetsgd-train
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-outputs.XXXXXX")
full=$tmp/full
mounted=0
cleanup() {
	[ $mounted = 1 ] && umount "$full"
	rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }

# a small classifier run, a second long; plots only where asked
small=(--data synth --synth-n 400 --workers 2 --time 1 --progress none)

# ---- --init: continue from a run's model, refuse a mismatched one
if "$train" "${small[@]}" --no-plots --out "$tmp/a" > "$tmp/a.log" 2>&1; then
	ok "a first run"
else
	ko "a first run failed: $(tail -n 3 "$tmp/a.log")"
fi
first_a=$(awk -F, 'NR == 2 { print $5 }' "$tmp/a/metrics.csv")
final_a=$(sed -n 's/^final-loss = //p' "$tmp/a/summary.txt")
if "$train" "${small[@]}" --no-plots --init "$tmp/a/model.bin" --out "$tmp/b" > "$tmp/b.log" 2>&1; then
	first_b=$(awk -F, 'NR == 2 { print $5 }' "$tmp/b/metrics.csv")
	if awk -v s="$first_a" -v f="$final_a" -v b="$first_b" \
		'BEGIN { exit !(b <= f * 1.5 + 1e-3 && b < s / 2) }'; then
		ok "--init continues: first loss $first_b, the previous run's final $final_a (its first $first_a)"
	else
		ko "--init: first loss $first_b, wanted near the previous final $final_a, not its first $first_a"
	fi
	grep -q "^init = $tmp/a/model.bin\$" "$tmp/b/summary.txt" && ok "--init is in summary.txt" ||
		ko "--init not in summary.txt"
else
	ko "--init run failed: $(tail -n 3 "$tmp/b.log")"
fi
"$train" --objective quad --workers 2 --time 0.3 --progress none --no-plots --out "$tmp/q" > "$tmp/q.log" 2>&1 ||
	ko "a quad run failed: $(tail -n 3 "$tmp/q.log")"
out=$("$train" "${small[@]}" --init "$tmp/q/model.bin" --out "$tmp/c" 2>&1)
rc=$?
if [ $rc -eq 2 ] && [[ $out == *"--init $tmp/q/model.bin holds a model of quadratic"*"this run trains softmax"* ]]; then
	ok "a mismatched --init -> exit 2: $out"
else
	ko "a mismatched --init -> exit $rc: $out"
fi

# ---- --force clears the old run's files, and only those
mkdir -p "$tmp/f"
if "$train" "${small[@]}" --out "$tmp/f" > "$tmp/f1.log" 2>&1 && [ -s "$tmp/f/loss.png" ]; then
	echo keep > "$tmp/f/notes.txt"
	cp "$tmp/f/model.bin" "$tmp/f-model.bin"
	out=$("$train" "${small[@]}" --out "$tmp/f" 2>&1)
	[ $? -eq 2 ] && [[ $out == *"holds a previous run"*"--force"* ]] &&
		ok "a finished run's folder is refused without --force" || ko "no --force: $out"
	out=$("$train" "${small[@]}" --force --data "$tmp/nonexistent.svm" --out "$tmp/f" 2>&1)
	cmp -s "$tmp/f/model.bin" "$tmp/f-model.bin" && [ -s "$tmp/f/loss.png" ] &&
		ok "a --force run refused at load clears nothing" || ko "a refused --force run removed files: $(ls "$tmp/f")"
	if "$train" "${small[@]}" --force --no-plots --out "$tmp/f" > "$tmp/f2.log" 2>&1; then
		left=$(cd "$tmp/f" && ls -- *.png plot.gp 2>/dev/null)
		[ -z "$left" ] && [ -f "$tmp/f/notes.txt" ] && [ -s "$tmp/f/metrics.csv" ] &&
			ok "--force cleared the old plots, kept notes.txt" ||
			ko "--force left: $left; notes.txt $( [ -f "$tmp/f/notes.txt" ] && echo kept || echo removed)"
	else
		ko "--force run failed: $(tail -n 3 "$tmp/f2.log")"
	fi
else
	ko "a run with plots failed: $(tail -n 3 "$tmp/f1.log")"
fi

# ---- a gnuplot that fails: reported, no PNG left or claimed
mkdir -p "$tmp/bin"
printf '#!/bin/sh\necho "fake gnuplot: failing" >&2\nexit 1\n' > "$tmp/bin/gnuplot"
chmod +x "$tmp/bin/gnuplot"
out=$(PATH="$tmp/bin:$PATH" "$train" "${small[@]}" --out "$tmp/g" 2>&1)
rc=$?
pngs=$(cd "$tmp/g" && ls -- *.png* 2>/dev/null)
if [ $rc -eq 0 ] && [[ $out == *"plots: gnuplot failed"* ]] && [[ $out != *".png"* ]] && [ -z "$pngs" ]; then
	ok "a failed gnuplot is reported and no PNG is claimed"
else
	ko "failed gnuplot: exit $rc, PNGs '$pngs', output: $(tail -n 3 <<<"$out")"
fi

# ---- a full disk
mkdir -p "$full"
if ! mount -t tmpfs -o size=256k tmpfs "$full" 2>/dev/null; then
	echo "SKIP: cannot mount a tmpfs (needs root): the full-disk cases did not run"
	[ $fails -eq 0 ] && exit 77
	exit 1
fi
mounted=1
if "$train" "${small[@]}" --no-plots --out "$full/prev" > "$tmp/prev.log" 2>&1; then
	cp -r "$full/prev" "$tmp/prev-copy"
	# fill the disk, then free two pages: the unfinished summary.txt and
	# metrics.csv.part fit, a model of 2010 values (8 KiB) does not
	dd if=/dev/zero of="$full/filler" bs=4k 2> /dev/null
	truncate -s -8K "$full/filler"
	big=(--data synth --synth-n 400 --synth-p 200 --workers 2 --time 1 --progress none --no-plots)
	out=$("$train" "${big[@]}" --out "$full/new" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] && [[ $out == *"cannot write "*"$full/new/"*"is the disk full?"* ]]; then
		ok "a full disk -> exit $rc: $(grep -m1 'cannot write' <<<"$out")"
	else
		ko "a full disk -> exit $rc: $out"
	fi
	half=$(cd "$full/new" && ls -- metrics.csv model.bin workers.csv *.tmp 2>/dev/null)
	[ -z "$half" ] && ok "no half-written file under a final name" || ko "left on a full disk: $half"
	if grep -q '^stop-reason = failed: cannot write' "$full/new/summary.txt" 2>/dev/null; then
		ok "summary.txt says: $(grep '^stop-reason' "$full/new/summary.txt")"
	else
		ko "summary.txt of the failed run: $(grep '^stop-reason' "$full/new/summary.txt" 2>&1)"
	fi
	diff -r "$tmp/prev-copy" "$full/prev" > /dev/null && ok "the previous complete run is intact" ||
		ko "the previous run changed: $(diff -r "$tmp/prev-copy" "$full/prev" 2>&1 | head -n 3)"
	rm -f "$full/filler"
	if "$train" "${big[@]}" --out "$full/new" > "$tmp/reuse.log" 2>&1 &&
		grep -q '^stop-reason = time budget' "$full/new/summary.txt" && [ ! -e "$full/new/metrics.csv.part" ]; then
		ok "the failed run's folder is reused without --force"
	else
		ko "reusing the failed run's folder: $(tail -n 3 "$tmp/reuse.log")"
	fi
	# checkpoints: the disk fills while the run goes; the run stops naming
	# the file, and the last checkpoint is whole: the run resumes from it
	"$train" "${big[@]}" --time 8 --checkpoint-every 0.2 --out "$full/ck" > "$tmp/ck.log" 2>&1 &
	pid=$!
	sleep 2
	dd if=/dev/zero of="$full/filler" bs=4k 2> /dev/null
	wait $pid
	rc=$?
	if [ $rc -ne 0 ] && grep -q "cannot write .*$full/ck/.*is the disk full?" "$tmp/ck.log"; then
		ok "a disk that fills during a checkpointed run -> exit $rc: $(grep -m1 -o 'cannot write [^:]*' "$tmp/ck.log")"
	else
		ko "a disk that fills during a checkpointed run -> exit $rc: $(tail -n 3 "$tmp/ck.log")"
	fi
	ls "$full/ck"/*.tmp > /dev/null 2>&1 && ko "a temporary file was left: $(ls "$full/ck"/*.tmp)"
	rm -f "$full/filler"
	if "$train" --resume "$full/ck" --progress none > "$tmp/ck-resume.log" 2>&1 &&
		grep -q '^resumed-from = ' "$full/ck/summary.txt"; then
		ok "the last checkpoint was whole: $(grep '^resumed-from' "$full/ck/summary.txt")"
	else
		ko "resuming after the full disk: $(tail -n 3 "$tmp/ck-resume.log")"
	fi
else
	ko "a small run on the tmpfs failed: $(tail -n 3 "$tmp/prev.log")"
fi

[ $fails -eq 0 ] && echo "all output checks passed"
exit $((fails > 0))
