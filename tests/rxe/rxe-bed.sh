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

die() { echo "rxe-bed: error: $*" >&2; exit 1; }

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
# $1 = output folder, $2 = device name; commands come from $1/cmds.
write_payload() {
	cat <<'PAYLOAD'
#!/bin/bash
set -u
out=$1 dev=$2 addr=$3 peer=$4 builddir=$5
echo "rxe-bed: kernel $(uname -r), bringing up $dev"
ip link set lo up
ip link add hgveth0 type veth peer name hgveth1 || { echo "rxe-bed: cannot create veth pair"; exit 90; }
ip addr add "$addr/24" dev hgveth0
ip addr add "$peer/24" dev hgveth1
ip link set hgveth0 up
ip link set hgveth1 up
if ! rdma link add "$dev" type rxe netdev hgveth0; then
	echo "rxe-bed: rdma link add $dev failed (is crc32 available to rdma_rxe?)"; exit 91
fi
ulimit -l unlimited
# As rdma-core's udev rules do on a normal system: users may open verbs.
chmod 0666 /dev/infiniband/uverbs* /dev/infiniband/rdma_cm 2>/dev/null
state=
for i in $(seq 1 50); do
	state=$(cat /sys/class/infiniband/$dev/ports/1/state 2>/dev/null || true)
	case $state in *ACTIVE*) break ;; esac
	sleep 0.2
done
case $state in *ACTIVE*) ;; *) echo "rxe-bed: $dev port state '$state', not ACTIVE"; exit 92 ;; esac
# Pick the RoCE v2 GID that carries our IPv4 address (::ffff:a.b.c.d).
gid_index=
for g in /sys/class/infiniband/$dev/ports/1/gids/*; do
	n=${g##*/}
	type=$(cat /sys/class/infiniband/$dev/ports/1/gid_attrs/types/$n 2>/dev/null || true)
	gid=$(cat "$g" 2>/dev/null || true)
	case "$type:$gid" in
	"RoCE v2:0000:0000:0000:0000:0000:ffff:"*) gid_index=$n; break ;;
	esac
done
[ -n "$gid_index" ] || { echo "rxe-bed: no RoCE v2 IPv4 GID on $dev"; exit 93; }
echo "rxe-bed: $dev ACTIVE on hgveth0 ($addr), RoCE v2 GID index $gid_index: $(cat /sys/class/infiniband/$dev/ports/1/gids/$gid_index)"
export HETSGD_RDMA_DEV=$dev HETSGD_TEST_ADDR=$addr HETSGD_GID_INDEX=$gid_index HETSGD_BUILDDIR=$builddir
export TMPDIR=$out/tmp
mkdir -p "$TMPDIR"
n=0
while IFS= read -r cmd; do
	n=$((n + 1))
	echo "rxe-bed: [$n] $cmd"
	start=$(date +%s.%N)
	( cd "$builddir" && eval "$cmd" ) </dev/null
	rc=$?
	end=$(date +%s.%N)
	echo "rxe-bed: [$n] exit $rc after $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s"
	echo "$rc $cmd" >> "$out/results"
done < "$out/cmds"
echo done > "$out/finished"
PAYLOAD
}

report() {
	local out=$1 pass=0 failn=0 rc cmd
	if [ ! -f "$out/finished" ]; then
		echo "rxe-bed: the run did not finish (see the log above)" >&2
		failn=$((failn + 1))
	fi
	while read -r rc cmd; do
		if [ "$rc" -eq 0 ]; then
			pass=$((pass + 1)); echo "PASS: $cmd"
		elif [ "$rc" -eq 77 ]; then
			failn=$((failn + 1)); echo "FAIL: $cmd (skipped inside the bed, where a device must exist)"
		else
			failn=$((failn + 1)); echo "FAIL: $cmd (exit $rc)"
		fi
	done < <(cat "$out/results" 2>/dev/null)
	echo "rxe-bed: $pass passed, $failn failed"
	[ "$failn" -eq 0 ]
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
	unshare --net bash "$work/out/payload.sh" "$work/out" "$dev" "$ADDR" "$PEER" "$builddir" 2>&1 |
		tee "$work/out/bed.log" || rc=$?
	rdma link delete "$dev" 2>/dev/null || true
	[ $rc -eq 0 ] || echo "rxe-bed: payload exited $rc"
	report "$work/out"
	exit
fi

# ---- qemu mode ----------------------------------------------------------
for t in qemu-system-x86_64 cpio apt-get dpkg-deb; do
	command -v $t >/dev/null || die "$t not found: run ./setup.sh (or apt-get install qemu-system-x86 cpio)"
done
dpkg -s busybox-static >/dev/null 2>&1 || die "busybox-static not installed: apt-get install busybox-static (or ./setup.sh)"
busybox=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -1)
[ -x "$busybox" ] || die "busybox-static's busybox binary not found"

