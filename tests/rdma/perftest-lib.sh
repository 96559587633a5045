# Sourced by the RDMA bed's scripts: run perftest's server and client on
# the bed's device and pick numbers out of their tables.
dev=${HETSGD_RDMA_DEV:?set HETSGD_RDMA_DEV (the bed does)}
gid=${HETSGD_GID_INDEX:-1}
addr=${HETSGD_TEST_ADDR:?set HETSGD_TEST_ADDR (the bed does)}
tmp=${TMPDIR:-/tmp}

for t in ib_write_bw ib_write_lat; do
	command -v $t >/dev/null || { echo "$t not found: apt-get install perftest" >&2; exit 1; }
done

# PERFTEST_REMOTE, when set, is a command prefix that runs the client on
# another node (the two-node bed: srun -w node2 ...); the client then uses
# that node's HETSGD_RDMA_DEV and HETSGD_GID_INDEX, and reaches this
# node's server at HETSGD_TEST_ADDR.
perftest_client() {
	if [ -n "${PERFTEST_REMOTE:-}" ]; then
		$PERFTEST_REMOTE sh -c 'exec "$0" -d "$HETSGD_RDMA_DEV" -x "${HETSGD_GID_INDEX:-1}" "$@"' "$@"
	else
		"$1" -d "$dev" -x "$gid" "${@:2}"
	fi
}

# perftest_pair NAME PORT ARGS...: server in the background, client in
# front (retried while the server is not listening yet); prints the
# client's output, or both on failure.
perftest_pair() {
	local name=$1 port=$2 srv_out="$tmp/$1.server.$$" cli_out="$tmp/$1.client.$$" rc=1 try
	shift 2
	"$name" -d "$dev" -x "$gid" -p "$port" -F "$@" >"$srv_out" 2>&1 &
	local spid=$!
	sleep 1
	for try in 1 2 3 4 5; do
		perftest_client "$name" -p "$port" -F "$@" "$addr" >"$cli_out" 2>&1 && { rc=0; break; }
		rc=$?
		grep -q "Couldn't connect" "$cli_out" || break
		sleep 1
	done
	# A server whose client gave up would wait for it for ever.
	[ "$rc" -eq 0 ] || kill "$spid" 2>/dev/null
	wait $spid || rc=1
	cat "$cli_out"
	if [ "$rc" -ne 0 ]; then
		echo "--- $name server output:"; cat "$srv_out"
	fi
	rm -f "$srv_out" "$cli_out"
	return $rc
}

# The result row is the one whose first field is the message size.
perftest_row() { awk -v s="$1" '$1 == s { print; exit }'; }
# ib_write_bw: BW average [MB/sec] is field 4; ib_write_lat: t_typical is field 5.
perftest_bw() { perftest_row "$1" | awk '{ print $4 }'; }
perftest_lat() { perftest_row "$1" | awk '{ print $5 }'; }
# ib_write_bw: MsgRate [Mpps] is field 5.
perftest_rate() { perftest_row "$1" | awk '{ print $5 }'; }
is_number() { case $1 in ''|*[!0-9.]*) return 1;; esac; }
# A measurement: a number above zero.  When its cycle-counter calibration
# fails under TCG ("Correlation coefficient r^2 ... < 0.9"), perftest
# prints 0.00 MB/s as readily as inf.
is_measure() { is_number "$1" && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }

# perftest_value bw|rate|lat PORT SIZE ARGS... (rate: ib_write_bw's MsgRate): run the pair and print the one
# number; the full output goes to stderr.  Under emulation perftest now and
# then reports "inf" or 0 (its cycle counter calibration failed): retry then.
perftest_value() {
	local what=$1 port=$2 size=$3 out v try prog
	shift 3
	prog=$([ "$what" = lat ] && echo ib_write_lat || echo ib_write_bw)
	for try in 1 2 3; do
		out=$(perftest_pair "$prog" "$port" -s "$size" "$@") || { echo "$out" >&2; return 1; }
		echo "$out" >&2
		case $what in
		bw) v=$(echo "$out" | perftest_bw "$size") ;;
		rate) v=$(echo "$out" | perftest_rate "$size") ;;
		*) v=$(echo "$out" | perftest_lat "$size") ;;
		esac
		if is_measure "$v"; then echo "$v"; return 0; fi
		echo "perftest: $prog -s $size gave no number (try $try of 3)" >&2
	done
	return 1
}
