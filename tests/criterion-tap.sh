#!/bin/sh
# Run a Criterion test program with TAP on stdout for automake's
# tap-driver; Criterion's own report (with its Synthesis line) stays on
# stderr and lands in the test's .log file.
exec "$1" --tap=- -j1
