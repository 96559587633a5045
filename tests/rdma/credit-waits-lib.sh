# Sourced by the RDMA bed's scripts: the check that a bandwidth stream is
# never credit-bound.  Input: hetsgd-bench --csv rows (provider,size_bytes,
# bw,lat_us,msg_Mpps,credit_waits,window_waits); credit_waits counts puts
# refused for want of a free slot at the receiver or a send-queue entry,
# after the first quarter of each run (hetsgd-bench(1)).
#
# credit_waits_check LABEL < CSV: prints each size's waits; exit 1 (with
# the sizes named) when any row of 64 KiB or more has a credit wait.
credit_waits_check() {
	awk -F, -v label="$1" '
		NR == 1 || $1 == "memcpy" { next }
		$2 >= 65536 {
			printf "%s: %8d-byte blocks: %d credit waits, %d send-window waits\n", label, $2, $6, $7
			if ($6 == "" || $6 + 0 > 0) bad = bad " " $2
			rows++
		}
		END {
			if (!rows) { printf "%s: FAIL: no bandwidth rows of 64 KiB or more to check\n", label; exit 1 }
			if (bad != "") { printf "%s: FAIL: the sender waited for a credit streaming blocks of%s bytes: the pipeline is credit-bound\n", label, bad; exit 1 }
			printf "%s: no credit waits from 64 KiB up\n", label
		}'
}
