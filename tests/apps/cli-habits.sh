#!/bin/bash
# The habits cluster users rely on, for every program: -h and --help
# print the usage on stdout and exit 0; --version prints
# "NAME (hetsgd) VERSION" (config.h's PACKAGE_VERSION) and exits 0; an
# unknown option exits 2.  And each man page (apps/man/NAME.1.in) names
# only long options that the program's --help also names, so the pages
# cannot drift from the programs unnoticed.
set -u
b=${HETSGD_BUILDDIR:-.}
b=$(cd "$b" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$b/config.h")
fails=0

ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }

[ -n "$version" ] || { echo "FAIL: no PACKAGE_VERSION in $b/config.h"; exit 1; }
for name in hetsgd-train hetsgd-bench hetsgd-topo hetsgd-plot hetsgd-eval hetsgd-model hetsgd-sim; do
	prog=$b/apps/$name
	for h in -h --help; do
		out=$("$prog" "$h" 2>/dev/null); rc=$?
		if [ $rc -eq 0 ] && [ "${out#usage: "$name"}" != "$out" ]; then
			ok "$name $h: exit 0, usage on stdout"
		else
			ko "$name $h: exit $rc, stdout starts '$(head -n 1 <<<"$out")'"
		fi
	done
	out=$("$prog" --version 2>&1); rc=$?
	if [ $rc -eq 0 ] && [ "$out" = "$name (hetsgd) $version" ]; then
		ok "$name --version: $out"
	else
		ko "$name --version: exit $rc, '$out' (want '$name (hetsgd) $version')"
	fi
	"$prog" --no-such-option >/dev/null 2>&1; rc=$?
	[ $rc -eq 2 ] && ok "$name --no-such-option: exit 2" || ko "$name --no-such-option: exit $rc (want 2)"
	man=$src/apps/man/$name.1.in
	if [ ! -f "$man" ]; then
		ko "$name has no man page ($man)"
		continue
	fi
	help=$("$prog" --help 2>&1)
	missing=
	for opt in $(grep -o '\\-\\-[a-z][a-z_-]*' "$man" | sed 's/\\//g' | sort -u); do
		case $opt in --mpi|--cpu-bind|--cpus-per-task) continue ;; esac	# srun's and sbatch's
		grep -q -e "$opt\b" <<<"$help" || missing="$missing $opt"
	done
	[ -z "$missing" ] && ok "$name.1 names only options of $name --help" ||
		ko "$name.1 names options $name --help does not:$missing"
done
[ -f "$src/apps/man/hetsgd.7.in" ] && ok "hetsgd.7 exists" || ko "hetsgd.7 is missing"
echo "cli-habits: $fails failure(s)"
[ $fails -eq 0 ]
