#!/bin/sh
# Every method trains softmax regression with 4 heterogeneous workers
# (tau_i = c (i + 1)) to the stated test accuracy.
#   algo-methods.sh [--provider shm|verbs] [--synth] [--budget S] [--min-acc A]
# Without --synth the data is Fashion-MNIST; when it is not installed the
# test says SKIP (exit 77) and names the package.
prog="${HETSGD_BUILDDIR:-.}/tests/algo/hetsgd-algo-check"
fail=0
for m in "--method asgd --policy rescaled" \
	 "--method asgd --policy vanilla" \
	 "--method asgd --policy delay-adaptive" \
	 "--method asgd --policy ringmaster" \
	 "--method sync" \
	 "--method malenia" \
	 "--method ringleader" \
	 "--method loscar --merge delay-corrected --k-percent 10" \
	 "--method loscar --merge overwrite --k-percent 10" \
	 "--method loscar --no-overlap --k-percent 10" \
	 "--method loscar --k-percent 100"; do
	# shellcheck disable=SC2086
	"$prog" --scenario fmnist $m "$@"
	rc=$?
	[ $rc -eq 77 ] && exit 77
	[ $rc -ne 0 ] && fail=1
done
exit $fail
