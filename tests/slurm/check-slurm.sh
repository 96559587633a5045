#!/bin/bash
# Slurm test: start a private single-node Slurm, run hetsgd-boot-check with
# srun -n 4 under --mpi=pmix, --mpi=pmi2 and --mpi=none (the TCP rendezvous:
# rank and size from SLURM_PROCID/SLURM_NTASKS, rank 0 on the first node,
# admission by HETSGD_SECRET); each rank exchanges a value with every other
# rank; check that every rank reported, stop the daemons.  Fails, never skips,
# when Slurm or a PMI flavour is missing: this is the test of that path.
# Then the README's srun example trains on it, so does the one-node batch
# script, ranks started with different configurations must refuse to
# train, a checkpointed run resumes under another launcher, and a worker
# killed with kill -9 costs the job that worker only (slurm-faults.sh,
# under each bootstrap).
set -u
here=$(cd "$(dirname "$0")" && pwd)
builddir=${HETSGD_BUILDDIR:-$PWD}
prog=$builddir/tests/slurm/hetsgd-boot-check
ntasks=${HETSGD_SLURM_NTASKS:-4}
[ -x "$prog" ] || { echo "check-slurm: $prog not built: run make check-slurm from the build tree" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "check-slurm: must run as root (private slurmd and munged); rerun with sudo" >&2; exit 1; }

bed=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-slurm.XXXXXX")
rmdir "$bed"
trap 'bash "$here/slurm-bed.sh" stop "$bed" >/dev/null 2>&1; rm -rf "$bed"' EXIT
bash "$here/slurm-bed.sh" start "$bed" || { echo "check-slurm: FAIL: could not start the private Slurm" >&2; exit 1; }
# shellcheck disable=SC1091
. "$bed/env"

pass=0 fail=0
echo "check-slurm: srun --mpi=list:"; srun --mpi=list 2>&1 | sed 's/^/  /'
# The TCP rendezvous admits only ranks that know the job's secret; srun
# passes the environment on to every rank.
HETSGD_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export HETSGD_SECRET
# Each flavour once by name and once found by the auto-detection; with
# --mpi=none the bootstrap (and the name the ranks print) is tcp.
for run in pmix:pmix pmi2:pmi2 pmix:auto pmi2:auto none:tcp none:auto; do
	mpi=${run%%:*} kind=${run#*:}
	case $mpi in none) name=tcp ;; *) name=$mpi ;; esac
	out=$(timeout 120 srun -n "$ntasks" --mpi="$mpi" "$prog" "$kind" "$ntasks" 2>&1)
	rc=$?
	echo "$out" | sed "s/^/  [$mpi\/$kind] /"
	got=$(echo "$out" | grep -c "^boot-check: $name rank [0-9]* of $ntasks .*all verified$")
	ranks=$(echo "$out" | sed -n "s/^boot-check: $name rank \([0-9]*\) of .*/\1/p" | sort -n | uniq | tr '\n' ' ')
	ranks=${ranks% }
	want=$(seq 0 $((ntasks - 1)) | tr '\n' ' '); want=${want% }
	if [ $rc -eq 0 ] && [ "$got" -eq "$ntasks" ] && [ "$ranks" = "$want" ]; then
		echo "PASS: srun -n $ntasks --mpi=$mpi, bootstrap $kind: ranks $ranks exchanged and verified"
		pass=$((pass + 1))
	else
		echo "FAIL: srun -n $ntasks --mpi=$mpi, bootstrap $kind: exit $rc, $got of $ntasks ranks verified (ranks seen: $ranks)"
		fail=$((fail + 1))
	fi
done

# The README's srun example, exactly as the README gives it (the line after
# the slurm-example marker), from the build tree: it must finish training.
readme=$here/../../README.md
cmd=$(sed -n '/<!-- slurm-example/,/srun -n/p' "$readme" | grep 'srun -n' | sed 's/^[[:space:]]*//')
if [ -z "$cmd" ]; then
	echo "FAIL: README.md has no srun example after a <!-- slurm-example --> marker"
	fail=$((fail + 1))
