#!/bin/sh
# Faults survived, nothing lost (issue #12), over shm with the local
# launcher and hetsgd-train (in make check, and alone as make
# check-faults); each fault at a random moment in [1, 3] s of a 6 s run:
#   - kill -9 of a worker (asgd, loscar, sync, malenia, ringleader; loscar
#     and sync with sharded averaging, where it owns a shard): the run
#     ends at its budget with exit 0, updates go on after the loss,
#     summary.txt and workers.csv name the lost worker, model.bin is
#     written, the server noticed within 2 s;
#   - kill -9 of the server: the workers stop within 2 s, exit non-zero,
#     and say that the server failed;
#   - SIGTERM and SIGINT, each to the launcher, to a rank (the server for
#     SIGTERM, a worker for SIGINT) and to the whole process group (as
#     Ctrl-C and scancel do): every rank stops within 2 s, every output
#     is written with "stopped by signal", exit 143 / 130;
#   - kill -9 of the launcher: no rank outlives it by 2 s, and the
#     outputs are written (each rank got SIGTERM from PR_SET_PDEATHSIG);
#   - kill -9 of every process of a run with --checkpoint-every, then
#     --resume: it ends at its budget, exit 0, every output complete;
#   - a full disk (the output folder on a 1 MiB tmpfs, filled at the
#     moment): exit 1 within 2 s naming the file, nothing half-written
#     under a final name, summary.txt says failed (skipped, and the
#     script exits 77 once all else passed, where mounting is refused);
# and after each case no process of the run and no /dev/shm/hetsgd-*
# segment of it is left, and the outputs are complete and consistent.
# The kinds are the table in faults-lib.sh, shared with soak-faults.sh.
set -u
# --provider verbs runs the same cases over a real device (the soft-RoCE bed)
provider=shm
[ "${1:-}" = --provider ] && provider=$2
builddir="${HETSGD_BUILDDIR:-.}"
prog="$builddir/apps/hetsgd-train"
srcdir=$(cd "$(dirname "$0")" && pwd)
[ -x "$prog" ] || { echo "faults: $prog not built"; exit 99; }
[ -d /dev/shm ] || { echo "faults: SKIP: no /dev/shm"; exit 77; }
command -v setsid >/dev/null || { echo "faults: setsid not found: apt-get install util-linux"; exit 99; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-faults.XXXXXX")
budget=6
# shellcheck source=faults-lib.sh
. "$srcdir/faults-lib.sh"
trap faults_cleanup EXIT

# a random moment in [1, 3] s
random_at() {
	at=$(awk -v s="$(od -An -N2 -tu2 /dev/urandom)" 'BEGIN { printf "%.2f", 1 + 2 * (s % 1000) / 999 }')
}

# with sharded averaging, worker 1 owns a shard of every round
for m in asgd loscar sync malenia ringleader "loscar --averaging sharded" "sync --averaging sharded"; do
	random_at
	# shellcheck disable=SC2086
	fault_kill9_worker $m
done
for kind in kill9_server term_launcher int_launcher term_rank int_rank term_group int_group kill9_launcher full_disk ckpt_resume; do
	random_at
	"fault_$kind" asgd
done

echo "faults: $fails failed, $hung hung, $lost lost outputs, $skipped skipped"
[ $fails -eq 0 ] || exit 1
[ $skipped -eq 0 ] || exit 77
echo "faults: PASS"
