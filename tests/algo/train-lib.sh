# Shared by the bash tests that run hetsgd-train and read its outputs
# (resume.sh, servers.sh; sourced).  The caller sets prog (hetsgd-train),
# tmp (its folder) and common (an array of options every run gets).
#   ok, ko        one line per assertion; ko counts $fails
#   val DIR KEY   a value of DIR/summary.txt
#   values DIR    model.bin's values, without its 64-byte header (whose
#                 hash names the launch)
#   near A B F    is A within a factor F of B?
#   bg NAME ARGS  a run in its own process group ($pg), outputs in
#                 $tmp/NAME, log in $tmp/NAME.log
#   refuse WHAT WANT ARGS   hetsgd-train ARGS exits 2 saying WANT
fails=0
pg=
trap '[ -n "$pg" ] && kill -9 -- -"$pg" 2>/dev/null; rm -rf "$tmp"' EXIT

ok() { echo "  ok: $*"; }
ko() { echo "  FAIL: $*"; fails=$((fails + 1)); }
val() { sed -n "s/^$2 = //p" "$1/summary.txt" | head -n 1; }
values() { tail -c +65 "$1/model.bin"; }
near() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { exit !(a > 0 && b > 0 && a <= b * f && b <= a * f) }'; }

bg() {
	local name=$1
	shift
	setsid "$prog" "${common[@]}" --out "$tmp/$name" "$@" >"$tmp/$name.log" 2>&1 &
	pg=$!
}

refuse() {
	local what=$1 want=$2
	shift 2
	"$prog" "$@" >"$tmp/refuse.log" 2>&1
	rc=$?
	if [ "$rc" -eq 2 ] && grep -q -- "$want" "$tmp/refuse.log"; then
		ok "$what: exit 2, says \"$want\""
	else
		ko "$what: exit $rc: $(cat "$tmp/refuse.log")"
	fi
}
