#!/bin/bash
# make check-fuzz: build every harness with clang's libFuzzer, ASan and
# UBSan, then run each in turn on a copy of its corpus.
#
#   check-fuzz.sh SRCDIR OUTDIR 'LIBRARY-SOURCES' 'HARNESSES'
#
# HARNESSES are make's names (tests/fuzz/fuzz_NAME).  Environment (set by
# the Makefile): FUZZ_CC, FUZZ_TIME (s per target), FUZZ_ARGS (more
# libFuzzer flags), FUZZ_CPPFLAGS, FUZZ_LIBS.  Exit 1 when a target
# crashed, leaked, hung or ran out of memory; the input is kept in
# OUTDIR/artifacts/.  The last lines are one summary per target.
set -u
srcdir=$1 out=$2 sources=$3 harnesses=$4
time=${FUZZ_TIME:-60}

if [ -z "${FUZZ_CC:-}" ]; then
	echo "check-fuzz: no C compiler with libFuzzer was found at configure time." >&2
	echo "check-fuzz: install clang (apt-get install clang, or ./setup.sh) and run ./configure again," >&2
	echo "check-fuzz: or name one: ./configure FUZZ_CC=clang-16" >&2
	exit 1
fi

# Coverage for the code under test; the harness link adds libFuzzer's main.
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $san"
objdir=$out/clang
mkdir -p "$objdir/obj" "$out/artifacts" || exit 1

# Rebuild an object when its source or any header is newer.
newest_header=$(ls -t "$srcdir"/transport/*.h "$srcdir"/topology/*.h "$srcdir"/algo/*.h \
	"$srcdir"/apps/*.h "$srcdir"/tests/fuzz/*.h config.h 2>/dev/null | head -n 1)
objs=()
for s in $sources; do
	case $s in *.c) ;; *) continue ;; esac
	o=$objdir/obj/$(echo "${s%.c}" | tr / _).o
	objs+=("$o")
	if [ "$o" -nt "$srcdir/$s" ] && [ "$o" -nt "$newest_header" ]; then continue; fi
	echo "  FUZZCC   $s"
	# shellcheck disable=SC2086
	$FUZZ_CC $cflags $FUZZ_CPPFLAGS -c "$srcdir/$s" -o "$o" || exit 1
done
rm -f "$objdir/libhetsgd-fuzz.a"
ar rcs "$objdir/libhetsgd-fuzz.a" "${objs[@]}" || exit 1

names=()
for h in $harnesses; do
	n=${h##*/fuzz_}
	names+=("$n")
	echo "  FUZZLD   $objdir/fuzz_$n"
	# shellcheck disable=SC2086
	$FUZZ_CC $cflags -fsanitize=fuzzer $FUZZ_CPPFLAGS "$srcdir/tests/fuzz/fuzz_$n.c" \
		"$objdir/libhetsgd-fuzz.a" $FUZZ_LIBS -lm -o "$objdir/fuzz_$n" || exit 1
done

failed=() summary=()
for n in "${names[@]}"; do
	work=$objdir/corpus-$n
	rm -rf "$work"
	mkdir -p "$work" && cp "$srcdir/tests/fuzz/corpus/$n"/* "$work"/ || exit 1
	log=$objdir/fuzz-$n.log
	echo "check-fuzz: $n for ${time} s (log: $log)"
	# shellcheck disable=SC2086
	"$objdir/fuzz_$n" -max_total_time="$time" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/artifacts/$n-" \
		${FUZZ_ARGS:-} "$work" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ $rc -ne 0 ]; then
		failed+=("$n")
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz invariant failed|.*runtime error)' "$log" | head -n 5
		grep -E '^artifact_prefix|Test unit written to' "$log" | tail -n 1
		summary+=("check-fuzz: $n: FAILED (exit $rc), ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov: ?}; see $log")
	else
		summary+=("check-fuzz: $n: ok, ${execs:-?} execs in ${time} s, ${rate:-?} exec/s, ${cov:-cov: ?}")
	fi
done
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "check-fuzz: ${#failed[@]} of ${#names[@]} targets failed: ${failed[*]}; reproduce with $objdir/fuzz_NAME FILE (or tests/fuzz/fuzz_NAME FILE without clang)"
	exit 1
fi
echo "check-fuzz: ${#names[@]} targets, no crash in ${time} s each"
