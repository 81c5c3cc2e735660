#!/usr/bin/env bash
# Runs every fuzz target for a short while (FUZZTIME, default 10s each),
# beyond the seed corpora that `go test` already runs. Not part of the test
# command: it is a smoke run for CI jobs that have the time, and a starting
# point for a longer one (FUZZTIME=10m scripts/fuzz-smoke.sh). A failure
# leaves its input under the package's testdata/fuzz/, to commit as a
# regression seed once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"

targets=(
  "./internal/wire FuzzRequest"     # request heads
  "./internal/wire FuzzResponse"    # response heads
  "./internal/wire FuzzResponseInto" # response heads merged into a proxy's header map
  "./config FuzzParse"              # the daemon's YAML file
  "./rollout FuzzParsePlan"         # rollout plans
  "./local FuzzDeployment"          # deploy requests
  "./loadgen FuzzReadEvents"        # the SSE event reader
  "./postgres FuzzUnpackSamples"    # replicas' packed samples, read back from the store
)
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "== $name ($pkg, $fuzztime)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
