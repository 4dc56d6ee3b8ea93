#!/usr/bin/env bash
# Builds the baton image offline: a statically linked baton built on the host, copied
# into `FROM scratch` (see ../Dockerfile). Nothing is pulled from a registry.
#
#   docker/build-image.sh                 # release build, tag baton:<version>
#   docker/build-image.sh --debug --tag baton:dev
#
# Needs cargo with the x86_64-unknown-linux-gnu target and a reachable Docker Engine.
set -euo pipefail

profile=release
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --tag) tag="${2:?--tag needs a value}"; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1 (use --debug, --tag NAME:TAG)" >&2; exit 2 ;;
  esac
  shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=x86_64-unknown-linux-gnu
if [ -z "$tag" ]; then
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  tag="baton:${version:-latest}"
fi

release_flag=()
[ "$profile" = release ] && release_flag=(--release)
# A debug image is for checking the recipe (the tests build one): no debug info (the
# image strips it anyway) and dependencies unoptimized, so the whole tree builds in
# a fraction of the time.
[ "$profile" = debug ] && release_flag=(--config profile.dev.debug=0 \
  --config 'profile.dev.package."*".opt-level=0')
# crt-static links glibc into the binary, so the image needs no libc. Same flags as the
# docker runtime's test images, so both share one build cache.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build "${release_flag[@]}" --target "$target" -p baton --bin baton

bin="${CARGO_TARGET_DIR:-$root/target}/$target/$profile/baton"
if command -v ldd >/dev/null 2>&1 && ldd "$bin" 2>/dev/null | grep -q '=>'; then
  echo "build-image.sh: $bin is dynamically linked; FROM scratch cannot run it" >&2
  exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# Debug info is of no use in the image and is most of a debug build's size.
if command -v strip >/dev/null 2>&1; then
  strip -o "$context/baton" "$bin"
else
  cp "$bin" "$context/baton"
fi
cp "$root/Dockerfile" "$context/Dockerfile"
docker build --quiet --tag "$tag" "$context" >/dev/null
echo "built image $tag ($(du -h "$context/baton" | cut -f1) binary, $profile)"
