#!/usr/bin/env bash
# Delete the kind clusters created by up.sh and their kubeconfig contexts.
#
# Environment:
#   CLUSTERS   clusters to delete (default: "central regional edge")
set -euo pipefail

clusters="${CLUSTERS:-central regional edge}"

command -v kind >/dev/null 2>&1 || { echo "error: 'kind' not found on PATH" >&2; exit 1; }

for c in $clusters; do
  name="tierra-${c}"
  printf '==> deleting %s\n' "$name" >&2
  kind delete cluster --name "$name"
  # up.sh renamed kind's context; kind only removes the kind-<name> entries itself.
  if command -v kubectl >/dev/null 2>&1; then
    kubectl config delete-context "$name" >/dev/null 2>&1 || true
  fi
done
