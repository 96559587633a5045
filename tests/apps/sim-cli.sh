#!/bin/bash
# hetsgd-sim as a user runs it: hetsgd-train's outputs with the same
# metrics.csv header, summary.txt saying what was simulated (and that a
# --model-bytes run is a proxy), a deterministic run (same options, same
# files), a thousand workers in seconds, and the refusals with exit 2 and
# a sentence: options that need a real run, a bad network option,
# sharded ASGD, a profile without a time unit.
set -u
b=${HETSGD_BUILDDIR:-.}
b=$(cd "$b" && pwd)
sim=$b/apps/hetsgd-sim
train=$b/apps/hetsgd-train
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-sim-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }

q=(--objective quad --dim 20 --workers 3 --time 2 --progress none --no-plots)
if "$sim" "${q[@]}" --method loscar --k-fraction 0.5 --comm-delay 0.01 --out "$tmp/a" >"$tmp/a.out" 2>&1; then
	ok "loscar simulated: $(tail -n 2 "$tmp/a.out" | head -n 1)"
else
	ko "loscar simulation failed: $(cat "$tmp/a.out")"
fi
for f in metrics.csv workers.csv model.bin summary.txt; do
	[ -s "$tmp/a/$f" ] && ok "$f written" || ko "$f missing"
done
grep -q '^simulated = yes$' "$tmp/a/summary.txt" && grep -q '^stop-reason = time budget$' "$tmp/a/summary.txt" &&
	ok "summary.txt: simulated, time budget" || ko "summary.txt lacks 'simulated = yes' or the stop reason"
"$train" "${q[@]}" --time 0.3 --out "$tmp/real" >/dev/null 2>&1
if [ "$(head -n 1 "$tmp/a/metrics.csv")" = "$(head -n 1 "$tmp/real/metrics.csv")" ]; then
	ok "metrics.csv has hetsgd-train's header"
else
	ko "metrics.csv header differs: '$(head -n 1 "$tmp/a/metrics.csv")' vs '$(head -n 1 "$tmp/real/metrics.csv")'"
fi
last=$(tail -n 1 "$tmp/a/metrics.csv" | cut -d, -f1)
[ "$last" = 2.000 ] && ok "the final point is at the simulated budget" || ko "final point at '$last', not 2.000"
"$sim" "${q[@]}" --method loscar --k-fraction 0.5 --comm-delay 0.01 --out "$tmp/b" >/dev/null 2>&1
cmp -s "$tmp/a/metrics.csv" "$tmp/b/metrics.csv" && cmp -s "$tmp/a/model.bin" "$tmp/b/model.bin" &&
	ok "the same options give the same metrics.csv and model.bin" || ko "two identical simulations differ"

# --round-steps: rounds of 4 local steps, no overlap: each worker's steps
# are 4 x its rounds plus the steps of the round it was in (0 .. 4)
if "$sim" "${q[@]}" --method loscar --k-fraction 0.5 --round-steps 4 --overlap no --out "$tmp/rs" >"$tmp/rs.out" 2>&1 &&
	awk -F, 'NR > 1 { n++; if (!($5 > 0 && $4 - 4 * $5 >= 0 && $4 - 4 * $5 <= 4)) bad++ }
		END { exit !(n == 3 && !bad) }' "$tmp/rs/workers.csv"; then
	ok "--round-steps 4: steps = 4 x rounds (+ the open round) for every worker"
else
	ko "--round-steps 4: $(cat "$tmp/rs.out") $(cat "$tmp/rs/workers.csv" 2>/dev/null)"
fi

start=$(date +%s)
if "$sim" --objective quad --dim 20 --workers 1024 --profile sqrt --time 5 --gamma 1e-4 --model-bytes 4e8 \
	--bandwidth 10 --progress none --no-plots --out "$tmp/big" >"$tmp/big.out" 2>&1; then
	el=$(($(date +%s) - start))
	grep -q 'a proxy' "$tmp/big.out" && grep -q '^sim-proxy = ' "$tmp/big/summary.txt" &&
		ok "1024 workers in ${el} s, the proxy said on stdout and in summary.txt" ||
		ko "a --model-bytes run does not say it is a proxy"
else
	ko "1024 workers failed: $(cat "$tmp/big.out")"
fi

refuse() {
	local want=$1; shift
	"$sim" "$@" --out "$tmp/r" >"$tmp/r.out" 2>&1; local rc=$?
	if [ $rc -eq 2 ] && grep -q -- "$want" "$tmp/r.out"; then
		ok "refused ($*): $(head -n 1 "$tmp/r.out")"
	else
		ko "($*) exit $rc, '$(head -n 1 "$tmp/r.out")' (want 2 and '$want')"
	fi
}
refuse "has no meaning in a simulation" "${q[@]}" --provider shm
refuse "has no meaning in a simulation" "${q[@]}" --resume "$tmp/x.hck"
refuse "use a number in" "${q[@]}" --bandwidth -1
refuse "use auto, server or sharded" "${q[@]}" --averaging ring
refuse "averaging applies to --method loscar or sync" "${q[@]}" --averaging sharded
refuse "time unit > 0" "${q[@]}" --time-unit 0
refuse "round-steps applies to --method loscar" "${q[@]}" --method sync --round-steps 4
[ ! -e "$tmp/r/summary.txt" ] && ok "a refused run wrote nothing" || ko "a refused run wrote summary.txt"
echo "sim-cli: $fails failure(s)"
[ $fails -eq 0 ]
