#!/bin/sh
# Faults survived, nothing lost (issue #12, first half), over shm with the
# local launcher and hetsgd-train:
#   - kill -9 of a worker at a random moment in [1, 3] s (asgd, loscar,
#     sync, malenia, ringleader; loscar and sync with sharded averaging,
#     where it owns a shard): the run ends at its budget with exit 0,
#     updates go on after the loss, summary.txt and
#     workers.csv name the lost worker, model.bin is written, and the
#     server noticed within 2 s;
#   - kill -9 of the server: the workers stop within 2 s, exit non-zero,
#     and say that the server failed;
#   - SIGTERM to the launcher, SIGINT to one worker: every rank stops
#     within 2 s, every output is written with "stopped by signal",
#     exit 143 / 130;
#   - kill -9 of the launcher: no rank outlives it by 2 s, and the
#     outputs are written (each rank got SIGTERM from PR_SET_PDEATHSIG);
# and after each case no process of the run and no /dev/shm/hetsgd-*
# segment of it is left.  Each case prints how fast it stopped.
set -u
# --provider verbs runs the same cases over a real device (the soft-RoCE bed)
provider=shm
[ "${1:-}" = --provider ] && provider=$2
builddir="${HETSGD_BUILDDIR:-.}"
prog="$builddir/apps/hetsgd-train"
[ -x "$prog" ] || { echo "faults: $prog not built"; exit 99; }
[ -d /dev/shm ] || { echo "faults: SKIP: no /dev/shm"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-faults.XXXXXX")
fails=0
launcher=
trap 'kill -9 $launcher 2>/dev/null; rm -rf "$tmp"' EXIT

ok() { echo "  ok: $*"; }
ko() { echo "  FAIL: $*"; fails=$((fails + 1)); }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# is $1 <= $2 (decimals)?
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
shm_list() { ls /dev/shm 2>/dev/null | grep '^hetsgd-' | sort; }

# start NAME ARGS...: a run in the background; $launcher, $out, $log
start() {
	name=$1
	shift
	out="$tmp/$name"
	log="$tmp/$name.log"
	shm_before=$(shm_list)
	"$prog" --data synth --synth-n 4000 --workers 4 --time 6 --provider "$provider" --pin no \
		--no-plots --progress plain --out "$out" "$@" >"$log" 2>&1 &
	launcher=$!
	t_start=$(now)
}

# rank R's pid: the launcher forks ranks 0 .. n in order
rank_pid() {
	i=0
	while [ $i -lt 50 ]; do
		p=$(pgrep -P "$launcher" | sort -n | sed -n "$(($1 + 1))p")
		[ -n "$p" ] && [ "$(pgrep -P "$launcher" | wc -l)" -eq 5 ] && { echo "$p"; return; }
		sleep 0.1
		i=$((i + 1))
	done
}

# sleep a random time in [1, 3] s after the start
random_wait() {
	d=$(awk -v s="$(od -An -N2 -tu2 /dev/urandom)" 'BEGIN { printf "%.2f", 1 + 2 * (s % 1000) / 999 }')
	sleep "$d"
	echo "  at $d s"
}

# wait_exit: wait for the launcher; $rc, $t_end
wait_exit() {
	wait "$launcher"
	rc=$?
	t_end=$(now)
}

# nothing of the run is left: no process, no segment
check_clean() {
	sleep 0.3
	if pgrep -f -- "--out $out" >/dev/null; then
		ko "$1: processes left: $(pgrep -f -- "--out $out" | tr '\n' ' ')"
		pkill -9 -f -- "--out $out"
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

# the outputs of a run that finished
check_outputs() {
	for f in model.bin summary.txt workers.csv metrics.csv; do
		[ -s "$out/$f" ] || { ko "$1: $f not written"; return; }
	done
	ok "$1: model.bin, summary.txt, workers.csv, metrics.csv written"
}

# kill -9 of worker rank 2 (worker 1) during a run of method $1
worker_loss() {
	echo "faults: kill -9 of a worker, $*"
	start "lost-$(echo "$*" | tr -c 'a-z0-9\n' -)" --method "$@"
	random_wait
	victim=$(rank_pid 2)
	t_kill=$(now)
	kill -9 "$victim"
	# the server says it dropped the worker: how long after the kill
	t_seen=
	i=0
	while [ $i -lt 60 ] && [ -z "$t_seen" ]; do
		grep -q 'lost at' "$log" && t_seen=$(now)
		[ -z "$t_seen" ] && sleep 0.05
		i=$((i + 1))
	done
	wait_exit
	if [ -n "$t_seen" ] && le "$(elapsed "$t_kill" "$t_seen")" 2.0; then
		ok "$1: the server dropped worker 1 $(elapsed "$t_kill" "$t_seen") s after the kill"
	else
		ko "$1: no 'lost at' line within 2 s of the kill"
	fi
	[ $rc -eq 0 ] && ok "$1: exit 0" || ko "$1: exit $rc: $(tail -3 "$log")"
	# no round waits for the dead rank: updates go on after the loss
	# (metrics.csv: time_s, grads, updates, ..., final)
	if awk -F, -v k="$d" 'NR > 1 && $1 >= k + 1 && u1 == "" { u1 = $3 } NR > 1 { uf = $3 }
			END { printf "%s -> %s\n", u1, uf > "/dev/stderr"; exit !(u1 != "" && uf > u1) }' \
		"$out/metrics.csv" 2>"$tmp/updates"; then
		ok "$1: updates went on after the loss (from $(sed 's/ ->/ at 1 s after it to/' "$tmp/updates") at the end)"
	else
		ko "$1: updates stopped after the loss: $(cat "$tmp/updates")"
	fi
	grep -q '^stop-reason = time budget' "$out/summary.txt" 2>/dev/null &&
		ok "$1: ended at its time budget" || ko "$1: stop reason $(grep stop-reason "$out/summary.txt" 2>/dev/null)"
	grep -q '^lost-workers = 1$' "$out/summary.txt" 2>/dev/null &&
		grep -q '^lost-worker-1 = .*rank 2 at .*last step' "$out/summary.txt" &&
		ok "$1: summary.txt: $(grep '^lost-worker-1' "$out/summary.txt" | cut -c1-90)" ||
		ko "$1: summary.txt does not record the loss"
	awk -F, 'NR > 1 && $1 == 1 && $15 == "lost" && $16 > 0 { f = 1 } NR > 1 && $1 != 1 && $15 != "done" { f = -9 } END { exit f != 1 }' \
		"$out/workers.csv" 2>/dev/null && ok "$1: workers.csv: worker 1 lost, the others done" ||
		ko "$1: workers.csv: $(cut -d, -f1,4,15,16 "$out/workers.csv" 2>/dev/null | tr '\n' ' ')"
	grep -q 'rank 2 (worker 1) was killed by signal 9' "$log" &&
		ok "$1: the launcher names the killed rank" || ko "$1: the launcher does not name rank 2"
	check_outputs "$1"
	check_clean "$1"
}

worker_loss asgd
worker_loss loscar
worker_loss sync
# sharded averaging: worker 1 owns a shard of every round
worker_loss loscar --averaging sharded
worker_loss sync --averaging sharded
worker_loss malenia
worker_loss ringleader

echo "faults: kill -9 of the server"
start server
random_wait
victim=$(rank_pid 0)
t_kill=$(now)
kill -9 "$victim"
wait_exit
took=$(elapsed "$t_kill" "$t_end")
echo "  every rank stopped $took s after the kill"
le "$took" 2.0 && ok "server: the workers stopped within 2 s" || ko "server: the workers took $took s"
[ $rc -ne 0 ] && ok "server: exit $rc" || ko "server: exit 0 after the server died"
n=$(grep -c 'the server (rank 0) failed' "$log")
[ "$n" -eq 4 ] && ok "server: all 4 workers say the server failed" || ko "server: $n workers name the server: $(tail -5 "$log")"
grep -q 'rank 0 was killed by signal 9' "$log" && ok "server: the launcher names rank 0" ||
	ko "server: the launcher does not name rank 0"
check_clean server

# stop_by SIGNAL WHO (launcher or a rank number) STATUS
stop_by() {
	echo "faults: SIG$1 to the $2"
	start "sig-$1"
	random_wait
	if [ "$2" = launcher ]; then target=$launcher; else target=$(rank_pid "${2#rank }"); fi
	t_kill=$(now)
	kill -s "$1" "$target"
	wait_exit
	took=$(elapsed "$t_kill" "$t_end")
	echo "  every rank stopped and the outputs were written $took s after the signal"
	le "$took" 2.0 && ok "$1: stopped within 2 s" || ko "$1: took $took s"
	[ $rc -eq "$3" ] && ok "$1: exit $rc" || ko "$1: exit $rc, expected $3: $(tail -3 "$log")"
	grep -q "^stop-reason = stopped by signal SIG$1\$" "$out/summary.txt" 2>/dev/null &&
		ok "$1: summary.txt: stopped by signal SIG$1" ||
		ko "$1: stop reason $(grep stop-reason "$out/summary.txt" 2>/dev/null)"
	check_outputs "$1"
	check_clean "$1"
}

stop_by TERM launcher 143
stop_by INT "rank 3" 130

# no orphan outlives its launcher: PR_SET_PDEATHSIG turns its death into
# a SIGTERM to every rank, which stops the run with the outputs written
echo "faults: kill -9 of the launcher"
start orphans
random_wait
t_kill=$(now)
kill -9 "$launcher"
wait_exit
i=0
while [ $i -lt 40 ] && pgrep -f -- "--out $out" >/dev/null; do
	sleep 0.05
	i=$((i + 1))
done
took=$(elapsed "$t_kill" "$(now)")
echo "  every rank stopped $took s after the launcher died"
le "$took" 2.0 && ok "orphans: every rank stopped within 2 s" || ko "orphans: ranks still running after $took s"
grep -q "^stop-reason = stopped by signal SIGTERM\$" "$out/summary.txt" 2>/dev/null &&
	ok "orphans: summary.txt: stopped by signal SIGTERM" ||
	ko "orphans: stop reason $(grep stop-reason "$out/summary.txt" 2>/dev/null)"
check_outputs orphans
check_clean orphans

[ $fails -eq 0 ] && echo "faults: PASS" || echo "faults: $fails FAILED"
[ $fails -eq 0 ]
