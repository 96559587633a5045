#!/bin/bash
# Two-node test bed: two qemu guests (node1, node2), each booting its own
# Debian kernel with its own rxe device on its own virtio NIC, joined by an
# emulated Ethernet wire (qemu -netdev dgram: UDP between the two qemu
# processes on 127.0.0.1; no root network set-up, no bridge, no tap), and
# a Slurm across them: munged with one key on both, slurmctld on node1,
# slurmd on both, task/cgroup + task/affinity on cgroup v2 so that binding
# is real.  Then each CMD runs on node1, where srun reaches both nodes.
#
#   two-node-bed.sh [--timeout SECONDS] [--builddir DIR] -- CMD [CMD ...]
#
# Each CMD is one shell command line, run as root from the build tree on
# node1 with:
#   SLURM_CONF          the bed's slurm.conf (nodes node1 and node2)
#   HETSGD_RDMA_DEV     node1's rxe device (hgrxe1)
#   HETSGD_GID_INDEX    its RoCE v2 IPv4-mapped GID index
#   HETSGD_TEST_ADDR    node1's address
#   HETSGD_BED_NODES    "node1 node2"; HETSGD_BED_ADDRS their addresses
#   HETSGD_BUILDDIR     the build tree
#   TMPDIR              a folder both nodes see (the results share)
# Every Slurm task gets its own node's HETSGD_RDMA_DEV, HETSGD_IB_DEV,
# HETSGD_GID_INDEX and HETSGD_TEST_ADDR (a TaskProlog).  A CMD must exit 0;
# exit 77 (skip) counts as a failure: this bed never passes by skipping.
# The 10.233.0.x addresses exist only inside the guests; on the host the
# wire is UDP on 127.0.0.1.  See ../shared/DESIGN.md, "Soft-RoCE under
# qemu" and "Single-node Slurm", for the measured facts this builds on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
srcdir=$(cd "$here/../.." && pwd -P)
BED_NAME=two-node-bed
. "$here/bed-lib.sh"
die() { bed_die "$@"; }
t_start=$(date +%s)

timeout_s=${HETSGD_2NODE_TIMEOUT:-2400}
builddir=${HETSGD_BUILDDIR:-$PWD}
usage="usage: two-node-bed.sh [--timeout S] [--builddir DIR] -- CMD..."
while [ $# -gt 0 ]; do
	case $1 in
	--timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
	--builddir) builddir=${2:?}; shift 2 ;;
	--) shift; break ;;
	*) die "unknown option $1 ($usage)" ;;
	esac
