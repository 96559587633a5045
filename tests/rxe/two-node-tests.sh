#!/bin/bash
# The tests of the two-node bed (two-node-bed.sh), one per invocation, run
# on node1 from the build tree; srun reaches node2.
#
#   two-node-tests.sh perftest-bw | perftest-lat     node2 -> node1, perftest
#   two-node-tests.sh bench                          hetsgd-bench node1 <-> node2,
#                                                    with ratios to perftest
#   two-node-tests.sh boot pmix|pmi2|none            srun -N 2 -n 4, every rank
#                                                    exchanges with every other
#   two-node-tests.sh train asgd|loscar              hetsgd-train over verbs
#   two-node-tests.sh sbatch                         apps/hetsgd-multinode.sbatch
#
# Every rank must land on the node Slurm planned and be pinned where
# hetsgd planned (summary.txt's placement lines); a run must train.
set -u
here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
builddir=${HETSGD_BUILDDIR:-$PWD}
tmp=${TMPDIR:?the bed sets TMPDIR to a folder both nodes see}
me=two-node
[ -n "${SLURM_CONF:-}" ] || { echo "$me: SLURM_CONF is not set: run this inside two-node-bed.sh" >&2; exit 1; }
# The TCP rendezvous (srun --mpi=none, hetsgd-bench HOST) admits only
# ranks that know the job's secret.
HETSGD_SECRET=${HETSGD_SECRET:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export HETSGD_SECRET
server_addr=${HETSGD_TEST_ADDR:?the bed sets HETSGD_TEST_ADDR}
fail() { echo "$me: FAIL: $*"; exit 1; }
is_num() { case $1 in ''|*[!0-9.e+-]*) return 1 ;; esac; }
# Run on node2 only, with its own device in the environment (TaskProlog).
on_node2() { srun -N 1 -n 1 -w node2 --quiet "$@"; }

# check_run DIR NRANKS WHAT: a finished training run on both nodes, every
# rank pinned as planned.
check_run() {
	local dir=$1 n=$2 what=$3 sum=$1/summary.txt rows pl bad hosts
	[ -f "$sum" ] || fail "$what: no $sum"
	sed 's/^/  [summary] /' "$sum" | grep -E 'transport|placement|stop-reason|final-|elapsed|updates'
	grep -q '^transport = verbs' "$sum" || fail "$what: transport is not verbs: $(grep '^transport' "$sum")"
	grep -q '^stop-reason = time budget' "$sum" || fail "$what: did not train to its time budget: $(grep '^stop-reason' "$sum")"
	rows=$(awk 'NR > 1' "$dir/metrics.csv" 2>/dev/null | wc -l)
	[ "$rows" -ge 2 ] || fail "$what: metrics.csv has $rows rows"
	is_num "$(sed -n 's/^final-loss = //p' "$sum")" || fail "$what: no final loss"
	is_num "$(sed -n 's/^final-accuracy = //p' "$sum")" || fail "$what: no final accuracy"
	pl=$(grep -c '^placement-rank-[0-9]* = ' "$sum")
	[ "$pl" -eq "$n" ] || fail "$what: $pl of $n ranks reported their placement"
	bad=$(grep '^placement-rank-[0-9]* = ' "$sum" | grep -v ': progress on cpu [0-9]*, compute on cpu' || true)
	[ -z "$bad" ] || fail "$what: not every rank was pinned as planned: $bad"
	hosts=$(sed -n 's/^placement-rank-[0-9]* = \([^:]*\):.*/\1/p' "$sum" | sort -u | tr '\n' ' ')
	[ "$hosts" = "node1 node2 " ] || fail "$what: ranks ran on '$hosts', not on node1 and node2"
	echo "$me: PASS: $what: $rows metrics rows, final loss $(sed -n 's/^final-loss = //p' "$sum"), accuracy $(sed -n 's/^final-accuracy = //p' "$sum"), $n ranks pinned on node1 and node2"
}

