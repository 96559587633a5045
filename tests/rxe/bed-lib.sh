# Shell functions shared by the soft-RoCE beds (rxe-bed.sh, one guest or
# the host; two-node-bed.sh, two guests).  Sourced, never run.  The host
# half builds and boots guests; the guest half (bed_rxe_up, bed_run_cmds)
# runs inside them, which read this file through the host's root.
# BED_NAME prefixes every message ("rxe-bed", "two-node-bed").
# See ../shared/DESIGN.md, "Soft-RoCE under qemu", for the measured facts.

BED_NAME=${BED_NAME:-bed}

# The modules a guest needs for 9p, rdma_cm and rxe, in insmod order.
# Without crc32_generic, `rdma link add` fails ("rdma_rxe: failed to add").
BED_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p configfs ib_core ib_uverbs iw_cm ib_cm rdma_cm rdma_ucm udp_tunnel ip6_udp_tunnel crc32_generic rdma_rxe veth"
# ... and for a virtio NIC of its own (a wire to another guest).
BED_NET_MODULES="failover net_failover virtio_net"

bed_die() { echo "$BED_NAME: error: $*" >&2; exit 1; }

# ---- host side -------------------------------------------------------------

bed_need_qemu() {
	local t
	for t in qemu-system-x86_64 cpio apt-get dpkg-deb; do
		command -v $t >/dev/null || bed_die "$t not found: run ./setup.sh (or apt-get install qemu-system-x86 cpio)"
	done
	dpkg -s busybox-static >/dev/null 2>&1 || bed_die "busybox-static not installed: apt-get install busybox-static (or ./setup.sh)"
	BED_BUSYBOX=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -1)
	[ -x "$BED_BUSYBOX" ] || bed_die "busybox-static's busybox binary not found"
}

