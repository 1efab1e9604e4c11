#!/usr/bin/env bash
# Builds an allot container image: `make image` (allot serve and the CLI) or
# `make image-node` (examples/node).
#
#   deploy/build-image.sh [allot|node]
#
# The Go build runs on the host (CGO_ENABLED=0, a static binary, version
# stamped with -ldflags), then podman (or docker when podman is missing)
# builds the image FROM scratch: no registry is contacted. Tags NAME:VERSION
# and NAME:latest, checks the size against MAX_MB, prints a summary on stderr
# and the image reference (NAME:VERSION) alone on stdout.
#
# Environment: VERSION (default: git describe --tags --always --dirty, or
# "dev"), ENGINE (podman or docker), GO (go), MAX_MB (40), CA_BUNDLE (the
# host's /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

what=${1:-allot}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

case "$what" in
allot) name=allot pkg=./cmd/allot bin=allot file=deploy/Containerfile ;;
node) name=allot-node pkg=./examples/node bin=node file=deploy/node.Containerfile ;;
*)
	echo "build-image.sh: unknown image \"$what\": want allot or node" >&2
	exit 2
	;;
esac

GO=${GO:-go}
MAX_MB=${MAX_MB:-40}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ -z "${ENGINE:-}" ]; then
	if command -v podman >/dev/null 2>&1; then
		ENGINE=podman
	elif command -v docker >/dev/null 2>&1; then
		ENGINE=docker
	else
		echo "build-image.sh: neither podman nor docker found (apt-get install podman runc)" >&2
		exit 1
	fi
fi
if [ ! -r "$CA_BUNDLE" ]; then
	echo "build-image.sh: no CA bundle at $CA_BUNDLE (apt-get install ca-certificates)" >&2
	exit 1
fi

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
# An image tag is [A-Za-z0-9_.-], at most 128 characters.
if ! [[ "$VERSION" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
	echo "build-image.sh: VERSION \"$VERSION\" is not a valid image tag" >&2
	exit 2
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

start=$(date +%s)
CGO_ENABLED=0 GOOS=linux "$GO" build -trimpath -buildvcs=auto \
	-ldflags "-s -w -X main.version=$VERSION" -o "$ctx/$bin" "$pkg"
cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"

"$ENGINE" build --quiet --file "$file" \
	--build-arg "VERSION=$VERSION" --build-arg "REVISION=$revision" \
	--tag "$name:$VERSION" --tag "$name:latest" "$ctx" >/dev/null

bytes=$("$ENGINE" image inspect --format '{{.Size}}' "$name:$VERSION")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1000000 }')
echo "built $name:$VERSION (and $name:latest) with $ENGINE in $(($(date +%s) - start))s: $mb MB (limit $MAX_MB MB)" >&2
if [ "$bytes" -gt $((MAX_MB * 1000000)) ]; then
	echo "build-image.sh: image $name:$VERSION is $mb MB, over the $MAX_MB MB limit" >&2
	exit 1
fi
echo "$name:$VERSION"
