#!/bin/sh
# make reproduce's pipeline works end to end: REPRO_QUICK=1 (2 seeds of 1 s,
# the sweeps cut to their ends, about a minute) into a temporary folder.
# Asserts the shape of what it writes, nothing about the verdicts (runs of
# 1 s support none): every claim has its table with a row per setting and a
# value or "not reached" in every cell, runs.csv has a line per setting and
# seed, the merge claim its gap table, every figure the report names is a
# PNG (and there is one per claim when gnuplot is installed), the report
# can be written again from the runs, and a missing build is refused with a
# message.  Without Fashion-MNIST it says SKIP and names the package.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/apps/lib.sh
. "$here/lib.sh"
b=${HETSGD_BUILDDIR:-.}
b=$(cd "$b" && pwd)
script=$here/../../apps/reproduce.sh
test_tmp reproduce

if ! "$b/apps/hetsgd-train" --data fashion-mnist --time 1 --check >"$tmp/check.log" 2>&1; then
	echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or set HETSGD_FASHION_MNIST_DIR):"
	cat "$tmp/check.log"
	exit 77
fi

# a build folder without the program: refused, naming it and the fix
mkdir -p "$tmp/nobuild/apps"
if HETSGD_BUILDDIR=$tmp/nobuild sh "$script" "$tmp/none" >"$tmp/nobuild.log" 2>&1; then
	ko "a missing hetsgd-train was not refused"
elif grep -q 'hetsgd-train is missing; run make first' "$tmp/nobuild.log"; then
	ok "a missing hetsgd-train is refused with the fix"
else
	ko "a missing hetsgd-train: unexpected message: $(cat "$tmp/nobuild.log")"
fi
if REPRO_REPORT_ONLY=1 HETSGD_BUILDDIR=$b sh "$script" "$tmp/none" >"$tmp/only.log" 2>&1; then
	ko "REPRO_REPORT_ONLY without runs was not refused"
elif grep -q 'no finished runs in' "$tmp/only.log"; then
	ok "REPRO_REPORT_ONLY without runs is refused with the fix"
else
	ko "REPRO_REPORT_ONLY without runs: unexpected message: $(cat "$tmp/only.log")"
fi

out=$tmp/out
start=$(date +%s)
if ! REPRO_QUICK=1 HETSGD_BUILDDIR=$b sh "$script" "$out" >"$tmp/run.log" 2>&1; then
	ko "reproduce.sh failed:"
	tail -20 "$tmp/run.log"
	exit 1
fi
ok "REPRO_QUICK=1 reproduce.sh ran in $(($(date +%s) - start)) s"
rep=$out/REPORT.md
[ -s "$rep" ] || { ko "no REPORT.md"; exit 1; }

# the claims: the folders with a runs.csv
claims=$(for f in "$out"/*/runs.csv; do [ -f "$f" ] && basename "$(dirname "$f")"; done)
nclaims=$(echo "$claims" | wc -w)
list=$(echo "$claims" | tr '\n' ' ')
expect "6 claims ran: $list" "expected 6 claims, found $nclaims: $list" [ "$nclaims" -eq 6 ]
ntables=$(grep -c '^| group | setting | runs |' "$rep")
expect "a table per claim ($ntables)" "$ntables tables for $nclaims claims" [ "$ntables" -eq "$nclaims" ]

for c in $claims; do
	# settings of the claim: the distinct keys of its runs, without derived rows
	keys=$(grep -v '^[^,]*/gap,' "$out/$c/runs.csv" | cut -d, -f1 | sort -u)
	nk=$(echo "$keys" | wc -l)
	nrows=$(grep -vc '^[^,]*/gap,' "$out/$c/runs.csv")
	expect "$c: runs.csv has $nk settings x 2 seeds" "$c: runs.csv has $nrows lines for $nk settings x 2 seeds" \
		[ "$nrows" -eq $((nk * 2)) ]
	for k in $keys; do
		g=${k%%/*} l=${k#*/}
		row=$(grep -F "| $g | $l | 2 |" "$rep")
		if [ -z "$row" ]; then
			ko "$c: no row for $g $l with 2 runs in REPORT.md"
			continue
		fi
		# every metric cell: a number with its [q1, q3], or "not reached"
		bad=$(echo "$row" | awk -F' [|] ' '{ for (i = 4; i < NF; i++) if ($i ~ /^\(/ || $i ~ /^(holds|not shown|target not reached)/) continue;
			else if ($i !~ /^-?[0-9.e+-]+ \[-?[0-9.e+-]+, -?[0-9.e+-]+\]/ && $i !~ /^not reached/) print $i }')
		[ -z "$bad" ] || ko "$c: row $g $l has a bad cell: $bad"
	done
	ok "$c: $nk rows checked"
done
expect "merge: the gap per delay" "merge: no gap table" grep -q '^| delay (s) | gap: overwrite - delay-corrected' "$rep"
expect "hetero: shown or not shown" "hetero: no shown/not shown line" \
	grep -q '^Strong heterogeneity plus long overlap hurts: at the time budget \*\*[a-z]' "$rep"
expect "the rule is stated" "the rule is not stated" grep -q '^\*\*Rule\.\*\*' "$rep"
expect "machine and load recorded" "no machine or load in the report" \
	grep -q 'cores, .*; load average (1, 5, 15 min) [0-9.]* [0-9.]* [0-9.]* at the start, [0-9.]* [0-9.]* [0-9.]* at the end' "$rep"

# figures: each one named is a PNG; one per claim at least with gnuplot
nfig=0
figs=$(sed -n 's/^!\[[^]]*\](\(.*\))$/\1/p' "$rep")
for f in $figs; do
	if [ "$(head -c 4 "$out/$f" | od -An -c | tr -d ' ')" = '211PNG' ]; then nfig=$((nfig + 1)); else ko "figure $f is not a PNG"; fi
done
if command -v gnuplot >/dev/null 2>&1; then
	expect "$nfig figures, PNG" "only $nfig figures for $nclaims claims" [ "$nfig" -ge "$nclaims" ]
else
	n=$(grep -c '^No figure: gnuplot is missing' "$rep")
	expect "no gnuplot: each claim says it has no figure" "no gnuplot, and $n of $nclaims claims say so" [ "$n" -eq "$nclaims" ]
fi

# the report again from the same runs: the same tables
cp "$rep" "$tmp/first.md"
if REPRO_REPORT_ONLY=1 HETSGD_BUILDDIR=$b sh "$script" "$out" >"$tmp/again.log" 2>&1 && cmp -s "$rep" "$tmp/first.md"; then
	ok "REPRO_REPORT_ONLY=1 writes the same report from the runs"
else
	ko "REPRO_REPORT_ONLY=1 gave another report:"
	diff "$tmp/first.md" "$rep" | head -10
fi

test_end