else
	outdir=$(echo "$cmd" | sed -n 's/.*--out \([^ ]*\).*/\1/p')
	echo "check-slurm: README example: $cmd"
	out=$(cd "$builddir" && timeout 300 $cmd 2>&1)
	rc=$?
	echo "$out" | tail -n 8 | sed 's/^/  [readme] /'
	sum=$builddir/$outdir/summary.txt
	nw=$(awk -F, 'NR > 1 && $4 > 0' "$builddir/$outdir/workers.csv" 2>/dev/null | wc -l)
	if [ $rc -eq 0 ] && grep -q '^stop-reason = time budget' "$sum" 2>/dev/null &&
	   [ "$nw" -eq $((ntasks - 1)) ] && [ -s "$builddir/$outdir/model.bin" ]; then
		echo "PASS: the README's srun example trained to its time budget: $nw workers stepped, $(grep '^final-accuracy' "$sum")"
		pass=$((pass + 1))
	else
		echo "FAIL: the README's srun example: exit $rc, $nw of $((ntasks - 1)) workers stepped, summary: $(grep -c . "$sum" 2>/dev/null || echo missing)"
		fail=$((fail + 1))
	fi
fi

# The one-node batch script, as a user submits it (with a short budget and
# no more CPUs than the private node has).
sb=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-sbatch.XXXXXX")
out=$(cd "$builddir" && HETSGD_TIME=5 HETSGD_OUT="$sb/run" timeout 300 sbatch --wait --ntasks=4 --cpus-per-task=2 \
	--output="$sb/job.out" --export=ALL "$here/../../apps/hetsgd-1node.sbatch" 2>&1)
rc=$?
if [ $rc -eq 0 ] && grep -q '^stop-reason = time budget' "$sb/run/summary.txt" 2>/dev/null; then
	echo "PASS: sbatch apps/hetsgd-1node.sbatch trained: $(grep '^final-accuracy' "$sb/run/summary.txt")"
	pass=$((pass + 1))
else
	echo "$out" | sed 's/^/  [sbatch] /'
	tail -n 8 "$sb/job.out" 2>/dev/null | sed 's/^/  [sbatch job] /'
	echo "FAIL: sbatch apps/hetsgd-1node.sbatch: exit $rc"
	fail=$((fail + 1))
fi
rm -rf "$sb"

# Ranks started with different configurations must refuse to train.
mis=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-mismatch.XXXXXX")
out=$(cd "$builddir" && timeout 120 srun -n 3 --mpi=pmix bash -c \
	'exec apps/hetsgd-train --data synth --time 5 --progress none --no-plots --out "$0" --seed $((1 + SLURM_PROCID))' "$mis" 2>&1)
rc=$?
rm -rf "$mis"
if [ $rc -ne 0 ] && echo "$out" | grep -q 'runs a different configuration than rank 0'; then
	echo "PASS: ranks with different configurations refused to train: $(echo "$out" | grep -m1 'different configuration' | cut -c1-160)"
	pass=$((pass + 1))
else
	echo "$out" | tail -n 5 | sed 's/^/  [mismatch] /'
	echo "FAIL: ranks with different seeds were not refused (exit $rc)"
	fail=$((fail + 1))
fi

