#!/bin/sh
# make soak-faults (issue #12): SOAK_FAULTS random faults (default 100),
# each in its own hetsgd-train run over shm with the local launcher:
# a kind drawn from the table in faults-lib.sh (kill -9 of a worker, the
# server or the launcher; SIGTERM or SIGINT to the launcher, a random
# rank or the whole process group; a full disk), a method drawn from
# asgd, loscar, sync, malenia and ringleader, at a random moment of a
# SOAK_TIME-second run (default 3).  Each run gets the same assertions as
# in make check (faults.sh); a run still alive 20 s past its budget is
# hung (killed).  The closing line counts faults injected, runs that
# hung and runs that lost outputs (targets: 0 and 0); exit 1 when any run
# hung, lost outputs or failed an assertion.  SOAK_SEED makes the draw
# repeatable.  Not part of make check: about 10 minutes on 2 cores.
set -u
builddir="${HETSGD_BUILDDIR:-.}"
prog="$builddir/apps/hetsgd-train"
srcdir=$(cd "$(dirname "$0")" && pwd)
provider=shm
[ -x "$prog" ] || { echo "soak-faults: $prog not built"; exit 99; }
command -v setsid >/dev/null || { echo "soak-faults: setsid not found: apt-get install util-linux"; exit 99; }
nfaults=${SOAK_FAULTS:-100}
budget=${SOAK_TIME:-3}
seed=${SOAK_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-soak.XXXXXX")
# shellcheck source=faults-lib.sh
. "$srcdir/faults-lib.sh"
trap faults_cleanup EXIT
methods="asgd loscar sync malenia ringleader"
nkinds=$(echo $fault_kinds | wc -w)

# the draws, from the seed: the kinds in a fresh random order for every
# block of as many runs as there are kinds (so each comes about as often),
# a random method, moment and rank for each
draws=$tmp/draws
awk -v seed="$seed" -v n="$nfaults" -v k="$nkinds" -v b="$budget" 'BEGIN {
	srand(seed)
	for (i = 0; i < n; i++) {
		if (i % k == 0) {
			for (j = 1; j <= k; j++)
				perm[j] = j
			for (j = k; j > 1; j--) {
				r = int(rand() * j) + 1
				t = perm[j]; perm[j] = perm[r]; perm[r] = t
			}
		}
		printf "%d %d %.2f %d\n", perm[i % k + 1], int(rand() * 5) + 1,
		       0.3 + rand() * (b - 0.8), int(rand() * 5)
	}
}' > "$draws"

echo "soak-faults: $nfaults faults, $budget s runs, seed $seed (SOAK_SEED=$seed repeats this draw)"
t0=$(now)
run=0
failed_runs=0
counts=
# the draws come on fd 3: nothing a run starts can read them
while read -r ki mi at sig_rank <&3; do
	run=$((run + 1))
	kind=$(echo $fault_kinds | cut -d' ' -f"$ki")
	method=$(echo $methods | cut -d' ' -f"$mi")
	before=$fails
	echo "soak-faults: [$run/$nfaults] $kind, $method, at $at s"
	"fault_$kind" "$method"
	[ $fails -eq "$before" ] || failed_runs=$((failed_runs + 1))
	counts="$counts $kind"
	rm -rf "${tmp:?}"/lost-* "${tmp:?}"/server-* "${tmp:?}"/orphans-* "${tmp:?}"/sig-*
done 3< "$draws"

echo "soak-faults: by kind:$(for k in $fault_kinds; do printf ' %s %d' "$k" "$(echo $counts | tr ' ' '\n' | grep -cx "$k")"; done)"
echo "soak-faults: $run faults injected, $hung runs hung, $lost runs lost outputs, $failed_runs runs failed an assertion ($fails assertions), $skipped skipped; $(elapsed "$t0" "$(now)") s"
[ $hung -eq 0 ] && [ $lost -eq 0 ] && [ $fails -eq 0 ]
