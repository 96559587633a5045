#!/bin/bash
# Every test the README promises, in order, with one closing summary line:
#   1. make check        unit tests (Criterion, TAP) and device tests that
#                        SKIP visibly here when no RDMA device exists
#   2. check-sanitizers  unit tests again under ASan + UBSan (as a distcheck)
#   3. check-rdma        the RDMA tests on real soft-RoCE (qemu if needed)
#   4. check-slurm       srun with PMIx, PMI2 and the TCP rendezvous, and
#                        training with srun and sbatch, on a private Slurm
#   5. check-2node       two qemu guests with their own kernels and rxe
#                        devices on one wire, Slurm across both: perftest,
#                        hetsgd-bench, srun -N 2 and sbatch between them
# Every stage runs even when an earlier one failed, so one CI log shows all.
set -u
make=${1:-make}
pass=0 fail=0 skip=0 failed_stages=() times=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() { grep -cE "^$1: " "$log" || true; }

stage() {
	local name=$1 rc t0=$SECONDS; shift
	echo "===== check-all: $name"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	times+=("$name $((SECONDS - t0)) s")
	local p f s
	case $name in
	check|check-sanitizers)
		# automake's per-test lines (the TAP driver prints one per Criterion test)
		p=$(count PASS); f=$(( $(count FAIL) + $(count ERROR) + $(count XPASS) )); s=$(count SKIP) ;;
	*)
		# the bed's and the Slurm script's own closing line: one count per
		# test command, not per assertion the tests print inside
		local who
		case $name in
		check-rdma) who=rxe-bed ;;
		check-2node) who=two-node-bed ;;
		*) who=check-slurm ;;
		esac
		p=$(sed -n "s/^$who: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p" "$log" | tail -n 1)
		f=$(sed -n "s/^$who: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p" "$log" | tail -n 1)
		p=${p:-0} f=${f:-0} s=0 ;;
	esac
	# A stage that failed without naming a failing test still counts once.
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	if [ "$rc" -eq 0 ] && [ "$p" -eq 0 ]; then
		echo "check-all: $name ran no test"; f=$((f + 1))
	fi
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
	[ "$rc" -eq 0 ] && [ "$f" -eq 0 ] || failed_stages+=("$name")
	echo "===== check-all: $name: $p passed, $f failed, $s skipped"
}

# the test programs built on 2 cores, then the tests one at a time
stage check bash -c "$make -j2 check TESTS= && $make check"
stage check-sanitizers $make check-sanitizers
stage check-rdma $make check-rdma
stage check-slurm $make check-slurm
stage check-2node $make check-2node

if [ ${#failed_stages[@]} -gt 0 ]; then
	echo "check-all: failed stages: ${failed_stages[*]}"
fi
echo "check-all: stage times: $(IFS=,; echo "${times[*]}" | sed 's/,/, /g'); $SECONDS s in all"
echo "check-all: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ ${#failed_stages[@]} -eq 0 ]