# shm between hosts cannot work: a rank on "another host" (its own UTS
# namespace with another hostname) must make every rank refuse, by name.
hosts=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-hosts.XXXXXX")
out=$(cd "$builddir" && timeout 120 srun -n 3 --mpi=pmix bash -c \
	'args="--data synth --time 5 --progress none --no-plots --provider shm --out $0"
	 if [ "$SLURM_PROCID" = 2 ]; then exec unshare --uts sh -c "hostname hetsgd-elsewhere && exec apps/hetsgd-train $args"; fi
	 exec apps/hetsgd-train $args' "$hosts" 2>&1)
rc=$?
rm -rf "$hosts"
if [ $rc -ne 0 ] && echo "$out" | grep -q 'needs every rank on one host; rank 2 runs on hetsgd-elsewhere'; then
	echo "PASS: shm across hosts refused: $(echo "$out" | grep -m1 'one host' | cut -c1-160)"
	pass=$((pass + 1))
else
	echo "$out" | tail -n 5 | sed 's/^/  [hosts] /'
	echo "FAIL: ranks on two hosts with --provider shm were not refused (exit $rc)"
	fail=$((fail + 1))
fi
# A sharded parameter server under srun: 5 tasks with --servers 2 are
# rank 0, 3 workers and one shard server (rank 4); 2 tasks are refused.
ps=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-servers.XXXXXX")
out=$(cd "$builddir" && timeout 120 srun -n 5 --mpi=pmix apps/hetsgd-train --data synth --synth-n 4000 \
	--method asgd --servers 2 --time 3 --progress none --no-plots --out "$ps/a" 2>&1)
rc=$?
if [ $rc -eq 0 ] && grep -q '^workers = 3$' "$ps/a/summary.txt" &&
   grep -q '^server-shard-1 = rank 4, ' "$ps/a/summary.txt"; then
	echo "PASS: srun -n 5 --servers 2: 3 workers and shard server rank 4 trained: $(grep '^server-shard-1' "$ps/a/summary.txt" | cut -c1-100)"
	pass=$((pass + 1))
else
	echo "$out" | tail -n 5 | sed 's/^/  [servers] /'
	echo "FAIL: srun -n 5 --servers 2: exit $rc, $(grep -E '^(workers|server-shard-1) = ' "$ps/a/summary.txt" 2>/dev/null | tr '\n' ' ')"
	fail=$((fail + 1))
fi
out=$(cd "$builddir" && timeout 120 srun -n 2 --mpi=pmix apps/hetsgd-train --data synth --method asgd \
	--servers 2 --time 3 --progress none --no-plots --out "$ps/b" 2>&1)
rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q 'needs more than 2 tasks'; then
	echo "PASS: srun -n 2 --servers 2 refused: $(echo "$out" | grep -m1 'needs more than' | cut -c1-120)"
	pass=$((pass + 1))
else
	echo "$out" | tail -n 5 | sed 's/^/  [servers] /'
	echo "FAIL: srun -n 2 --servers 2 was not refused with exit 2 (exit $rc)"
	fail=$((fail + 1))
fi
rm -rf "$ps"
# A checkpointed run goes on under another launcher: a local run stopped
# by SIGTERM resumes under srun (every rank reads the checkpoint), and an
# srun run whose step is cancelled resumes locally.
rs=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-resume.XXXXXX")
args="--data synth --synth-n 4000 --time 6 --progress none --no-plots --provider shm --checkpoint-every 0.5"
(cd "$builddir" && exec apps/hetsgd-train $args --workers 2 --method loscar --out "$rs/a" > "$rs/a.log" 2>&1) &
lp=$!
sleep 2.5
pkill -TERM -f -- "--out $rs/a" 2>/dev/null
wait $lp
# resumed WHAT DIR RC: the resumed run reached its budget from a checkpoint
resumed() {
	if [ "$3" -eq 0 ] && grep -q '^stop-reason = time budget' "$2/summary.txt" &&
	   grep -q '^resumed-from = ' "$2/summary.txt"; then
		echo "PASS: $1 to its budget: $(grep '^resumed-from' "$2/summary.txt")"
		pass=$((pass + 1))
	else
		echo "$out" | tail -n 5 | sed 's/^/  [resumed] /'
		tail -n 3 "$2.log" | sed 's/^/  [first run] /'
		echo "FAIL: $1: exit $3"
		fail=$((fail + 1))
	fi
}
out=$(cd "$builddir" && timeout 120 srun -n 3 --mpi=pmix apps/hetsgd-train --resume "$rs/a" --progress none --no-plots 2>&1)
resumed "a local run stopped by SIGTERM resumed under srun --mpi=pmix" "$rs/a" $?
(cd "$builddir" && exec timeout 120 srun -n 3 --mpi=pmi2 apps/hetsgd-train $args --method asgd --out "$rs/b" > "$rs/b.log" 2>&1) &
sp=$!
sleep 3
scancel --signal=KILL --full "$(squeue -h -o %i | head -n 1)" 2>/dev/null || pkill -9 -f -- "--out $rs/b"
wait $sp
out=$(cd "$builddir" && timeout 120 apps/hetsgd-train --resume "$rs/b" --progress none --no-plots 2>&1)
resumed "an srun run killed with scancel -s KILL resumed locally" "$rs/b" $?
rm -rf "$rs"

# A worker killed with kill -9 under each bootstrap, ASGD and LOSCAR: the
# survivors finish at their budget with every output (slurm-faults.sh).
out=$(bash "$here/slurm-faults.sh" 2>&1)
echo "$out"
fp=$(echo "$out" | grep -c '^PASS: ')
ff=$(echo "$out" | grep -c '^FAIL: ')
[ "$fp" -gt 0 ] || { echo "FAIL: slurm-faults.sh ran no case"; ff=$((ff + 1)); }
pass=$((pass + fp)) fail=$((fail + ff))
echo "check-slurm: $pass passed, $fail failed"
[ $fail -eq 0 ]
