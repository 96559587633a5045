#!/bin/sh
# Runs the verbs smoke test.  Under make check (no device) the program
# itself exits 77 and automake reports SKIP; in the soft-RoCE bed it runs
# on rxe and must pass.
exec "${HETSGD_BUILDDIR:-.}/tests/rdma/hetsgd-verbs-smoke" "$@"
