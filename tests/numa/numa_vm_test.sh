#!/usr/bin/env bash
# numa_vm_test.sh: CTest driver of the NUMA tests. 'setup' prepares numa-vm, 'run' boots one VM
# for a group of cases and splits its output per case, 'result' reports one case of a run.
#
#   numa_vm_test.sh setup
#   numa_vm_test.sh run GROUP RESULTS_DIR [numa-vm options...] -- 'NAME|COMMAND'...
#       Boots one VM (numa-vm options as given: --nodes, --thp, --file, --env LD_PRELOAD=...),
#       runs each COMMAND inside it in turn (through vm_cases.sh), keeps each one's output in
#       RESULTS_DIR/GROUP/NAME.log and exit status in NAME.rc. Exits 0 when the VM ran every
#       case (whatever their verdicts), 1 when numa-vm could not run them (its exits 124: timeout,
#       125: VM or setup failure) or the VM stopped early: an infrastructure failure.
#       A run that fails so keeps a copy of its logs in RESULTS_DIR/failed/GROUP-DATE-PID.
#   numa_vm_test.sh result GROUP RESULTS_DIR NAME
#       Prints the case's output and exits 0 if it passed, 1 otherwise.
#
# numa-vm is found in $NUMA_VM_TOOLS, by default ../shared/tools/numa-vm beside the project root.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=${NUMA_VM_TOOLS:-$root/../shared/tools/numa-vm}

die() { echo "numa_vm_test: $*" >&2; exit 1; }

check_tools() {
  [[ -x $tools/numa-vm && -x $tools/setup.sh ]] ||
    die "INFRASTRUCTURE: numa-vm not found in $tools" \
        "(set NUMA_VM_TOOLS, or put the shared tools beside the project)"
}

do_setup() {
  check_tools
  local t0=$SECONDS
  if ! "$tools/setup.sh"; then
    die "INFRASTRUCTURE: $tools/setup.sh failed" \
        "(it needs root for its apt installs and the network for the kernel package)"
  fi
  echo "numa_vm_test: numa-vm ready ($((SECONDS - t0)) s)"
}

do_run() {
  local group=$1 results=$2
  shift 2
  local -a vm_opts=() cases=()
  while (($#)) && [[ $1 != -- ]]; do vm_opts+=("$1"); shift; done
  (($#)) && shift
  cases=("$@")
  ((${#cases[@]})) || die "run $group: no cases"
  check_tools
  local dir=$results/$group
  rm -rf "$dir" && mkdir -p "$dir" || die "cannot create $dir"
  local c
  for c in "${cases[@]}"; do
    [[ $c == *'|'* ]] || die "run $group: case '$c' is not NAME|COMMAND"
    printf '%s\t%s\n' "${c%%|*}" "${c#*|}"
  done >"$dir/cases"

  echo "numa_vm_test: group $group: numa-vm ${vm_opts[*]}"
  local t0=$SECONDS rc
  "$tools/numa-vm" "${vm_opts[@]}" --file "$here/vm_cases.sh:/numa/vm_cases.sh" \
    --file "$dir/cases:/numa/cases" -- sh /numa/vm_cases.sh /numa/cases \
    2>"$dir/vm.err" | tee "$dir/vm.log"
  rc=${PIPESTATUS[0]}
  cat "$dir/vm.err" >&2  # numa-vm's own messages (few: why the VM stopped, its last lines)
  echo "numa_vm_test: group $group: VM exit $rc after $((SECONDS - t0)) s" | tee -a "$dir/vm.err"

  # Split the stream at the markers that vm_cases.sh writes.
  awk -v dir="$dir" '
    /^@@numa-case / {
      name = $2; sub(/:$/, "", name); out = dir "/" name ".log"; printf "" > out; next
    }
    /^@@numa-end / {
      split($3, kv, "="); print kv[2] > (dir "/" $2 ".rc"); close(out); out = ""; next
    }
    out != "" { print > out }
  ' "$dir/vm.log"

  local missing=() summary=()
  for c in "${cases[@]}"; do
    local name=${c%%|*}
    if [[ -f $dir/$name.rc ]]; then
      local r verdict
      r=$(<"$dir/$name.rc")
      case $r in
        0) verdict=PASS ;; 1) verdict=FAIL ;; 2) verdict=ERROR ;; *) verdict="exit $r" ;;
      esac
      summary+=("  $verdict  $name  $(sed -n 's/^[a-z_]*: worst/worst/p' "$dir/$name.log" | head -1)")
    else
      missing+=("$name")
      summary+=("  NOT RUN  $name")
    fi
  done
  echo "numa_vm_test: group $group summary:"
  printf '%s\n' "${summary[@]}"
  # An infrastructure failure is rare and the next run overwrites $dir: keep its logs (the VM's
  # output, numa-vm's messages with the console's last lines) where the next run leaves them.
  if ((rc != 0 || ${#missing[@]})); then
    local keep
    keep=$results/failed/$group-$(date +%Y%m%d-%H%M%S)-$$
    mkdir -p "$keep" && cp -p "$dir"/* "$keep"/ && echo "numa_vm_test: logs kept in $keep"
  fi
  if ((rc == 124)); then
    die "INFRASTRUCTURE: numa-vm timed out (exit 124) in group $group;" \
        "no placement verdict for: ${missing[*]:-none}"
  elif ((rc == 125)); then
    die "INFRASTRUCTURE: numa-vm or the VM failed (exit 125) in group $group" \
        "(see its message above); not a placement result"
  elif ((rc != 0)); then
    die "INFRASTRUCTURE: the case runner in the VM exited $rc in group $group"
  elif ((${#missing[@]})); then
    die "INFRASTRUCTURE: the VM stopped before these cases finished: ${missing[*]}"
  fi
}

do_result() {
  local group=$1 results=$2 name=$3 dir=$2/$1
  if [[ ! -f $dir/$name.rc ]]; then
    die "no result for $name: VM group $group did not run it" \
        "(see test numa_${group}_vm, $dir/vm.log)"
  fi
  local cmd
  cmd=$(awk -F'	' -v n="$name" '$1 == n { print $2 }' "$dir/cases")
  echo "numa_vm_test: case $name of VM group $group: $cmd"
  cat "$dir/$name.log"
  local r
  r=$(<"$dir/$name.rc")
  case $r in
    0) exit 0 ;;
    1) echo "numa_vm_test: $name FAILED (placement or API check above)"; exit 1 ;;
    2) echo "numa_vm_test: $name could not measure (ERROR above)"; exit 1 ;;
    *) echo "numa_vm_test: $name exited $r in the VM (137: killed, e.g. out of memory)"; exit 1 ;;
  esac
}

case ${1:-} in
  setup) do_setup ;;
  run)
    (($# >= 4)) || die "usage: run GROUP RESULTS_DIR [numa-vm options] -- NAME|COMMAND..."
    shift
    do_run "$@" ;;
  result)
    (($# == 4)) || die "usage: result GROUP RESULTS_DIR NAME"
    shift
    do_result "$@" ;;
  *) die "usage: numa_vm_test.sh setup | run ... | result ... (see the comment at its top)" ;;
esac
