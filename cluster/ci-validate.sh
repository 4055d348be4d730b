#!/usr/bin/env bash
# CI: ray-cluster.yaml must validate against the KubeRay CRDs, and a deliberately broken
# copy of it must be rejected (exit 1) with both mistakes named: a validator that accepts
# everything would otherwise pass CI too.
#
# Usage: cluster/ci-validate.sh CRD_DIR     (uses the rgs on PATH; run from anywhere)
set -euo pipefail
crds="${1:?usage: cluster/ci-validate.sh CRD_DIR (the KubeRay CRDs, e.g. ../shared/kuberay-crds)}"
crds="$(cd "$crds" && pwd)"
cd "$(dirname "$0")/.."

echo "== rgs cluster validate ray-cluster.yaml --crds $crds"
rgs cluster validate ray-cluster.yaml --crds "$crds"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
broken="$work/ray-cluster.broken.yaml"
# Two mistakes that nothing else would catch: Serve ignores an unknown key (the replica
# would run with the default of 5 requests in flight) and the API server prunes an
# unknown field (imagePullSecrets belongs to the pod, not the container).
sed -e 's/max_ongoing_requests:/max_ongoing_request:/' \
    -e 's/^\( *\)image: ray-rgs:\(.*\)$/&\n\1imagePullSecret: registry-credentials/' \
    ray-cluster.yaml >"$broken"
if ! grep -q 'max_ongoing_request:' "$broken" || ! grep -q 'imagePullSecret:' "$broken"; then
    echo "ci-validate: the breakage did not apply to ray-cluster.yaml; update this script" >&2
    exit 1
fi

echo "== rgs cluster validate (a broken copy; must fail with exit 1)"
set +e
output="$(rgs cluster validate "$broken" --crds "$crds" 2>&1)"
status=$?
set -e
echo "$output"
if [ "$status" -ne 1 ]; then
    echo "ci-validate: expected exit 1 for the broken copy, got $status" >&2
    exit 1
fi
for expected in \
    'max_ongoing_request: unknown key (did you mean max_ongoing_requests?)' \
    'containers[0].imagePullSecret: unknown field'; do
    if ! grep -qF -- "$expected" <<<"$output"; then
        echo "ci-validate: the broken copy's report does not name: $expected" >&2
        exit 1
    fi
done
echo "== ci-validate: OK (the manifest validates; the broken copy is rejected)"
