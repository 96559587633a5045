#!/bin/bash
# Set up a Debian 12 machine for hetsgd and build it in place.
#
#   ./setup.sh [--no-build] [CONFIGURE-ARGS...]
#
# Installs every Debian package that the build, the tests and the two test
# beds (soft-RoCE under qemu, private Slurm) need, skipping what is already
# installed; then autoreconf, configure (with CONFIGURE-ARGS) and make.
# Safe to run again: it only does what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")"

build=1
if [ "${1:-}" = --no-build ]; then build=0; shift; fi
case "${1:-}" in -h|--help) sed -n '2,10p' "$0"; exit 0 ;; esac

packages=(
	# toolchain
	build-essential autoconf automake libtool pkg-config
	# libraries (configure checks each of these)
	libibverbs-dev librdmacm-dev libnuma-dev libhwloc-dev libcriterion-dev
	libopenblas-dev zlib1g-dev libpmix-dev libpmi2-0-dev
	# RDMA user space: rxe provider, rdma tool, perftest as the yardstick
	rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest iproute2 kmod
	# soft-RoCE bed under qemu
	qemu-system-x86 busybox-static cpio
	# private single-node Slurm bed
	slurmctld slurmd slurm-client munge
	# real data: Fashion-MNIST (IDX, gzip) in /usr/share/datasets/fashion-mnist
	dataset-fashion-mnist
	# hetsgd-train's and hetsgd-plot's PNG plots
	gnuplot-nox
	# make check-fuzz: libFuzzer harnesses (clang -fsanitize=fuzzer)
	clang
)

missing=()
for p in "${packages[@]}"; do
	case $p in \#*) continue ;; esac
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		sudo=()
	elif command -v sudo >/dev/null; then
		sudo=(sudo)
	else
		echo "setup: need root to install: ${missing[*]}; run as root or install sudo" >&2
		exit 1
	fi
	echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
	"${sudo[@]}" apt-get update -q
	# On a systemd machine apt may start munge.service; harmless, since the
	# Slurm bed runs its own munged, slurmctld and slurmd with their own
	# key, sockets and ports.
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	echo "setup: all ${#packages[@]} packages already installed"
fi

# The soft-RoCE bed downloads Debian's kernel package with apt-get; make
# sure the package lists exist even when nothing had to be installed.
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ]; then apt-get update -q; else sudo apt-get update -q; fi
fi

[ $build -eq 1 ] || exit 0

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
	echo "setup: autoreconf"
	autoreconf -fi
fi
if [ ! -f Makefile ] || [ configure -nt config.status ] || [ $# -gt 0 ]; then
	echo "setup: configure $*"
	./configure "$@"
fi
make -j"$(nproc)"
echo "setup: built. Next: make demo (the main job: training on Fashion-MNIST) or make check-all (every test)."
