#!/bin/sh
# shm provider integration: 2, 4 and 8 processes, thousands of puts under
# back-pressure with a random schedule (the seed is printed; rerun a
# failure with --seed); then 64 ranks under the star and the all pattern,
# each rank checking its peers, segments and refused puts.  Needs no
# device, so it runs in make check.
set -e
prog="${HETSGD_BUILDDIR:-.}/tests/rdma/hetsgd-tp-check"
seed=${HETSGD_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
"$prog" --provider shm --ranks 2 --puts 5000 --slots 1 --seed "$seed" --quiet
"$prog" --provider shm --ranks 4 --puts 1000 --slots 3 --seed "$seed" --quiet
"$prog" --provider shm --ranks 3 --puts 1000 --slots 8 --more --seed "$seed" --quiet
"$prog" --provider shm --ranks 8 --puts 200 --slots 2 --slot-bytes 8192 --seed "$seed" --quiet
"$prog" --provider shm --ranks 64 --puts 20 --slots 2 --pattern star --seed "$seed" --quiet
"$prog" --provider shm --ranks 64 --puts 5 --slots 2 --pattern all --seed "$seed" --quiet
"${HETSGD_BUILDDIR:-.}/tests/rdma/hetsgd-credit-check" --provider shm
"${HETSGD_BUILDDIR:-.}/tests/rdma/hetsgd-peer-death-check" --provider shm
