#!/usr/bin/env bash
# Runs the libFuzzer targets built in BUILD_DIR (make fuzz builds them),
# one after the other, each for SECONDS, and prints what each did.
#
#   tools/fuzz.sh BUILD_DIR SECONDS [TARGET...]    (targets: decode manifest uri xml http_reply fields shard_index tar cache_entry)
#
# Each target keeps its corpus in BUILD_DIR/corpus/<target> between runs and
# also reads the generated seeds (BUILD_DIR/seeds/<target>) and the committed
# reproducers of past findings (fuzz/regressions/<target>). A crash, an
# input slower than -timeout, or one that makes the process exceed
# -rss_limit_mb / -malloc_limit_mb is a finding: its input is written to
# BUILD_DIR/findings/ and the script exits non-zero after the other targets.
# CPU time (user + sys), executions and coverage go to stdout and are
# appended to BUILD_DIR/fuzz-log.tsv.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tools/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: tools/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode manifest uri xml http_reply fields shard_index tar cache_entry)

# Inputs longer than this are not generated; an image seed is < 2 KB, the
# limit leaves room for growth without making each run slow.
declare -A max_len=([decode]=16384 [manifest]=4096 [uri]=1024 [xml]=8192 [http_reply]=4096
                    [fields]=4096 [shard_index]=4096 [tar]=8192 [cache_entry]=4096)
declare -A dict=([manifest]=src/stoker/dataset/manifest_fuzz.dict
                 [shard_index]=src/stoker/dataset/shard_index_fuzz.dict
                 [tar]=src/stoker/dataset/tar_fuzz.dict
                 [cache_entry]=src/stoker/storage/cache/cache_entry_fuzz.dict
                 [uri]=src/stoker/storage/uri_fuzz.dict
                 [xml]=src/stoker/storage/s3/xml_fuzz.dict
                 [http_reply]=src/stoker/storage/http/http_reply_fuzz.dict)

python=.venv/bin/python
[ -x "$python" ] || python=python3
"$python" tools/fuzz_seeds.py "$build/seeds" >/dev/null || exit 1
mkdir -p "$build/findings"
log="$build/fuzz-log.tsv"
[ -f "$log" ] || printf 'date\ttarget\tseconds\tcpu_s\texecs\tcov\tft\tcorpus\tresult\n' >"$log"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in "${targets[@]}"; do
  bin="$build/stoker_${t}_fuzz"
  [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; exit 1; }
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  dirs=("$corpus" "$build/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  args=(-max_total_time="$seconds" -max_len="${max_len[$t]}" -rss_limit_mb=2048
        -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1
        -artifact_prefix="$build/findings/$t-")
  [ -n "${dict[$t]:-}" ] && args+=(-dict="${dict[$t]}")
  out="$build/fuzz-$t.log"
  echo "fuzz: $t for ${seconds}s ..."
  start=$(date -u +%FT%TZ)
  # CPU time of the fuzzer process (user + sys), from bash's `time`.
  TIMEFORMAT='%U %S'
  { time "$bin" "${args[@]}" "${dirs[@]}" >"$out" 2>&1; } 2>"$build/fuzz-$t.time"
  rc=$?
  cpu=$(awk '{printf "%.0f", $1 + $2}' "$build/fuzz-$t.time")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  last=$(grep -E '^#[0-9]+' "$out" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  result=ok
  if [ $rc -ne 0 ]; then
    result="FINDING (exit $rc, see $out)"
    failed+=("$t")
    grep -E '^==[0-9]+==ERROR|^SUMMARY|invariant broken|runtime error|ALARM|out-of-memory|Test unit written' "$out" | head -8
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$start" "$t" "$seconds" "$cpu" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result" >>"$log"
  echo "fuzz: $t: ${cpu} CPU-s, ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}: $result"
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: findings in: ${failed[*]} (inputs in $build/findings/)" >&2
  exit 1
fi
