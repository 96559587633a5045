#!/bin/bash
# Soft-RoCE test bed: run commands on a real rdma_rxe device.
#
#   rxe-bed.sh [--mode auto|host|qemu] [--timeout SECONDS] -- CMD [CMD ...]
#
# Each CMD is one shell command line, run as root with:
#   HETSGD_RDMA_DEV    the rxe device (e.g. rxe0)
#   HETSGD_TEST_ADDR   IPv4 address of its netdev
#   HETSGD_GID_INDEX   GID index of the RoCE v2 IPv4-mapped GID
#   HETSGD_BUILDDIR    the build tree (commands start there)
#   TMPDIR             a writable folder
# and must exit 0.  Exit 77 (skip) counts as a failure here: this bed
# exists to run the RDMA tests, so it never passes by skipping.
#
# Host mode: the host kernel has rdma_rxe (modprobe), used in a private
# network namespace.  Qemu mode: boots Debian's kernel under qemu (TCG)
# with the host's root filesystem shared read-only over 9p, runs the
# commands inside and brings back their output and statuses.  See
# ../shared/DESIGN.md, "Soft-RoCE under qemu", for the measured facts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
BED_NAME=rxe-bed
. "$here/bed-lib.sh"
die() { bed_die "$@"; }

mode=${HETSGD_RXE_MODE:-auto}
timeout_s=${HETSGD_RXE_TIMEOUT:-900}
builddir=${HETSGD_BUILDDIR:-$PWD}
while [ $# -gt 0 ]; do
	case $1 in
	--mode) mode=${2:?--mode needs auto, host or qemu}; shift 2 ;;
	--timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
	--builddir) builddir=${2:?}; shift 2 ;;
	--) shift; break ;;
	*) die "unknown option $1 (usage: rxe-bed.sh [--mode auto|host|qemu] [--timeout S] -- CMD...)" ;;
	esac
done
[ $# -gt 0 ] || die "no command to run (usage: rxe-bed.sh [--mode ...] -- CMD...)"
case $mode in auto|host|qemu) ;; *) die "--mode must be auto, host or qemu, not '$mode'" ;; esac
builddir=$(cd "$builddir" && pwd -P)
[ "$(id -u)" -eq 0 ] || die "must run as root (rdma link add, qemu 9p root share); rerun with sudo"

ADDR=10.233.0.1		# only ever inside the guest or a private netns
PEER=10.233.0.2

# The script that runs where the device is (guest or private netns).
# Arguments: output folder, device, address, peer address, build tree and
# this bed's shell library; commands come from the output folder's cmds.
write_payload() {
	cat <<'PAYLOAD'
#!/bin/bash
set -u
out=$1 dev=$2 addr=$3 peer=$4 builddir=$5
BED_NAME=rxe-bed
. "$6"
echo "rxe-bed: kernel $(uname -r), bringing up $dev"
ip link set lo up
ip link add hgveth0 type veth peer name hgveth1 || { echo "rxe-bed: cannot create veth pair"; exit 90; }
ip addr add "$addr/24" dev hgveth0
ip addr add "$peer/24" dev hgveth1
ip link set hgveth0 up
ip link set hgveth1 up
bed_rxe_up "$dev" hgveth0 "$addr"
export HETSGD_RDMA_DEV=$dev HETSGD_TEST_ADDR=$addr HETSGD_GID_INDEX=$BED_GID_INDEX HETSGD_BUILDDIR=$builddir
export TMPDIR=$out/tmp
mkdir -p "$TMPDIR"
bed_run_cmds "$out" "$builddir"
echo done > "$out/finished"
PAYLOAD
}

work=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-rxe.XXXXXX")
trap '[ -n "${HETSGD_RXE_KEEP:-}" ] && echo "rxe-bed: kept $work" || rm -rf "$work"' EXIT
mkdir -p "$work/out"
printf '%s\n' "$@" > "$work/out/cmds"
write_payload > "$work/out/payload.sh"

host_can_rxe() {
	[ -d /sys/class/net ] || return 1
	modprobe rdma_rxe 2>/dev/null || return 1
	command -v rdma >/dev/null && command -v unshare >/dev/null
}

if [ "$mode" = auto ]; then
	if host_can_rxe; then mode=host; else mode=qemu; fi
	echo "rxe-bed: mode $mode ($( [ $mode = host ] && echo 'host kernel has rdma_rxe' || echo 'host kernel has no rdma_rxe: booting a Debian kernel under qemu'))"
fi

if [ "$mode" = host ]; then
	host_can_rxe || die "host mode: modprobe rdma_rxe failed: this kernel has no soft-RoCE; use --mode qemu"
	dev=hgrxe$$
	# A private network namespace keeps our veth pair off the host's network;
	# the rxe device must be deleted by hand (RDMA devices outlive netns).
	rc=0
	unshare --net bash "$work/out/payload.sh" "$work/out" "$dev" "$ADDR" "$PEER" "$builddir" "$here/bed-lib.sh" 2>&1 |
		tee "$work/out/bed.log" || rc=$?
	rdma link delete "$dev" 2>/dev/null || true
	[ $rc -eq 0 ] || echo "rxe-bed: payload exited $rc"
	bed_report "$work/out"
	exit
fi

# ---- qemu mode ----------------------------------------------------------
bed_need_qemu
bed_kernel "$BED_MODULES"
outmnt=$(bed_outmnt "$builddir" "$work")

init=$work/initramfs
mkdir -p "$init"
{
	echo '#!/bin/busybox sh'
	bed_init_mounts "$BED_MODULES" "$outmnt"
	cat <<INIT
# The pipeline ends before poweroff, so bed.log is complete on the host.
{ chroot /newroot /bin/bash $outmnt/payload.sh $outmnt hgrxe0 $ADDR $PEER "$builddir" "$here/bed-lib.sh" 2>&1
  echo "rxe-bed: payload exited \$?"; } | tee /newroot$outmnt/bed.log
poweroff -f
INIT
} > "$init/init"
bed_initramfs "$init" "$BED_MODULES"

echo "rxe-bed: booting $BED_KPKG under qemu (TCG), host root shared read-only"
qrc=0
# The console streams to the terminal as the tests run (from the guest's
# first line of ours on, skipping firmware and kernel noise) and to
# console.log; bed.log, written by the guest, is the complete record.
set +e
timeout "$timeout_s" qemu-system-x86_64 \
	-machine q35 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 \
	-nographic -no-reboot -nic none \
	-kernel "$BED_KDIR/boot/vmlinuz-$BED_KVER" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-virtfs local,path="$work/out",mount_tag=results,security_model=none,multidevs=remap \
	</dev/null 2>&1 | tee "$work/console.log" | bed_console ""
qrc=${PIPESTATUS[0]}
set -e
if [ "$qrc" -eq 124 ]; then
	cat "$work/console.log"
	die "the guest did not finish within ${timeout_s}s (--timeout or HETSGD_RXE_TIMEOUT to raise)"
fi
# Nothing of ours reached the console: show all of it, it says why.
grep -q 'rxe-bed: ' "$work/console.log" || cat "$work/console.log"
[ $qrc -eq 0 ] || echo "rxe-bed: qemu exited $qrc"
bed_report "$work/out"
