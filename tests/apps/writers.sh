#!/bin/bash
# What the programs write from user input stays inside its quotes.
#
# The attack: --out $'run\nsystem("id>pwned")\n#' once put a gnuplot
# command of its own into plot.gp, and gnuplot ran id.  Decision: a
# control character (newline, CR, tab, ESC, ...) in a text option or a
# hetsgd-plot argument is refused with exit 2 and one sentence before
# anything is written, because a gnuplot string cannot hold a newline and
# no real folder or label needs one.  Every other character works: the
# second half plots runs whose folders and labels hold quotes, backquotes,
# backslashes, commas and $(...) through a real gnuplot and checks that
# nothing ran.
set -u
b=${HETSGD_BUILDDIR:-.}
b=$(cd "$b" && pwd)
data=${HETSGD_TEST_DATA:-$(cd "$(dirname "$0")/../data" && pwd)}
train=$b/apps/hetsgd-train
plot=$b/apps/hetsgd-plot
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-writers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0

ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }

attack=$'run\nsystem("id>pwned")\n#'

# gnuplot and the programs run in $tmp, so a pwned file would land there
cd "$tmp" || exit 1
no_pwned() {
	local found
	found=$(find "$tmp" -name 'pwned*' 2>/dev/null)
	[ -z "$found" ] && ok "$1: no pwned file" || ko "$1: a command ran: $found"
}

# expect_refusal "what" "message part" cmd...: exit 2, one line naming it
expect_refusal() {
	local what=$1 want=$2 out rc
	shift 2
	out=$("$@" 2>&1 >/dev/null)
	rc=$?
	if [ $rc -eq 2 ] && [[ $out == *"$want"*"control character"* ]] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then
		ok "$what -> exit 2: $out"
	else
		ko "$what -> exit $rc, '$out' (wanted exit 2 and one line with '$want')"
	fi
}

# ---- hetsgd-train: every text option, on the command line and in --config
expect_refusal "train --out ATTACK" "--out" \
	"$train" --data synth --synth-n 400 --workers 2 --time 1 --progress none --out "$attack"
no_pwned "train --out ATTACK"
[ -z "$(find "$tmp" -mindepth 1 -maxdepth 1 -name 'run*')" ] && ok "train --out ATTACK made no folder" ||
	ko "train --out ATTACK made $(ls "$tmp")"
for opt in data test device name; do
	expect_refusal "train --$opt with a newline" "--$opt" \
		"$train" --$opt $'x\nseed = 9' --check --out "$tmp/never"
done
expect_refusal "train --out with a CR" "--out" "$train" --check --out $'a\rb'
expect_refusal "train --data-per-worker with ESC" "--data-per-worker" \
	"$train" --data-per-worker $'w{i}\e[2J.svm' --test t.svm --check --out "$tmp/never"
printf 'data = synth\ndevice = a\tb\n' > "$tmp/tab.conf"
expect_refusal "train --config with a tab in a value" "tab.conf:2: --device" \
	"$train" --config "$tmp/tab.conf" --check --out "$tmp/never"

# the printed configuration keeps one key per line for ordinary values
out=$("$train" --data synth --synth-n 400 --check --out "$tmp/never" 2>&1)
[[ $out == *$'\ndata = synth\n'* && $out == *"configuration ok"* ]] && ok "train --check prints data = synth" ||
	ko "train --check: $out"

# ---- hetsgd-plot: RUN=LABEL, --out and --prefix
mkrun() {
	mkdir -p "$1" &&
	printf 'time_s,grads,updates,epochs,loss,accuracy,grad_norm,wait_share,dist_opt,final\n0.1,10,10,0.1,2.0,0.3,1,0.5,,0\n0.2,20,20,0.2,1.0,0.6,1,0.5,,1\n' > "$1/metrics.csv"
}
mkrun "$tmp/r1"
expect_refusal "plot RUN=ATTACK" "argument 1 (RUN[=LABEL])" "$plot" --out "$tmp/p" "$tmp/r1=$attack"
expect_refusal "plot ATTACK as a RUN folder" "argument 2 (RUN[=LABEL])" "$plot" --out "$tmp/p" "$tmp/r1" "$attack"
expect_refusal "plot --out ATTACK" "--out" "$plot" --out "$attack" "$tmp/r1"
expect_refusal "plot --prefix ATTACK" "--prefix" "$plot" --prefix "$attack" "$tmp/r1"
no_pwned "plot with ATTACK"
[ ! -e "$tmp/p" ] && ok "a refused plot made no --out folder" || ko "a refused plot made $tmp/p"

# everything that is not a control character works, through real gnuplot
odd="$tmp/it's \`touch pwned-bq\` \$(touch pwned-sh) a,b \\ @x"
mkrun "$odd"
label=$'l\'); system(\'touch pwned-gp\'); print(\'x \\'
if command -v gnuplot >/dev/null; then
	if out=$("$plot" --out "$tmp/p" --prefix "q'" "$odd" "$tmp/r1=$label" 2>&1); then
		ok "plot with quotes, backquotes, \$(), commas, backslashes: $out"
	else
		ko "plot with odd but legal names failed: $out"
	fi
	for f in loss.png loss-work.png accuracy.png; do
		[ "$(head -c 4 "$tmp/p/q'$f" 2>/dev/null | tail -c 3)" = PNG ] && ok "q'$f is a PNG" ||
			ko "q'$f missing or not a PNG"
	done
	gp=$tmp/p/q\'plot.gp
	grep -qF "title 'l''); system(''touch pwned-gp''); print(''x \\'" "$gp" && ok "plot.gp holds the label quoted" ||
		ko "plot.gp: $(grep title "$gp")"
	# the key shows the label exactly as given
	[ "$(gnuplot -e "print 'l''); system(''touch pwned-gp''); print(''x \\'" 2>&1)" = "$label" ] &&
		ok "gnuplot reads the quoted label back as given" || ko "gnuplot reads the label differently"
	no_pwned "plot with odd but legal names"
else
	echo "SKIP: gnuplot is not installed (apt-get install gnuplot-nox): the legal-names half needs it"
fi

# ---- hetsgd-topo --json: a --topology path with a quote, a newline, a
# backslash and a byte that is not UTF-8 still gives one valid JSON object
xml="$tmp/"$'a"\n\xff\\b.xml'
if ! cp "$data/topo/two-socket-nic1.xml" "$xml"; then
	ko "no test machine at $data/topo/two-socket-nic1.xml"
elif ! "$b/apps/hetsgd-topo" --json --topology "$xml" --cpuset 0-3 > "$tmp/topo.json" 2> "$tmp/topo.err"; then
	ko "hetsgd-topo --json on an odd path: $(cat "$tmp/topo.err")"
elif command -v python3 >/dev/null; then
	got=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["machine"]["source"].encode("unicode_escape").decode())' "$tmp/topo.json" 2>&1)
	[ "$got" = "${tmp}/a\"\\n\\ufffd\\\\b.xml" ] && ok "hetsgd-topo --json parses; source = $got" ||
		ko "hetsgd-topo --json: source read back as '$got'"
else
	grep -qF '/a\"\n\ufffd\\b.xml"' "$tmp/topo.json" && ok "hetsgd-topo --json escapes the source path" ||
		ko "hetsgd-topo --json: $(head -c 200 "$tmp/topo.json")"
fi

echo "writers: $fails failure(s)"
[ $fails -eq 0 ]
