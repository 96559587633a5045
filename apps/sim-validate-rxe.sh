#!/bin/sh
# The simulator against soft-RoCE runs: sim-validate.sh's settings run over
# verbs inside the rxe bed (tests/rxe/rxe-bed.sh: a qemu TCG guest with an
# rdma_rxe device, or the host's rxe in a private namespace), and simulated
# here with the network model of that device as measured in the same boot:
#   - the links' bandwidth: perftest's ib_write_bw at 64 KiB
#     (tests/rdma/perftest-ref.sh), the anchor every speed claim here uses;
#   - the one-way latency and the step overhead: sim-validate.sh's
#     calibration run, over verbs in the same guest (the engine's message
#     delay includes its progress loops' dozing, which perftest's does not
#     have; perftest's 8-byte latency is written next to it).
#
#   sim-validate-rxe.sh [OUT]   HETSGD_BENCH_TIME=seconds per run (default 10)
#                               HETSGD_VALIDATE_SEEDS (default "1 2 3")
#
# Needs root (the bed does) and the beds' lock, which make takes:
#   flock /tmp/hetsgd-bed.lock make sim-validate-rxe
# About 7 minutes (411 s on 2026-11-30: the boot, two calibrations, 24
# runs of HETSGD_BENCH_TIME s and their start in the guest, 24
# simulations).  Not in check-all.  Writes OUT/REPORT.txt,
# OUT/device.txt (the bed's measurements, the host's load) and the runs.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
b=${HETSGD_BUILDDIR:-$src}
b=$(cd "$b" && pwd)
out=${1:-runs/sim-validate-rxe}
t=${HETSGD_BENCH_TIME:-10}
seeds=${HETSGD_VALIDATE_SEEDS:-1 2 3}
[ "$(id -u)" -eq 0 ] || { echo "sim-validate-rxe: the soft-RoCE bed needs root (rdma link add, qemu's 9p share): rerun with sudo" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/bed-host.log
start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "sim-validate-rxe: booting the bed (host load $load0); output in $out"
rc=0
HETSGD_RXE_KEEP=1 HETSGD_RXE_TIMEOUT=${HETSGD_RXE_TIMEOUT:-2400} bash "$src/tests/rxe/rxe-bed.sh" --builddir "$b" -- \
	"$src/tests/rdma/perftest-ref.sh" \
	"HETSGD_BENCH_TIME=$t HETSGD_VALIDATE_SEEDS='$seeds' HETSGD_VALIDATE_PROVIDER=verbs HETSGD_VALIDATE_PHASE=real HETSGD_BUILDDIR='$b' sh '$src/apps/sim-validate.sh' \"\$TMPDIR/v\"" \
	>"$log" 2>&1 || rc=$?
kept=$(sed -n 's/^rxe-bed: kept //p' "$log" | tail -n 1)
if [ -n "$kept" ] && [ -d "$kept/out" ]; then
	cp "$kept/out/bed.log" "$out/guest.log" 2>/dev/null || true
	[ -d "$kept/out/tmp/v" ] && cp -r "$kept/out/tmp/v/." "$out/"
	rm -rf "$kept"
fi
if [ $rc -ne 0 ]; then
	tail -n 30 "$log" >&2
	echo "sim-validate-rxe: the bed failed (exit $rc): see $log and $out/guest.log" >&2
	exit 1
fi
bwm=$(sed -n 's/^perftest-ref: ib_write_bw_64KiB_MBps //p' "$out/guest.log" | tail -n 1)
lat8=$(sed -n 's/^perftest-ref: ib_write_lat_8B_typical_us //p' "$out/guest.log" | tail -n 1)
if [ -z "$bwm" ] || [ -z "$lat8" ]; then
	echo "sim-validate-rxe: no perftest-ref numbers in $out/guest.log" >&2
	exit 1
fi
# perftest's MB is 2^20 bytes
gbps=$(awk -v m="$bwm" 'BEGIN { printf "%.4g", m * 1048576 * 8 / 1e9 }')
{
	echo "perftest ib_write_bw 64 KiB: $bwm MB/s = $gbps Gb/s (fed as --bandwidth)"
	echo "perftest ib_write_lat 8 B: $lat8 us (for reference; the calibration's latency is fed)"
	echo "bed: $(sed -n 's/^rxe-bed: mode /mode /p; s/^rxe-bed: kernel /kernel /p' "$log" | head -n 2 | tr '\n' ' ')"
	echo "host load at the start: $load0; after the bed: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "bed time: $(($(date +%s) - start)) s"
} | tee "$out/device.txt"
HETSGD_BUILDDIR="$b" HETSGD_BENCH_TIME=$t HETSGD_VALIDATE_SEEDS="$seeds" HETSGD_VALIDATE_PHASE=sim \
	HETSGD_VALIDATE_BANDWIDTH=$gbps sh "$src/apps/sim-validate.sh" "$out"
echo "sim-validate-rxe: $(($(date +%s) - start)) s in all"