case ${1:-} in
perftest-bw|perftest-lat)
	. "$srcdir/tests/rdma/perftest-lib.sh"
	PERFTEST_REMOTE=on_node2
	echo "$me: server on $(hostname) ($dev, $addr), client on node2 (its own device)"
	if [ "$1" = perftest-bw ]; then
		v=$(perftest_value bw 18515 65536 -n "${HETSGD_2NODE_BW_ITERS:-500}") || fail "ib_write_bw between the nodes"
		echo "$me: ib_write_bw 65536 B node2 -> node1: $v MB/s"
		echo "$v" > "$tmp/perftest-bw"
	else
		v=$(perftest_value lat 18516 8 -n "${HETSGD_2NODE_LAT_ITERS:-1000}") || fail "ib_write_lat between the nodes"
		echo "$me: ib_write_lat 8 B node1 <-> node2: $v us typical"
		echo "$v" > "$tmp/perftest-lat"
	fi
	;;
bench)
	# perftest style: the server (no HOST; rank 0, the sender) on node1,
	# the client on node2; bandwidth and latency in two sessions, as
	# ib_write_bw and ib_write_lat.
	bench=$builddir/apps/hetsgd-bench
	pair() { # pair NAME PORT ARGS...: prints the server's CSV row
		local name=$1 port=$2 spid src crc; shift 2
		"$bench" -d "$HETSGD_RDMA_DEV" -x "$HETSGD_GID_INDEX" -p "$port" --csv "$@" --server \
			>"$tmp/$name.server" 2>&1 &
		spid=$!
		sleep 1
		on_node2 sh -c 'exec "$0" -d "$HETSGD_RDMA_DEV" -x "$HETSGD_GID_INDEX" "$@"' \
			"$bench" -p "$port" --csv "$@" "$server_addr" >"$tmp/$name.client" 2>&1
		crc=$?
		[ $crc -eq 0 ] || kill $spid 2>/dev/null
		wait $spid; src=$?
		sed "s/^/  [$name server node1] /" "$tmp/$name.server" >&2
		sed "s/^/  [$name client node2] /" "$tmp/$name.client" >&2
		[ $src -eq 0 ] && [ $crc -eq 0 ] || { echo "$me: hetsgd-bench $name: server exit $src, client exit $crc" >&2; return 1; }
		cat "$tmp/$name.server"
	}
	pair bw 18517 --only bw -s 65536 -n "${HETSGD_2NODE_BW_ITERS:-500}" >"$tmp/bench-bw.csv" ||
		fail "hetsgd-bench bandwidth between the nodes"
	pair lat 18518 --only lat -s 8 -n "${HETSGD_2NODE_LAT_ITERS:-1000}" >"$tmp/bench-lat.csv" ||
		fail "hetsgd-bench latency between the nodes"
	bw=$(awk -F, '$2 == 65536 { print $3 }' "$tmp/bench-bw.csv")
	lat=$(awk -F, '$2 == 8 { print $4 }' "$tmp/bench-lat.csv")
	is_num "$bw" && is_num "$lat" || fail "hetsgd-bench printed no numbers (bw '$bw', latency '$lat')"
	# perftest from this boot; measured again if its own test did not run
	ref_bw=$(cat "$tmp/perftest-bw" 2>/dev/null) || ref_bw=
	ref_lat=$(cat "$tmp/perftest-lat" 2>/dev/null) || ref_lat=
	if ! is_num "$ref_bw" || ! is_num "$ref_lat"; then
		. "$srcdir/tests/rdma/perftest-lib.sh"
		PERFTEST_REMOTE=on_node2
		ref_bw=$(perftest_value bw 18515 65536 -n "${HETSGD_2NODE_BW_ITERS:-500}" 2>/dev/null) || fail "ib_write_bw"
		ref_lat=$(perftest_value lat 18516 8 -n "${HETSGD_2NODE_LAT_ITERS:-1000}" 2>/dev/null) || fail "ib_write_lat"
	fi
	echo "$me: hetsgd-bench vs perftest between node1 and node2, same boot (MB = 2^20 bytes)"
	awk -v a="$bw" -v b="$ref_bw" -v c="$lat" -v d="$ref_lat" 'BEGIN {
		printf "  %-22s %12s %12s %7s\n", "", "hetsgd", "perftest", "ratio"
		printf "  %-22s %12.2f %12.2f %7.2f\n", "64 KiB bw (MB/s)", a, b, a / b
		printf "  %-22s %12.2f %12.2f %7.2f\n", "8 B latency (us)", c, d, c / d }'
	;;
