#!/bin/sh
# The engine's scenarios on real ranks over shm (no device, no data files):
# Rescaled vs vanilla ASGD on quadratics, LOSCAR = SGD with one worker and
# K = d, steps in flight with and without overlap, server and sharded
# averaging bitwise equal (LOSCAR and SYNC), and a failing worker that
# must end the run on every rank at once.
set -e
prog="${HETSGD_BUILDDIR:-.}/tests/algo/hetsgd-algo-check"
"$prog" --scenario quad "$@"
"$prog" --scenario loscar-sgd "$@"
"$prog" --scenario loscar-sgd --threads 2 "$@"
"$prog" --scenario overlap "$@"
"$prog" --scenario sharded "$@"
"$prog" --scenario abort "$@"
"$prog" --scenario abort --threads 3 "$@"
