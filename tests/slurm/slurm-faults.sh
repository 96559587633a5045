#!/bin/bash
# Worker loss under srun (issue #12): srun -n 4 hetsgd-train with
# --mpi=pmix, --mpi=pmi2 and --mpi=none (the TCP rendezvous), ASGD and
# LOSCAR; one worker (rank 2) is killed with kill -9 in the middle of the
# run.  The survivors must finish at their budget (not a stall time
# later), exit 0, and rank 0 must write every output with the lost worker
# named; srun's own exit status is the killed task's (128 + 9).
# With srun -K1 (--kill-on-bad-exit, as KillOnBadExit=1 sets for a whole
# site) Slurm itself ends the step when the task dies: it sends SIGTERM
# (SIGKILL KillWait seconds later), so every survivor must stop, write
# the outputs "stopped by signal SIGTERM" and exit 143.
# Runs inside a private Slurm whose environment the caller has sourced
# (check-slurm.sh); HETSGD_BUILDDIR is the build tree.
set -u
builddir=${HETSGD_BUILDDIR:-$PWD}
prog=$builddir/apps/hetsgd-train
budget=${HETSGD_SLURM_FAULT_TIME:-6}
pass=0 fail=0
ok() { echo "PASS: $*"; pass=$((pass + 1)); }
ko() { echo "FAIL: $*"; fail=$((fail + 1)); }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# rank R's hetsgd-train among the step's processes: its SLURM_PROCID
rank_pid() { # $1 = out dir, $2 = rank
	local p i=0
	while [ $i -lt 100 ]; do
		for p in $(pgrep -f -- "--out $1\$"); do
			tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "SLURM_PROCID=$2" && { echo "$p"; return; }
		done
		sleep 0.1; i=$((i + 1))
	done
}

# --mpi=none: the TCP rendezvous admits only ranks that know the secret
[ -n "${HETSGD_SECRET:-}" ] || HETSGD_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HETSGD_SECRET
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-slurm-faults.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# case MPI METHOD K: srun -KK (0: the default, the step goes on; 1:
# --kill-on-bad-exit, Slurm ends the step with SIGTERM) and kill -9 of
# rank 2 two seconds into the run
run_case() {
	local mpi=$1 method=$2 k=$3 name out log t0 t_kill t_end took rc victim srun_pid sum miss
	name="srun -K$k --mpi=$mpi, $method, kill -9 of rank 2"
	out=$tmp/$mpi-$method-K$k
	log=$out.log
	t0=$(now)
	(cd "$builddir" && exec timeout 150 srun -K"$k" -n 4 --mpi="$mpi" "$prog" --method "$method" --data synth \
		--synth-n 4000 --time "$budget" --progress plain --no-plots --pin no --out "$out") >"$log" 2>&1 &
	srun_pid=$!
	victim=$(rank_pid "$out" 2)
	sleep 2
	t_kill=$(now)
	[ -n "$victim" ] && kill -9 "$victim"
	wait $srun_pid
	rc=$?
	t_end=$(now)
	took=$(elapsed "$t0" "$t_end")
	echo "  [$mpi/$method/K$k] srun exit $rc after $took s (budget $budget s; killed rank 2, pid ${victim:-none}, at $(elapsed "$t0" "$t_kill") s)"
	grep -v "^$method-" "$log" | sed "s/^/  [$mpi\/$method\/K$k] /" | tail -n 12
	sum=$out/summary.txt
	miss=
	for f in model.bin summary.txt workers.csv metrics.csv; do [ -s "$out/$f" ] || miss="$miss $f"; done
	if [ -z "$victim" ]; then
		ko "$name: rank 2 never started"
	elif [ -n "$miss" ]; then
		ko "$name: outputs missing:$miss (srun exit $rc, $took s)"
	elif ! grep -q '^lost-worker-1 = rank 2 at' "$sum"; then
		ko "$name: summary.txt does not name rank 2 as lost"
	elif [ "$k" = 0 ] && ! grep -q '^stop-reason = time budget' "$sum"; then
		ko "$name: $(grep '^stop-reason' "$sum")"
	elif [ "$k" = 0 ] && ! le "$took" $((budget + 8)); then
		ko "$name: the survivors took $took s for a $budget s budget"
	elif [ "$k" = 0 ] && grep -q 'Exited with exit code' "$log"; then
		ko "$name: a survivor failed: $(grep 'Exited with exit code' "$log" | head -n 2)"
	elif [ "$k" = 1 ] && ! grep -q '^stop-reason = stopped by signal SIGTERM' "$sum"; then
		ko "$name: Slurm ended the step, but $(grep '^stop-reason' "$sum")"
	elif [ "$k" = 1 ] && ! le "$(elapsed "$t_kill" "$t_end")" 4; then
		ko "$name: the step took $(elapsed "$t_kill" "$t_end") s to end after the kill"
	elif [ "$k" = 1 ] && ! grep -q 'tasks 0-1,3: Exited with exit code 143' "$log"; then
		ko "$name: the survivors did not exit 143: $(grep 'srun: error' "$log" | tail -n 1)"
	elif [ $rc -ne 137 ]; then
		ko "$name: srun exit $rc, expected 137 (the killed task's)"
	elif [ "$k" = 0 ]; then
		ok "$name: survivors finished in $took s, outputs complete, $(grep '^lost-worker-1' "$sum" | cut -c1-60)"
	else
		ok "$name: Slurm ended the step with SIGTERM $(elapsed "$t_kill" "$t_end") s after the kill; outputs written, stopped by signal SIGTERM, survivors exit 143"
	fi
}

for mpi in ${HETSGD_SLURM_FAULT_MPI:-pmix pmi2 none}; do
	for method in asgd loscar; do
		run_case "$mpi" "$method" 0
	done
done
# --kill-on-bad-exit (or KillOnBadExit=1): Slurm, not hetsgd, ends the step
run_case pmix asgd 1
echo "slurm-faults: $pass passed, $fail failed"
[ $fail -eq 0 ]
