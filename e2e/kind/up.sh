#!/usr/bin/env bash
# Create Tierra's three-tier fleet as kind clusters with kwok-managed fake accelerator nodes.
#
# Needs Docker, kind, kubectl and the `tierra` CLI on PATH. Re-running is safe: existing
# clusters are kept, and kwok and the nodes are re-applied.
#
# Environment:
#   CLUSTERS       clusters to create (default: "central regional edge")
#   KWOK_VERSION   kwok release to install (default: v0.7.0)
#   TIERRA         command that runs the Tierra CLI (default: tierra)
#   WAIT_TIMEOUT   kubectl wait timeout (default: 300s)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
clusters="${CLUSTERS:-central regional edge}"
kwok_version="${KWOK_VERSION:-v0.7.0}"
kwok_url="https://github.com/kubernetes-sigs/kwok/releases/download/${kwok_version}"
wait_timeout="${WAIT_TIMEOUT:-300s}"
read -r -a tierra <<<"${TIERRA:-tierra}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl "${tierra[0]}"; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH (see e2e/kind/README.md)"
done
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine ('docker info' failed)"

for c in $clusters; do
  name="tierra-${c}"
  config="${here}/${c}.yaml"
  [[ -f "$config" ]] || die "no kind config for cluster '${c}' (${config})"

  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    log "${name}: cluster exists, keeping it"
  else
    log "${name}: creating kind cluster"
    kind create cluster --config "$config" --wait "$wait_timeout"
  fi

  # kind names the context kind-<cluster>; Tierra's fleet uses tierra-<cluster>.
  kind export kubeconfig --name "$name"
  kubectl config delete-context "$name" >/dev/null 2>&1 || true
  kubectl config rename-context "kind-${name}" "$name" >/dev/null
  ctx="$name"

  log "${name}: installing kwok ${kwok_version}"
  kubectl --context "$ctx" apply -f "${kwok_url}/kwok.yaml"
  kubectl --context "$ctx" wait --for=condition=Established --timeout="$wait_timeout" \
    crd/stages.kwok.x-k8s.io
  kubectl --context "$ctx" apply -f "${kwok_url}/stage-fast.yaml"
  kubectl --context "$ctx" -n kube-system rollout status deployment/kwok-controller \
    --timeout="$wait_timeout"

  log "${name}: creating fake accelerator nodes"
  nodes="$("${tierra[@]}" fleet nodes --cluster "$c")"
  [[ -n "$nodes" ]] || die "'${tierra[*]} fleet nodes --cluster ${c}' printed nothing"
  printf '%s\n' "$nodes" | kubectl --context "$ctx" apply -f -

  log "${name}: waiting for nodes to be Ready"
  kubectl --context "$ctx" wait --for=condition=Ready nodes --all --timeout="$wait_timeout"
done

log "fleet ready; contexts:"
for c in $clusters; do
  printf '  tierra-%s\n' "$c" >&2
done
