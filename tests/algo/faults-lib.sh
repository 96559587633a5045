# Fault kinds for hetsgd-train over the local launcher (issue #12), sourced
# by faults.sh (a fixed matrix, in make check and make check-faults) and
# soak-faults.sh (random faults at random moments, make soak-faults).
#
# The table: one function per kind, fault_KIND METHOD.  Each starts a run
# of METHOD, waits until every rank is up, waits `at` seconds more (set
# by the caller, a random moment), injects its fault, waits for the
# launcher (a run that outlives its budget by $hang_s is killed and counts
# as hung) and asserts how fast every rank stopped or went on, the exit
# status, that no process and no /dev/shm/hetsgd-* segment of the run is
# left, and that the outputs are complete and consistent.  ok/ko print
# one line per assertion; ko also counts the run as failed, and a run
# whose promised outputs are missing as one that lost outputs.
#
# Callers set: prog, provider, tmp, budget (seconds per run), at; they
# may set extra (more hetsgd-train options).  Counters: fails (assertions
# that failed), hung, lost (runs), skipped (kinds that could not run).
#
# To add a kind: write fault_NAME (start, wait_ranks, inject, wait_exit,
# then the checks below) and add NAME to fault_kinds.
fault_kinds="kill9_worker kill9_server kill9_launcher term_launcher int_launcher term_rank int_rank term_group int_group full_disk ckpt_resume"

fails=0 hung=0 lost=0 skipped=0
launcher=
extra=

ok() { echo "  ok: $*"; }
ko() { echo "  FAIL: $*"; fails=$((fails + 1)); }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# is $1 <= $2 (decimals)?
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
shm_list() { ls /dev/shm 2>/dev/null | grep '^hetsgd-' | sort; }

# start NAME ARGS...: a run in the background, in a process group of its
# own (setsid: a signal to the group reaches the launcher and its ranks,
# never this script), its outputs under $outroot (default $tmp), its log
# in $tmp; $launcher, $out, $log, $t_start
start() {
	name=$1
	shift
	out="${outroot:-$tmp}/$name"
	log="$tmp/$name.log"
	rm -rf "$out"
	shm_before=$(shm_list)
	# shellcheck disable=SC2086
	setsid "$prog" --data synth --synth-n 4000 --workers 4 --time "$budget" --provider "$provider" --pin no \
		--no-plots --progress plain --out "$out" $extra "$@" >"$log" 2>&1 &
	launcher=$!
	t_start=$(now)
}

# the launcher's ranks, once all 5 are up (it forks ranks 0 .. 4 in order)
wait_ranks() {
	i=0
	ranks=
	while [ $i -lt 100 ]; do
		ranks=$(pgrep -P "$launcher" | sort -n)
		[ "$(echo "$ranks" | grep -c .)" -eq 5 ] && return 0
		sleep 0.05
		i=$((i + 1))
	done
	ranks=
	return 1
}

# rank R's pid (after wait_ranks)
rank_pid() { echo "$ranks" | sed -n "$(($1 + 1))p"; }

# every rank is up; then wait the moment `at`
moment() {
	wait_ranks || { ko "$1: the ranks did not start: $(tail -n 3 "$log")"; return 1; }
	sleep "$at"
	echo "  at $at s after the ranks started"
}

# wait_exit: wait for the launcher, at most the budget plus $hang_s; a
# run still alive then is hung: its group is killed.  $rc, $t_end
wait_exit() {
	deadline=$(awk -v t="$t_start" -v b="$budget" -v h="${hang_s:-20}" 'BEGIN { printf "%.2f", t + b + h }')
	while kill -0 "$launcher" 2>/dev/null && le "$(now)" "$deadline"; do
		# a zombie is done: wait reaps it below
		grep -q '^State:.*Z' "/proc/$launcher/status" 2>/dev/null && break
		sleep 0.05
	done
	if kill -0 "$launcher" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$launcher/status" 2>/dev/null; then
		ko "$name: HUNG: still running $(elapsed "$t_start" "$(now)") s after its start (budget $budget s)"
		hung=$((hung + 1))
		kill -9 "-$launcher" 2>/dev/null
	fi
	wait "$launcher"
	rc=$?
	t_end=$(now)
}