# bed_kernel MODULES: Debian's current linux-image, fetched once and cached
# with the modules asked for (a later bed that needs more fetches again).
# Sets BED_KPKG, BED_KVER, BED_KDIR (vmlinuz in boot/, modules in mods/).
bed_kernel() {
	local modules=$1 cache m missing= deb paths p
	cache=${HETSGD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hetsgd}
	BED_KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	[ -n "$BED_KPKG" ] || bed_die "apt-cache does not know linux-image-amd64: run apt-get update (or ./setup.sh)"
	BED_KVER=${BED_KPKG#linux-image-}
	BED_KDIR=$cache/$BED_KPKG
	if [ -f "$BED_KDIR/complete" ]; then
		for m in $modules; do [ -f "$BED_KDIR/mods/$m.ko" ] || missing="$missing $m"; done
		[ -z "$missing" ] && return 0
		echo "$BED_NAME: the cached $BED_KPKG lacks$missing: fetching it again"
	fi
	echo "$BED_NAME: fetching $BED_KPKG (once; cached in $BED_KDIR)"
	rm -rf "$BED_KDIR"; mkdir -p "$BED_KDIR/dl"
	chmod 755 "$BED_KDIR/dl"
	( cd "$BED_KDIR/dl" && apt-get download "$BED_KPKG" ) >"$BED_KDIR/download.log" 2>&1 ||
		{ cat "$BED_KDIR/download.log" >&2; bed_die "apt-get download $BED_KPKG failed: check that Debian's package registry is reachable and run apt-get update"; }
	deb=$(ls "$BED_KDIR"/dl/*.deb)
	paths="./boot/vmlinuz-$BED_KVER"
	for m in $modules; do
		p=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -E "/$m\.ko$" | head -1) || true
		[ -n "$p" ] || bed_die "module $m.ko not in $BED_KPKG"
		paths="$paths $p"
	done
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$BED_KDIR" $paths
	mkdir -p "$BED_KDIR/mods"
	for m in $modules; do
		find "$BED_KDIR/lib" -name "$m.ko" -exec mv {} "$BED_KDIR/mods/" \;
	done
	rm -rf "$BED_KDIR/dl" "$BED_KDIR/lib"
	touch "$BED_KDIR/complete"
}

# bed_outmnt BUILDDIR WORK...: where a guest mounts the results share.  It
# must not hide the build tree (or any other path given), which the guest
# reads through the host's root.
bed_outmnt() {
	local d p ok
	for d in /mnt /media /srv /opt; do
		[ -d "$d" ] || continue
		ok=1
		for p in "$@"; do
			case "$p/" in "$d"/*) ok= ;; esac
		done
		[ -n "$ok" ] && { echo "$d"; return 0; }
	done
	bed_die "no mount point for results outside the build tree (tried /mnt /media /srv /opt)"
}

# bed_init_mounts MODULES OUTMNT: the part of a guest's /init that loads the
# modules, mounts the host's root (read-only) on /newroot and the results
# share on /newroot$OUTMNT, and the kernel's file systems inside.  Text
# for an unquoted here-document: \$ survives for the guest's shell.
bed_init_mounts() {
	cat <<EOF
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $1; do
	insmod /mods/\$m.ko || { echo "$BED_NAME: insmod \$m failed"; poweroff -f; }
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot ||
	{ echo "$BED_NAME: cannot mount the host root over 9p"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /newroot$2 ||
	{ echo "$BED_NAME: cannot mount the results share"; poweroff -f; }
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
EOF
}

# bed_initramfs DIR MODULES: DIR/init must exist; writes DIR.gz, an
# initramfs with busybox, DIR/init and the modules.
bed_initramfs() {
	local dir=$1 m
	mkdir -p "$dir/bin" "$dir/mods" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/newroot"
	cp "$BED_BUSYBOX" "$dir/bin/busybox"
	for m in $2; do cp "$BED_KDIR/mods/$m.ko" "$dir/mods/"; done
	chmod +x "$dir/init"
	( cd "$dir" && find . | cpio -o -H newc --quiet ) | gzip -1 > "$dir.gz"
}

# bed_console PREFIX: filter a guest's console for the terminal, from the
# first line of ours on, without firmware and kernel noise; PREFIX goes
# before every line (to tell guests apart).  A shell loop, not awk: mawk
# (Debian's awk) reads a pipe in blocks, so nothing would stream.
bed_console() {
	local pre=$1 tag="$BED_NAME: " on= line re='^\[ *[0-9]+\.[0-9]+\] '
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		if [ -z "$on" ]; then
			case $line in *"$tag"*) on=1; line=$tag${line#*"$tag"} ;; *) continue ;; esac
		fi
		[[ $line =~ $re ]] && continue
		printf '%s%s\n' "$pre" "$line"
	done
}

# bed_report OUT: one PASS or FAIL line per command from OUT/results, and
# the closing count that check-all.sh reads.  Exit 77 inside the bed is a
# failure: a bed exists to run these tests, it never passes by skipping.
bed_report() {
	local out=$1 pass=0 failn=0 rc cmd
	if [ ! -f "$out/finished" ]; then
		echo "$BED_NAME: the run did not finish (see the log above)" >&2
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
	echo "$BED_NAME: $pass passed, $failn failed"
	[ "$failn" -eq 0 ]
}

# ---- guest side (or the host's private netns) ------------------------------

# bed_rxe_up DEV NETDEV ADDR: an rxe device on NETDEV (which has ADDR),
# ACTIVE, with its RoCE v2 IPv4-mapped GID found.  Sets BED_GID_INDEX.
# Exit statuses 91-93 say which step failed.
bed_rxe_up() {
	local dev=$1 netdev=$2 addr=$3 state= i g n type gid
	if ! rdma link add "$dev" type rxe netdev "$netdev"; then
		echo "$BED_NAME: rdma link add $dev failed (is crc32 available to rdma_rxe?)"; exit 91
	fi
	ulimit -l unlimited
	# As rdma-core's udev rules do on a normal system: users may open verbs.
	chmod 0666 /dev/infiniband/uverbs* /dev/infiniband/rdma_cm 2>/dev/null
	for i in $(seq 1 50); do
		state=$(cat /sys/class/infiniband/$dev/ports/1/state 2>/dev/null || true)
		case $state in *ACTIVE*) break ;; esac
		sleep 0.2
	done
	case $state in *ACTIVE*) ;; *) echo "$BED_NAME: $dev port state '$state', not ACTIVE"; exit 92 ;; esac
	# Pick the RoCE v2 GID that carries our IPv4 address (::ffff:a.b.c.d).
	BED_GID_INDEX=
	for g in /sys/class/infiniband/$dev/ports/1/gids/*; do
		n=${g##*/}
		type=$(cat /sys/class/infiniband/$dev/ports/1/gid_attrs/types/$n 2>/dev/null || true)
		gid=$(cat "$g" 2>/dev/null || true)
		case "$type:$gid" in
		"RoCE v2:0000:0000:0000:0000:0000:ffff:"*) BED_GID_INDEX=$n; break ;;
		esac
	done
	[ -n "$BED_GID_INDEX" ] || { echo "$BED_NAME: no RoCE v2 IPv4 GID on $dev"; exit 93; }
	echo "$BED_NAME: $dev ACTIVE on $netdev ($addr), RoCE v2 GID index $BED_GID_INDEX: $(cat /sys/class/infiniband/$dev/ports/1/gids/$BED_GID_INDEX)"
}

# bed_run_cmds OUT BUILDDIR: run each line of OUT/cmds from BUILDDIR,
# streaming its output; "STATUS CMD" lines go to OUT/results.
bed_run_cmds() {
	local out=$1 builddir=$2 n=0 cmd rc start end
	while IFS= read -r cmd; do
		n=$((n + 1))
		echo "$BED_NAME: [$n] $cmd"
		start=$(date +%s.%N)
		( cd "$builddir" && eval "$cmd" ) </dev/null
		rc=$?
		end=$(date +%s.%N)
		echo "$BED_NAME: [$n] exit $rc after $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s"
		echo "$rc $cmd" >> "$out/results"
	done < "$out/cmds"
}