boot)
	mpi=${2:?boot needs pmix, pmi2 or none}
	case $mpi in none) kind=tcp ;; *) kind=$mpi ;; esac
	out=$(timeout 300 srun -N 2 -n 4 --mpi="$mpi" "$builddir/tests/slurm/hetsgd-boot-check" "$kind" 4 2>&1)
	rc=$?
	echo "$out" | sed "s/^/  [$mpi] /"
	got=$(echo "$out" | grep -c "^boot-check: $kind rank [0-3] of 4 .*all verified$")
	hosts=$(echo "$out" | sed -n "s/^boot-check: $kind rank [0-3] of 4 on \([^:]*\):.*/\1/p" | sort -u | tr '\n' ' ')
	[ $rc -eq 0 ] && [ "$got" -eq 4 ] || fail "srun -N 2 -n 4 --mpi=$mpi: exit $rc, $got of 4 ranks verified"
	[ "$hosts" = "node1 node2 " ] || fail "srun -N 2 -n 4 --mpi=$mpi: ranks ran on '$hosts'"
	echo "$me: PASS: srun -N 2 -n 4 --mpi=$mpi ($kind): 4 ranks on node1 and node2 exchanged and verified"
	;;
train)
	m=${2:?train needs asgd or loscar}
	dir=$tmp/train-$m
	rm -rf "$dir"
	# 2 tasks per node x (1 compute + 1 progress thread) = the 4 CPUs of each
	timeout 600 srun -N 2 -n 4 -c 2 --cpu-bind=cores --mpi=pmix "$builddir/apps/hetsgd-train" \
		--provider verbs --method "$m" --threads 1 --data synth --synth-n 4000 --time 5 \
		--no-plots --progress plain --out "$dir" 2>&1 | tail -n 15 | sed "s/^/  [$m] /"
	rc=${PIPESTATUS[0]}
	[ "$rc" -eq 0 ] || fail "srun hetsgd-train --method $m exited $rc"
	check_run "$dir" 4 "hetsgd-train --method $m over verbs on 2 nodes"
	;;
sbatch)
	dir=$tmp/sbatch-run
	rm -rf "$dir"
	( cd "$builddir" && HETSGD_TIME=5 HETSGD_OUT="$dir" HETSGD_THREADS=1 HETSGD_DATA=synth \
		HETSGD_TRAIN_ARGS="--synth-n 4000 --no-plots" \
		timeout 600 sbatch --wait --nodes=2 --ntasks-per-node=2 --cpus-per-task=2 \
		--output="$tmp/sbatch.out" --export=ALL "$srcdir/apps/hetsgd-multinode.sbatch" ) 2>&1 | sed 's/^/  [sbatch] /'
	rc=${PIPESTATUS[0]}
	tail -n 12 "$tmp/sbatch.out" 2>/dev/null | sed 's/^/  [job] /'
	[ "$rc" -eq 0 ] || fail "sbatch --wait apps/hetsgd-multinode.sbatch exited $rc"
	check_run "$dir" 4 "sbatch apps/hetsgd-multinode.sbatch on 2 nodes"
	;;
*)
	echo "usage: two-node-tests.sh perftest-bw|perftest-lat|bench|boot MPI|train METHOD|sbatch" >&2
	exit 2 ;;
esac
