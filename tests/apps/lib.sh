# Shared by the shell tests of tests/apps (sourced): PASS/FAIL lines, a
# count of failures, and a temporary folder removed on exit.
#   . "$(dirname "$0")/lib.sh"; test_tmp NAME   ->  $tmp, $fails, ok, ko, expect
# End with test_end: exit 1 when anything failed.
fails=0
ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect OK-MESSAGE FAIL-MESSAGE COMMAND...: PASS or FAIL on the command
expect() {
	m1=$1 m2=$2
	shift 2
	if "$@"; then ok "$m1"; else ko "$m2"; fi
}
# test_tmp NAME: $tmp, a new folder under $TMPDIR, removed when the test exits
test_tmp() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-$1.XXXXXX") || { echo "FAIL: mktemp"; exit 1; }
	trap 'rm -rf "$tmp"' EXIT
}
test_end() {
	[ "$fails" -eq 0 ] || { echo "$(basename "$0"): $fails failures"; exit 1; }
	exit 0
}