# The guest kernel: Debian's current linux-image, fetched once and cached.
cache=${HETSGD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hetsgd}
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || die "apt-cache does not know linux-image-amd64: run apt-get update (or ./setup.sh)"
kver=${kpkg#linux-image-}
kdir=$cache/$kpkg
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p configfs ib_core ib_uverbs iw_cm ib_cm rdma_cm rdma_ucm udp_tunnel ip6_udp_tunnel crc32_generic rdma_rxe veth"
if [ ! -f "$kdir/complete" ]; then
	echo "rxe-bed: fetching $kpkg (once; cached in $kdir)"
	rm -rf "$kdir"; mkdir -p "$kdir/dl"
	chmod 755 "$kdir/dl"
	( cd "$kdir/dl" && apt-get download "$kpkg" ) >"$kdir/download.log" 2>&1 ||
		{ cat "$kdir/download.log" >&2; die "apt-get download $kpkg failed: check that Debian's package registry is reachable and run apt-get update"; }
	deb=$(ls "$kdir"/dl/*.deb)
	paths="./boot/vmlinuz-$kver"
	for m in $modules; do
		p=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -E "/$m\.ko$" | head -1) || true
		[ -n "$p" ] || die "module $m.ko not in $kpkg"
		paths="$paths $p"
	done
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir" $paths
	mkdir -p "$kdir/mods"
	for m in $modules; do
		find "$kdir/lib" -name "$m.ko" -exec mv {} "$kdir/mods/" \;
	done
	rm -rf "$kdir/dl" "$kdir/lib"
	touch "$kdir/complete"
fi

# Where the guest mounts the results share.  It must not hide the build
# tree, which the guest reads through the host's root.
outmnt=
for d in /mnt /media /srv /opt; do
	[ -d "$d" ] || continue
	case "$builddir/" in "$d"/*) continue ;; esac
	case "$work/" in "$d"/*) continue ;; esac
	outmnt=$d; break
done
[ -n "$outmnt" ] || die "no mount point for results outside the build tree (tried /mnt /media /srv /opt)"

init=$work/initramfs
mkdir -p "$init/bin" "$init/mods" "$init/proc" "$init/sys" "$init/dev" "$init/newroot"
cp "$busybox" "$init/bin/busybox"
cp "$kdir"/mods/*.ko "$init/mods/"
cat > "$init/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $modules; do
	insmod /mods/\$m.ko || { echo "rxe-bed: insmod \$m failed"; poweroff -f; }
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot ||
	{ echo "rxe-bed: cannot mount the host root over 9p"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /newroot$outmnt ||
	{ echo "rxe-bed: cannot mount the results share"; poweroff -f; }
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t configfs configfs /newroot/sys/kernel/config 2>/dev/null
mount -t tmpfs tmpfs /newroot/run 2>/dev/null
ln -s /proc/self/fd /newroot/dev/fd
ln -s /proc/self/fd/0 /newroot/dev/stdin
ln -s /proc/self/fd/1 /newroot/dev/stdout
ln -s /proc/self/fd/2 /newroot/dev/stderr
# The pipeline ends before poweroff, so bed.log is complete on the host.
{ chroot /newroot /bin/bash $outmnt/payload.sh $outmnt hgrxe0 $ADDR $PEER "$builddir" 2>&1
  echo "rxe-bed: payload exited \$?"; } | tee /newroot$outmnt/bed.log
poweroff -f
INIT
chmod +x "$init/init"
( cd "$init" && find . | cpio -o -H newc --quiet ) | gzip -1 > "$work/initramfs.gz"

echo "rxe-bed: booting $kpkg under qemu (TCG), host root shared read-only"
qrc=0
# The console streams to the terminal as the tests run (from the guest's
# first line of ours on, skipping firmware and kernel noise) and to
# console.log; bed.log, written by the guest, is the complete record.
set +e
timeout "$timeout_s" qemu-system-x86_64 \
	-machine q35 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 \
	-nographic -no-reboot -nic none \
	-kernel "$kdir/boot/vmlinuz-$kver" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
	-virtfs local,path="$work/out",mount_tag=results,security_model=none,multidevs=remap \
	</dev/null 2>&1 | tee "$work/console.log" |
	awk '!on && (i = index($0, "rxe-bed: ")) { on = 1; $0 = substr($0, i) }
	     on && !/^\[ *[0-9]+\.[0-9]+\] / { sub(/\r$/, ""); print; fflush() }'
qrc=${PIPESTATUS[0]}
set -e
if [ "$qrc" -eq 124 ]; then
	cat "$work/console.log"
	die "the guest did not finish within ${timeout_s}s (--timeout or HETSGD_RXE_TIMEOUT to raise)"
fi
# Nothing of ours reached the console: show all of it, it says why.
grep -q 'rxe-bed: ' "$work/console.log" || cat "$work/console.log"
[ $qrc -eq 0 ] || echo "rxe-bed: qemu exited $qrc"
report "$work/out"