# nothing of the run is left: no process, no segment
check_clean() {
	i=0
	while [ $i -lt 40 ] && pgrep -f -- "--out $out( |\$)" >/dev/null; do
		sleep 0.05
		i=$((i + 1))
	done
	if pgrep -f -- "--out $out( |\$)" >/dev/null; then
		ko "$1: processes left: $(pgrep -f -- "--out $out( |\$)" | tr '\n' ' ')"
		pkill -9 -f -- "--out $out( |\$)"
	else
		ok "$1: no process left"
	fi
	left=$(shm_list | while read -r s; do echo "$shm_before" | grep -qx "$s" || echo "$s"; done)
	if [ -n "$left" ]; then
		sleep 1	# another job's segments live for a moment only
		left=$(for s in $left; do [ -e "/dev/shm/$s" ] && echo "$s"; done)
	fi
	[ -z "$left" ] && ok "$1: no /dev/shm/hetsgd-* segment left" || ko "$1: segments left: $left"
}

# the outputs of a run that finished, complete and consistent: every file,
# metrics.csv ending in its final row, workers.csv with a row per worker,
# model.bin of its header plus d floats, summary.txt with a stop reason
check_outputs() {
	for f in model.bin summary.txt workers.csv metrics.csv; do
		if [ ! -s "$out/$f" ]; then
			ko "$1: $f not written"
			lost=$((lost + 1))
			return 1
		fi
	done
	bad=
	awk -F, 'END { exit $NF != 1 }' "$out/metrics.csv" || bad="$bad metrics.csv has no final row;"
	[ "$(awk 'NR > 1' "$out/workers.csv" | grep -c .)" -eq 4 ] || bad="$bad workers.csv has not 4 rows;"
	d=$(sed -n 's/^d = //p' "$out/summary.txt")
	[ -n "$d" ] && [ "$(wc -c <"$out/model.bin")" -eq $((64 + 4 * d)) ] || bad="$bad model.bin is not 64 + 4 d bytes;"
	grep -q '^stop-reason = unfinished' "$out/summary.txt" && bad="$bad summary.txt says unfinished;"
	for f in "$out"/*.tmp "$out"/*.part; do [ -e "$f" ] && bad="$bad $(basename "$f") left;"; done
	if [ -n "$bad" ]; then
		ko "$1: outputs inconsistent:$bad"
		lost=$((lost + 1))
		return 1
	fi
	ok "$1: model.bin, summary.txt, workers.csv, metrics.csv complete"
}

# ---- the kinds ----------------------------------------------------------

# kill -9 of worker rank 2: the run ends at its budget with exit 0, the
# loss noticed within 2 s and recorded in summary.txt and workers.csv
fault_kill9_worker() {
	echo "faults: kill -9 of a worker, $*"
	start "lost-$(echo "$*" | tr -c 'a-z0-9\n' -)" --method "$@"
	moment "$1" || return
	victim=$(rank_pid 2)
	t_kill=$(now)
	kill -9 "$victim"
	t_seen=
	i=0
	while [ $i -lt 60 ] && [ -z "$t_seen" ]; do
		grep -q 'lost at' "$log" && t_seen=$(now)
		[ -z "$t_seen" ] && sleep 0.05
		i=$((i + 1))
	done
	wait_exit
	if grep -q '^stop-reason = time budget' "$out/summary.txt" 2>/dev/null &&
		! grep -q '^lost-workers = 1$' "$out/summary.txt"; then
		ok "$1: the run had ended before the kill: nothing to notice"
	elif [ -n "$t_seen" ] && le "$(elapsed "$t_kill" "$t_seen")" 2.0; then
		ok "$1: the server dropped worker 1 $(elapsed "$t_kill" "$t_seen") s after the kill"
	else
		ko "$1: no 'lost at' line within 2 s of the kill"
	fi
	[ $rc -eq 0 ] && ok "$1: exit 0" || ko "$1: exit $rc: $(tail -n 3 "$log")"
	grep -q '^stop-reason = time budget' "$out/summary.txt" 2>/dev/null &&
		ok "$1: ended at its time budget" || ko "$1: stop reason $(grep stop-reason "$out/summary.txt" 2>/dev/null)"
	# no round waits for the dead rank (a shard's owner, with sharded
	# averaging): updates go on after the loss (metrics.csv: time_s,
	# grads, updates, ..., final)
	if grep -q '^lost-workers = 1$' "$out/summary.txt" 2>/dev/null &&
		! awk -v k="$at" -v b="$budget" 'BEGIN { exit !(k + 2 < b) }'; then
		# a kill less than 2 s before the budget may leave no evaluation
		# between 1 s after it and the final row to compare
		ok "$1: killed within 2 s of the budget: no later evaluation to compare"
	elif grep -q '^lost-workers = 1$' "$out/summary.txt" 2>/dev/null; then
		if awk -F, -v k="$at" 'NR > 1 && $1 >= k + 1 && u1 == "" { u1 = $3 } NR > 1 { uf = $3 }
				END { printf "%s -> %s\n", u1, uf > "/dev/stderr"; exit !(u1 != "" && uf > u1) }' \
			"$out/metrics.csv" 2>"$tmp/updates"; then
			ok "$1: updates went on after the loss (from $(sed 's/ ->/ 1 s after it to/' "$tmp/updates") at the end)"
		else
			ko "$1: updates stopped after the loss: $(cat "$tmp/updates")"
		fi
	fi
	if grep -q '^lost-workers = 1$' "$out/summary.txt" 2>/dev/null; then
		grep -q '^lost-worker-1 = .*rank 2 at .*last step' "$out/summary.txt" &&
			ok "$1: summary.txt: $(grep '^lost-worker-1' "$out/summary.txt" | cut -c1-90)" ||
			ko "$1: summary.txt does not name rank 2"
		awk -F, 'NR > 1 && $1 == 1 && $15 == "lost" && $16 > 0 { f = 1 } NR > 1 && $1 != 1 && $15 != "done" { f = -9 } END { exit f != 1 }' \
			"$out/workers.csv" 2>/dev/null && ok "$1: workers.csv: worker 1 lost, the others done" ||
			ko "$1: workers.csv: $(cut -d, -f1,4,15,16 "$out/workers.csv" 2>/dev/null | tr '\n' ' ')"
		grep -q 'rank 2 (worker 1) was killed by signal 9' "$log" &&
			ok "$1: the launcher names the killed rank" || ko "$1: the launcher does not name rank 2"
	elif [ -n "$t_seen" ]; then
		ko "$1: summary.txt does not record the loss"
	fi
	check_outputs "$1"
	check_clean "$1"
}

# kill -9 of the server: the workers stop within 2 s, exit non-zero and
# say that the server failed; its outputs are lost by design (the rows so
# far stay in metrics.csv.part, summary.txt stays unfinished)
fault_kill9_server() {
	echo "faults: kill -9 of the server, $1"
	start "server-$1" --method "$1"
	moment "$1" || return
	victim=$(rank_pid 0)
	t_kill=$(now)
	kill -9 "$victim"
	wait_exit
	took=$(elapsed "$t_kill" "$t_end")
	echo "  every rank stopped $took s after the kill"
	if grep -q '^stop-reason = time budget' "$out/summary.txt" 2>/dev/null; then
		ok "server: the run had ended before the kill (exit $rc)"
		check_outputs server
	else
		le "$took" 2.0 && ok "server: the workers stopped within 2 s" || ko "server: the workers took $took s"
		[ $rc -ne 0 ] && ok "server: exit $rc" || ko "server: exit 0 after the server died"
		n=$(grep -c 'the server (rank 0) failed' "$log")
		[ "$n" -ge 1 ] && ok "server: $n workers say the server failed" || ko "server: no worker names the server: $(tail -n 5 "$log")"
		grep -q 'rank 0 was killed by signal 9' "$log" && ok "server: the launcher names rank 0" ||
			ko "server: the launcher does not name rank 0"
		for f in model.bin workers.csv metrics.csv; do
			[ -e "$out/$f" ] && ko "server: $f exists though the server died" && lost=$((lost + 1))
		done
		grep -q '^stop-reason = unfinished' "$out/summary.txt" 2>/dev/null &&
			ok "server: summary.txt stays unfinished, the folder is marked" || ko "server: summary.txt: $(grep stop-reason "$out/summary.txt" 2>&1)"
	fi
	check_clean server
}

# kill -9 of the launcher: PR_SET_PDEATHSIG turns its death into a
# SIGTERM to every rank, which stops the run with the outputs written
fault_kill9_launcher() {
	echo "faults: kill -9 of the launcher, $1"
	start "orphans-$1" --method "$1"
	moment "$1" || return
	t_kill=$(now)
	kill -9 "$launcher"
	wait_exit
	i=0
	while [ $i -lt 60 ] && pgrep -f -- "--out $out( |\$)" >/dev/null; do
		sleep 0.05
		i=$((i + 1))
	done
	took=$(elapsed "$t_kill" "$(now)")
	echo "  every rank stopped $took s after the launcher died"
	le "$took" 2.0 && ok "orphans: every rank stopped within 2 s" || ko "orphans: ranks still running after $took s"
	grep -Eq "^stop-reason = (stopped by signal SIGTERM|time budget)\$" "$out/summary.txt" 2>/dev/null &&
		ok "orphans: summary.txt: $(grep '^stop-reason' "$out/summary.txt")" ||
		ko "orphans: stop reason $(grep stop-reason "$out/summary.txt" 2>/dev/null)"
	check_outputs orphans
	check_clean orphans
}

# stop_by SIGNAL WHO METHOD: SIGNAL to the launcher, rank R (WHO = rank
# R) or the whole process group (WHO = group: kill -SIG -PGID, as Ctrl-C
# and scancel do): every rank stops within 2 s, exit 128 + the signal,
# outputs written "stopped by signal SIGx"
stop_by() {
	echo "faults: SIG$1 to the $2, $3"
	start "sig-$1-$(echo "$2" | tr -d ' ')-$3" --method "$3"
	moment "$3" || return
	case $1 in TERM) status=143 ;; INT) status=130 ;; *) status=$(($(kill -l "$1") + 128)) ;; esac
	case $2 in
	launcher) target=$launcher ;;
	group) target=-$launcher ;;
	*) target=$(rank_pid "${2#rank }") ;;
	esac
	[ "$2" != group ] || [ "$(ps -o pgid= -p "$launcher" | tr -d ' ')" = "$launcher" ] ||
		ko "$1: the run is not a process group of its own"
	t_kill=$(now)
	kill -s "$1" -- "$target"
	wait_exit
	took=$(elapsed "$t_kill" "$t_end")
	echo "  every rank stopped and the outputs were written $took s after the signal"
	if grep -q '^stop-reason = time budget' "$out/summary.txt" 2>/dev/null && [ $rc -eq 0 ]; then
		ok "$1: the run had ended at its budget before the signal"
	else
		le "$took" 2.0 && ok "$1: stopped within 2 s" || ko "$1: took $took s"
		[ $rc -eq $status ] && ok "$1: exit $rc" || ko "$1: exit $rc, expected $status: $(tail -n 3 "$log")"
		grep -q "^stop-reason = stopped by signal SIG$1\$" "$out/summary.txt" 2>/dev/null &&
			ok "$1: summary.txt: stopped by signal SIG$1" ||
			ko "$1: stop reason $(grep stop-reason "$out/summary.txt" 2>/dev/null)"
	fi
	check_outputs "SIG$1 to the $2"
	check_clean "SIG$1 to the $2"
}

fault_term_launcher() { stop_by TERM launcher "$1"; }
fault_int_launcher() { stop_by INT launcher "$1"; }
# rank 0 (the server) for SIGTERM, a worker for SIGINT; the soak picks one
fault_term_rank() { stop_by TERM "rank ${sig_rank:-0}" "$1"; }
fault_int_rank() { stop_by INT "rank ${sig_rank:-3}" "$1"; }
fault_term_group() { stop_by TERM group "$1"; }
fault_int_group() { stop_by INT group "$1"; }

# a full disk: the output folder on a 1 MiB tmpfs, filled at the moment.
# The first write that fails stops the run (no later than its budget),
# exit 1, naming the file; no
# file under a final name is half-written, and summary.txt says failed.
# (A fill after the run's outputs were written leaves a complete run.)
# Needs to mount a tmpfs: skipped, and said so, where that is refused.
disk=
fault_full_disk() {
	echo "faults: a full disk, $1"
	if [ -z "$disk" ]; then
		disk=$tmp/disk
		mkdir -p "$disk"
		if ! mount -t tmpfs -o size=1m tmpfs "$disk" 2>/dev/null; then
			echo "  SKIP: cannot mount a tmpfs (needs root): the full-disk case did not run"
			skipped=$((skipped + 1))
			disk=none
			return
		fi
	fi
	[ "$disk" = none ] && { echo "  SKIP: no tmpfs"; skipped=$((skipped + 1)); return; }
	rm -rf "${disk:?}"/*
	outroot=$disk
	start "full-$1" --method "$1"
	outroot=
	moment "$1" || return
	t_kill=$(now)
	dd if=/dev/zero of="$disk/filler" bs=4k 2>/dev/null
	t_full=$(now)
	wait_exit
	took=$(elapsed "$t_full" "$t_end")
	if [ $rc -eq 0 ] && grep -q '^stop-reason = time budget' "$out/summary.txt" 2>/dev/null; then
		ok "disk: the run had written its outputs before the disk filled"
		check_outputs disk
	else
		# tmpfs is allocated by pages: the first write that needs a new
		# one fails, which may come a while after the fill; the run must
		# stop there, never run on past its budget
		total=$(elapsed "$t_start" "$t_end")
		echo "  the run stopped $took s after the disk filled, $total s after its start"
		le "$total" $((budget + 3)) && ok "disk: stopped at the first failed write, within its budget" ||
			ko "disk: ran $total s for a $budget s budget"
		[ $rc -eq 1 ] && ok "disk: exit 1" || ko "disk: exit $rc"
		grep -q 'cannot write .*is the disk full?' "$log" 2>/dev/null &&
			ok "disk: the message names the file: $(grep -h -m1 -o 'cannot write [^:]*' "$out/summary.txt" 2>/dev/null)" ||
			ko "disk: no 'cannot write ...: is the disk full?'"
		half=$(cd "$out" && ls -- metrics.csv model.bin workers.csv 2>/dev/null)
		[ -z "$half" ] && ok "disk: no half-written file under a final name" || { ko "disk: left: $half"; lost=$((lost + 1)); }
		grep -q '^stop-reason = failed: cannot write' "$out/summary.txt" 2>/dev/null &&
			ok "disk: summary.txt says failed" ||
			{ ko "disk: summary.txt: $(grep stop-reason "$out/summary.txt" 2>&1)"; lost=$((lost + 1)); }
	fi
	check_clean disk
	rm -rf "${disk:?}"/*
}

# A checkpointed run whose every process is killed at once (kill -9 of
# its process group: a node that dies, preemption without warning):
# --resume goes on from the last checkpoint to the budget, exit 0, every
# output complete, summary.txt naming the checkpoint.
fault_ckpt_resume() {
	echo "faults: kill -9 of every process of a checkpointed run, then --resume, $1"
	start "ckpt-$1" --method "$1" --checkpoint-every 0.5
	moment "$1" || return
	# the moment, or the first checkpoint if it comes later (a run killed
	# before any checkpoint has nothing to resume: that is no fault of it)
	i=0
	while [ $i -lt 100 ] && [ ! -s "$out/checkpoint.hck" ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -9 "-$launcher" 2>/dev/null
	wait_exit
	if [ $rc -ne 137 ] || ! grep -q '^stop-reason = unfinished' "$out/summary.txt" 2>/dev/null; then
		ko "ckpt: the run was not killed (exit $rc, $(grep stop-reason "$out/summary.txt" 2>&1))"
		return
	fi
	check_clean ckpt-killed
	if [ ! -s "$out/checkpoint.hck" ]; then
		ko "ckpt: no checkpoint.hck within 5 s of a run with --checkpoint-every 0.5"
		lost=$((lost + 1))
		return
	fi
	t_start=$(now)
	shm_before=$(shm_list)
	setsid "$prog" --resume "$out" --pin no --no-plots --progress plain >"$log.resume" 2>&1 &
	launcher=$!
	wait_exit
	if [ $rc -eq 0 ] && grep -q '^resumed-from = ' "$out/summary.txt" &&
		grep -q '^stop-reason = time budget' "$out/summary.txt"; then
		ok "ckpt: resumed $(sed -n 's/^resumed-from = .* at //p' "$out/summary.txt") into the run, ended at its budget"
	else
		ko "ckpt: --resume: exit $rc: $(tail -n 3 "$log.resume")"
	fi
	check_outputs ckpt
	check_clean ckpt
}

# unmount the tmpfs of fault_full_disk, if it was mounted
faults_cleanup() {
	[ -n "$disk" ] && [ "$disk" != none ] && umount "$disk" 2>/dev/null
	[ -n "$launcher" ] && kill -9 "-$launcher" 2>/dev/null
	rm -rf "$tmp"
}