done
[ $# -gt 0 ] || die "no command to run ($usage)"
builddir=$(cd "$builddir" && pwd -P)
[ "$(id -u)" -eq 0 ] || die "must run as root (qemu 9p root share, munged key ownership); rerun with sudo"
for t in munged slurmctld slurmd srun sbatch ib_write_bw; do
	command -v $t >/dev/null || [ -x /usr/sbin/$t ] ||
		die "$t not found: run ./setup.sh (apt-get install munge slurmctld slurmd slurm-client perftest)"
done

bed_need_qemu
modules="$BED_MODULES $BED_NET_MODULES"
bed_kernel "$modules"

work=$(mktemp -d "${TMPDIR:-/tmp}/hetsgd-2node.XXXXXX")
chmod 0755 "$work"
trap '[ -n "${HETSGD_RXE_KEEP:-}" ] && echo "two-node-bed: kept $work" || rm -rf "$work"' EXIT
out=$work/out
mkdir -p "$out/tmp" "$out/slurm"
chmod 1777 "$out/tmp"
printf '%s\n' "$@" > "$out/cmds"
outmnt=$(bed_outmnt "$builddir" "$srcdir" "$work")

# Two free UDP ports on 127.0.0.1, one per end of the wire.
port_busy() { ss -Huln "sport = :$1" 2>/dev/null | grep -q .; }
p1=
for _ in $(seq 1 50); do
	p=$(( 20000 + (RANDOM * 32768 + RANDOM + $$) % 30000 ))
	port_busy $p || port_busy $((p + 1)) || { p1=$p; break; }
done
[ -n "$p1" ] || die "no two free UDP ports in 20000-50000 on 127.0.0.1 (check: ss -uln)"
p2=$((p1 + 1))

# One munge key for both nodes; each copies it to its own tmpfs.
"$(command -v mungekey || echo /usr/sbin/mungekey)" --create --keyfile="$out/slurm/munge.key" 2>/dev/null ||
	dd if=/dev/urandom of="$out/slurm/munge.key" bs=1024 count=1 status=none
chmod 0400 "$out/slurm/munge.key"
printf '127.0.0.1 localhost\n10.233.0.1 node1\n10.233.0.2 node2\n' > "$out/hosts"

# Paths under /run/hgbed are each guest's own tmpfs; paths under $outmnt
# are the share both see.  cgroup.conf sits next to slurm.conf, where
# Slurm looks for it.
cat > "$out/slurm/slurm.conf" <<EOF
ClusterName=hgbed
SlurmctldHost=node1(10.233.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=/run/hgbed/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=/run/hgbed/state
SlurmdSpoolDir=/run/hgbed/spool
TmpFS=/run/hgbed/tmp
SlurmctldPidFile=/run/hgbed/slurmctld.pid
SlurmdPidFile=/run/hgbed/slurmd.pid
SlurmctldLogFile=$outmnt/slurm/slurmctld.log
SlurmdLogFile=$outmnt/slurm/slurmd-%n.log
PlugStackConfig=$outmnt/slurm/plugstack.conf
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity
TaskProlog=$outmnt/slurm/task-prolog.sh
PropagateResourceLimitsExcept=MEMLOCK
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdTimeout=600
MessageTimeout=60
NodeName=node1 NodeAddr=10.233.0.1 CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4 ThreadsPerCore=1 State=UNKNOWN
NodeName=node2 NodeAddr=10.233.0.2 CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4 ThreadsPerCore=1 State=UNKNOWN
PartitionName=bed Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$out/slurm/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v2
CgroupMountpoint=/sys/fs/cgroup
IgnoreSystemd=yes
ConstrainCores=yes
EOF
: > "$out/slurm/plugstack.conf"
# Each node's device, for every task started there (export lines from a
# TaskProlog land in the task's environment).
cat > "$out/slurm/task-prolog.sh" <<'EOF'
#!/bin/sh
cat /run/hgbed/task.env
EOF
chmod 0755 "$out/slurm/task-prolog.sh"

# What each guest runs: $1 = node number.
cat > "$out/node.sh" <<'NODE'
#!/bin/bash
set -u
n=$1 outmnt=$2 builddir=$3
BED_NAME=two-node-bed
. "$4"
host=node$n addr=10.233.0.$n dev=hgrxe$n
other=$((3 - n))
run=/run/hgbed
fail() { echo "two-node-bed: $host: $*"; echo "$host: $*" > "$outmnt/failed.$host"; exit 1; }
# Any early exit (bed_rxe_up exits 91-93) tells the other node to stop waiting.
trap 'rc=$?; [ $rc -eq 0 ] || [ -e "$outmnt/failed.$host" ] || echo "$host: exit $rc" > "$outmnt/failed.$host"' EXIT
hostname "$host"
echo "two-node-bed: $host: kernel $(uname -r) ($(nproc) CPUs), bringing up $dev"
ip link set lo up
nic=
for f in /sys/class/net/*; do
	case ${f##*/} in lo|hgveth*) ;; *) [ -e "$f/device" ] && { nic=${f##*/}; break; } ;; esac
done
[ -n "$nic" ] || fail "no virtio NIC (is virtio_net loaded?)"
ip addr add "$addr/24" dev "$nic" && ip link set "$nic" up || fail "cannot configure $nic"
bed_rxe_up "$dev" "$nic" "$addr"
gid=$BED_GID_INDEX
echo "two-node-bed: $host: rdma link: $(rdma link show "$dev/1" 2>&1)"
ulimit -l unlimited
mkdir -p $run/munge $run/state $run/spool $run/tmp
chmod 0755 $run $run/munge; chmod 1777 $run/tmp
printf 'export HETSGD_RDMA_DEV=%s\nexport HETSGD_IB_DEV=%s\nexport HETSGD_GID_INDEX=%s\nexport HETSGD_TEST_ADDR=%s\n' \
	"$dev" "$dev" "$gid" "$addr" > $run/task.env
# The wire: wait for the other guest to answer (it may boot later).
for i in $(seq 1 120); do
	[ -e "$outmnt/failed.node$other" ] && fail "node$other failed: $(cat "$outmnt/failed.node$other")"
	busybox ping -c 1 -W 1 "10.233.0.$other" >/dev/null 2>&1 && break
	[ "$i" -lt 120 ] || fail "no answer from node$other (10.233.0.$other) over the wire in 120 s"
	sleep 1
done
echo "two-node-bed: $host: node$other answers over $nic: $(busybox ping -c 3 -q 10.233.0.$other 2>&1 | tail -1)"
# cgroup v2 for task/cgroup; the controllers Slurm constrains with.
# With IgnoreSystemd, slurmd makes its scope under system.slice itself.
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "cannot mount cgroup2"
echo "+cpuset +cpu +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
mkdir -p /sys/fs/cgroup/system.slice
echo "+cpuset +cpu +memory +pids" > /sys/fs/cgroup/system.slice/cgroup.subtree_control 2>/dev/null
echo "two-node-bed: $host: cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
[ -d /tmp ] && [ -w /tmp ] || export TMPDIR=$run/tmp
cp "$outmnt/slurm/munge.key" $run/munge/munge.key && chmod 0400 $run/munge/munge.key
munged --key-file=$run/munge/munge.key --seed-file=$run/munge/munged.seed \
	--log-file="$outmnt/slurm/munged-$host.log" --pid-file=$run/munged.pid \
	--socket=$run/munge/munge.socket.2 || fail "munged did not start"
export SLURM_CONF=$outmnt/slurm/slurm.conf
if [ "$n" = 1 ]; then
	slurmctld -c || fail "slurmctld did not start (see $outmnt/slurm/slurmctld.log)"
fi
slurmd -N "$host" || fail "slurmd did not start (see slurmd-$host.log)"
if [ "$n" = 2 ]; then
	echo "two-node-bed: $host: munged and slurmd up; serving until node1 finishes"
	while [ ! -e "$outmnt/finished" ] && [ ! -e "$outmnt/failed.node1" ]; do sleep 1; done
	exit 0
fi
state=
for i in $(seq 1 600); do
	[ -e "$outmnt/failed.node2" ] && fail "node2 failed: $(cat "$outmnt/failed.node2")"
	state=$(sinfo -h -N -o '%N=%T' 2>/dev/null | sort | tr '\n' ' ')
	[ "$state" = "node1=idle node2=idle " ] && break
	case $state in *drain*|*inval*) sinfo -N -o '%N %T %E'; fail "a node went bad: $state" ;; esac
	[ "$i" -lt 600 ] || { sinfo -N -o '%N %T %E'; fail "nodes not idle after 300 s: $state"; }
	sleep 0.5
done
echo "two-node-bed: $host: Slurm up: $state"
sinfo -N -o '%N %T %c %z' | sed 's/^/two-node-bed:   /'
export HETSGD_RDMA_DEV=$dev HETSGD_TEST_ADDR=$addr HETSGD_GID_INDEX=$gid HETSGD_BUILDDIR=$builddir
export HETSGD_BED_NODES="node1 node2" HETSGD_BED_ADDRS="10.233.0.1 10.233.0.2"
export TMPDIR=$outmnt/tmp
bed_run_cmds "$outmnt" "$builddir"
echo done > "$outmnt/finished"
NODE

init=$work/initramfs
mkdir -p "$init"
{
	echo '#!/bin/busybox sh'
	bed_init_mounts "$modules" "$outmnt"
	# The guests' names must resolve on both (srun, the TCP rendezvous).
	echo "mount --bind /newroot$outmnt/hosts /newroot/etc/hosts"
	# A writable /tmp, unless the build tree lives there.
	case "$builddir/:$srcdir/" in /tmp/*|*:/tmp/*) ;; *) echo 'mount -t tmpfs tmpfs /newroot/tmp' ;; esac
	cat <<INIT
n=\$(sed -n 's/.*hgnode=\([0-9]\).*/\1/p' /proc/cmdline)
# The pipeline ends before poweroff, so node\$n.log is complete on the host.
{ chroot /newroot /bin/bash $outmnt/node.sh \$n $outmnt "$builddir" "$here/bed-lib.sh" 2>&1
  echo "two-node-bed: node\$n: exited \$?"; } | tee /newroot$outmnt/node\$n.log
poweroff -f
INIT
} > "$init/init"
bed_initramfs "$init" "$modules"

boot() { # boot N LOCALPORT REMOTEPORT: one guest; its console streams tagged
	timeout "$timeout_s" qemu-system-x86_64 \
		-machine q35 -accel tcg,thread=multi -cpu max -m 2048 \
		-smp 4,sockets=1,cores=4,threads=1 \
		-nographic -no-reboot -nic none \
		-netdev "dgram,id=wire,local.type=inet,local.host=127.0.0.1,local.port=$2,remote.type=inet,remote.host=127.0.0.1,remote.port=$3" \
		-device "virtio-net-pci,netdev=wire,mac=52:54:00:48:47:0$1" \
		-kernel "$BED_KDIR/boot/vmlinuz-$BED_KVER" -initrd "$init.gz" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init hgnode=$1" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs local,path="$out",mount_tag=results,security_model=none,multidevs=remap \
		</dev/null 2>&1 | tee "$work/console$1.log" | bed_console "[node$1] "
	echo "${PIPESTATUS[0]}" > "$work/qemu$1.rc"
}

echo "two-node-bed: booting $BED_KPKG twice under qemu (TCG, 4 vCPUs each), wire = UDP 127.0.0.1:$p1 <-> 127.0.0.1:$p2"
set +e
boot 2 $p2 $p1 &
q2=$!
boot 1 $p1 $p2 &
q1=$!
wait $q1
# node2 powers off when node1 finishes or fails; give it a moment.
for _ in $(seq 1 60); do kill -0 $q2 2>/dev/null || break; sleep 1; done
if kill -0 $q2 2>/dev/null; then
	echo "two-node-bed: node2 did not power off after node1 stopped; stopping it"
	pkill -TERM -P $q2 2>/dev/null
fi
wait $q2
set -e
for i in 1 2; do
	rc=$(cat "$work/qemu$i.rc" 2>/dev/null || echo 1)
	if [ "$rc" -eq 124 ]; then
		echo "two-node-bed: node$i did not finish within ${timeout_s}s (--timeout or HETSGD_2NODE_TIMEOUT to raise)"
	elif [ "$rc" -ne 0 ] && [ "$rc" -ne 143 ]; then
		echo "two-node-bed: qemu of node$i exited $rc"
	fi
	# Nothing of ours reached the console: show all of it, it says why.
	grep -q 'two-node-bed: ' "$work/console$i.log" || { echo "----- console of node$i"; cat "$work/console$i.log"; }
done
if ls "$out"/failed.* >/dev/null 2>&1; then
	cat "$out"/failed.* | sed 's/^/two-node-bed: FAILED: /'
	for l in "$out"/slurm/*.log; do
		[ -f "$l" ] && { echo "----- tail $l"; tail -n 15 "$l"; }
	done
fi
rc=0
bed_report "$out" || rc=$?
echo "two-node-bed: total time $(( $(date +%s) - t_start )) s"
exit $rc
