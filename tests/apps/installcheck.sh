#!/bin/sh
# What make install leaves for a user of the library and the programs
# (run by make installcheck, hence by make distcheck, and by
# make check-install, which installs into a DESTDIR under the build tree):
#  - pkg-config --cflags --libs hetsgd builds and runs a small program
#    (tests/apps/hello_boot.c, the README's example) against the
#    installed library;
#  - pkg-config --static --libs hetsgd lists every library a static link
#    of libhetsgd needs; when libhetsgd.a is installed (configure
#    --enable-static) a program links against it with those flags, which
#    fails on any library the .pc file forgets;
#  - the programs, man pages, sbatch scripts and docs are in place.
#
#   installcheck.sh DESTDIR PREFIX PKGCONFIGDIR BINDIR LIBDIR MANDIR PKGDATADIR DOCDIR HELLO.c EXPECT
# EXPECT: flags whose -l words the static list must hold (others ignored).
set -u
destdir=$1 prefix=$2 pcdir=$3 bindir=$4 libdir=$5 mandir=$6 pkgdatadir=$7 docdir=$8 hello=$9
shift 9
expect=$1
CC=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-installcheck.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "PASS: $*"; }
ko() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Under a DESTDIR the .pc file still names the final prefix: read a copy
# that names the DESTDIR one (--define-variable would move every
# module's prefix, rdma-core's too).
mkdir "$tmp/pc" && sed "s|^prefix=.*|prefix=$destdir$prefix|" "$destdir$pcdir/hetsgd.pc" >"$tmp/pc/hetsgd.pc" ||
	{ echo "FAIL: no $destdir$pcdir/hetsgd.pc"; exit 1; }
PKG_CONFIG_PATH=$tmp/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
pc() { pkg-config "$@" hetsgd; }

cflags=$(pc --cflags) && libs=$(pc --libs) || { ko "pkg-config cannot read $destdir$pcdir/hetsgd.pc"; exit 1; }
echo "pkg-config --cflags --libs hetsgd: $cflags $libs"
# shellcheck disable=SC2086
if $CC $cflags "$hello" -o "$tmp/hello" $libs 2>"$tmp/cc.err"; then
	out=$(LD_LIBRARY_PATH=$destdir$libdir "$tmp/hello" 2>&1)
	n=$(printf '%s\n' "$out" | grep -c 'of 4: last rank is 3')
	[ "$n" -eq 4 ] && ok "a program built with pkg-config's flags runs 4 ranks" ||
		ko "hello against the installed library: $out"
else
	ko "hello does not build with pkg-config's flags: $(cat "$tmp/cc.err")"
fi

static=$(pc --static --libs) || { ko "pkg-config --static --libs hetsgd fails"; static=; }
echo "pkg-config --static --libs hetsgd: $static"
missing= want=
for l in $expect; do
	case $l in -l*) want="$want $l" ;; *) continue ;; esac
	case " $static " in *" $l "*) ;; *) missing="$missing $l" ;; esac
done
[ -z "$missing" ] && ok "the static list holds$want" || ko "the static list lacks$missing"
if [ -f "$destdir$libdir/libhetsgd.a" ]; then
	# libhetsgd.a with exactly what hetsgd.pc names (its Requires.private
	# modules, linked as the system has them, and its Libs.private): an
	# undefined symbol here is a library the .pc file forgets.
	reqs=$(pkg-config --print-requires-private hetsgd | awk '{ print $1 }')
	privs=$(sed -n 's/^Libs.private: *//p' "$tmp/pc/hetsgd.pc")
	# shellcheck disable=SC2086
	deps="$(pkg-config --libs $reqs) $privs"
	# shellcheck disable=SC2086
	if $CC $cflags "$hello" -o "$tmp/hello-static" "$destdir$libdir/libhetsgd.a" $deps 2>"$tmp/cc.err"; then
		out=$("$tmp/hello-static" 2>&1)
		[ "$(printf '%s\n' "$out" | grep -c 'of 4: last rank is 3')" -eq 4 ] &&
			ok "libhetsgd.a links and runs with what hetsgd.pc names" ||
			ko "hello on libhetsgd.a: $out"
	else
		ko "libhetsgd.a does not link with what hetsgd.pc names: $(grep -m3 'undefined\|cannot find' "$tmp/cc.err")"
	fi
	# A fully static program also needs every dependency's own static
	# pieces (libudev for hwloc, libnl for rdma-core, ...), which are
	# the distribution's business: reported, not judged.
	# shellcheck disable=SC2086
	if $CC -static $cflags "$hello" -o "$tmp/hello-all-static" $(pc --static --libs) 2>"$tmp/cc.err"; then
		echo "INFO: a fully static link (cc -static ... \$(pkg-config --static --libs hetsgd)) works here"
	else
		echo "INFO: a fully static link fails here, for a dependency's static pieces: $(grep -m1 'cannot find\|undefined' "$tmp/cc.err")"
	fi
else
	echo "SKIP: no libhetsgd.a installed (configure --enable-static builds one): flags checked, not linked"
fi

for p in hetsgd-train hetsgd-bench hetsgd-topo hetsgd-plot hetsgd-eval hetsgd-model hetsgd-sim; do
	[ -x "$destdir$bindir/$p" ] || ko "$p not installed in $bindir"
	[ -f "$destdir$mandir/man1/$p.1" ] || ko "$p.1 not installed in $mandir/man1"
done
[ -f "$destdir$mandir/man7/hetsgd.7" ] || ko "hetsgd.7 not installed"
grep -q "$pkgdatadir/slurm" "$destdir$mandir/man1/hetsgd-train.1" 2>/dev/null ||
	ko "hetsgd-train.1 does not name $pkgdatadir/slurm"
for f in slurm/hetsgd-1node.sbatch slurm/hetsgd-multinode.sbatch; do
	[ -f "$destdir$pkgdatadir/$f" ] || ko "$f not installed in $pkgdatadir"
done
for f in README.md algo/README.md apps/README.md topology/README.md transport/README.md; do
	[ -f "$destdir$docdir/$f" ] || ko "$f not installed in $docdir"
done
[ $fails -eq 0 ] && ok "programs, man pages, sbatch scripts and docs installed"
echo "installcheck: $fails failure(s)"
[ $fails -eq 0 ]
