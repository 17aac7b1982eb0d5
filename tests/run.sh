#!/bin/sh
# Runs every test program given, sums their "N passed, N failed" lines and prints the total.
# A program that crashes or prints no summary line counts as one failure.
passed=0; failed=0
for t in "$@"; do
  name=$(basename "$t")
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^ *ok ' 
  line=$(printf '%s\n' "$out" | grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
  if [ -z "$line" ]; then
    echo "$name: no summary line (exit $rc): counted as 1 failed"; failed=$((failed + 1)); continue
  fi
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "$name: exit $rc with no failed test: counted as 1 failed"; f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
