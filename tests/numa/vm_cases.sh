#!/bin/sh
# vm_cases.sh: runs inside numa-vm (busybox sh). Runs each case of a file of "NAME<TAB>COMMAND"
# lines in turn, framing its output with markers that numa_vm_test.sh splits into per-case logs.
cases=${1:?usage: vm_cases.sh CASES_FILE}
tab=$(printf '\t')
while IFS="$tab" read -r name cmd; do
  [ -n "$name" ] || continue
  echo "@@numa-case $name: $cmd"
  sh -c "$cmd" </dev/null 2>&1
  echo "@@numa-end $name rc=$?"
done <"$cases"
echo "@@numa-all-done"
