#!/usr/bin/env bash
# Render the Helm chart with its default values into plain manifests, for clusters
# without Helm: deploy/kubernetes/authnode.yaml (or the file given). A test
# (tests/integration/test_helm_chart.py) fails when the committed file is out of date.
#   scripts/render_kubernetes.sh [OUT]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM="${HELM:-$(command -v helm || echo "$HOME/go/bin/helm")}"
out="${1:-$ROOT/deploy/kubernetes/authnode.yaml}"
{
    echo "# Rendered from deploy/helm/authnode with its default values by"
    echo "# scripts/render_kubernetes.sh; do not edit (change the chart and re-render)."
    echo "# Create the Secret \"authnode\" (SECRET_KEY, MONGODB_URI, REDIS_URL, POSTGRES_URL,"
    echo "# SMTP_URL) first; the Job authnode-migrate must complete before the Deployments"
    echo "# serve (Helm runs it as a hook):"
    echo "#   kubectl -n authnode apply -f deploy/kubernetes/authnode.yaml"
    "$HELM" template authnode "$ROOT/deploy/helm/authnode" --namespace authnode \
        --kube-version 1.37.0
} >"$out"
