#!/usr/bin/env bash
# Record a release of the retrieval.v1 protos as a Buf image, the baseline that scripts/lint.sh
# checks `buf breaking` against (buf.yaml says which rules):
#
#     bash scripts/proto_release.sh COMMIT VERSION   # e.g. 24836a2 0.1.0
#
# writes protos/releases/retrieval-v1-VERSION.binpb from the protos as committed at COMMIT (not
# the working tree), so the baseline is what that release shipped and no later commit is needed
# to check against it. Check the file in with the release.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# = 2 ] || { echo "usage: $0 COMMIT VERSION" >&2; exit 2; }
commit=$1 version=$2
BUF=.tools/node_modules/.bin/buf  # scripts/tools.sh
out=protos/releases/retrieval-v1-$version.binpb

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-tree -r --name-only "$commit" -- protos/ | grep '\.proto$' | while read -r path; do
    mkdir -p "$tmp/$(dirname "$path")"
    git show "$commit:$path" >"$tmp/$path"
done
printf 'version: v2\nmodules:\n  - path: protos\n' >"$tmp/buf.yaml"
# Without comments (the image is for breaking-change checks, which compare types, numbers and
# options); with the well-known types' files, which `buf breaking --against` resolves from the image.
(cd "$tmp" && "$OLDPWD/$BUF" build --exclude-source-info -o "$OLDPWD/$out")
echo "$out: retrieval.v1 at $(git rev-parse --short "$commit")"
