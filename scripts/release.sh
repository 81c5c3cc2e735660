#!/usr/bin/env bash
# Builds static modelslot binaries (CGO_ENABLED=0: no C library needed at run
# time) for linux, darwin and windows on amd64 and arm64 into dist/, with a
# SHA256SUMS file. The version comes from the checkout (git describe) unless
# VERSION is set; `modelslot version` prints it with the revision and the
# build time.
#
#   scripts/release.sh              # all six targets
#   VERSION=v0.3.0 scripts/release.sh linux/arm64 darwin/arm64
set -euo pipefail
cd "$(dirname "$0")/.."

version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
built="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64)
fi

mkdir -p dist
for t in "${targets[@]}"; do
  os="${t%/*}" arch="${t#*/}"
  ext=""
  [ "$os" = windows ] && ext=".exe"
  out="dist/modelslot-${version}-${os}-${arch}${ext}"
  echo "== $out"
  # -buildvcs=auto: stamp the revision even where GOFLAGS turns it off.
  CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath -buildvcs=auto \
    -ldflags "-s -w -X main.buildTime=${built}" -o "$out" ./cmd/modelslot
done
(cd dist && sha256sum modelslot-"${version}"-* > SHA256SUMS)
echo "== dist/SHA256SUMS"
cat dist/SHA256SUMS
