#!/usr/bin/env bash
# Checks the operators' deployment files (docs/deployment.md):
#   * deploy/prometheus: promtool check rules, the rules' unit tests (every
#     alert firing and not firing), and the compose stack's prometheus.yml;
#   * deploy/kubernetes: the base and every overlay rendered (kubectl
#     kustomize where kubectl exists, else scripts/check-deploy/
#     render_kustomization.py, and both must agree) and every manifest
#     validated with kubernetes-validate against Kubernetes $K8S_VERSION.
# Needs promtool (Debian: prometheus) and python3 with venv; the PyPI tools,
# pinned in scripts/check-deploy/requirements.txt, go into a virtual
# environment under target/.
#
#   K8S_VERSION         Kubernetes version to validate against (default 1.34.0)
#   CHECK_DEPLOY_VENV   where the virtual environment lives (default target/check-deploy-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

k8s_version=${K8S_VERSION:-1.34.0}
venv=${CHECK_DEPLOY_VENV:-target/check-deploy-venv}
requirements=scripts/check-deploy/requirements.txt

promtool check rules deploy/prometheus/rules.yml
(cd deploy/prometheus && promtool test rules rules.test.yml)
promtool check config --syntax-only deploy/prometheus/prometheus.yml

scripts/python-venv.sh "$venv" "$requirements"
python="$venv/bin/python"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The (kind, namespace, name) of every document, to compare two renderings.
inventory() {
  "$python" -c 'import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d: print(d["kind"], d["metadata"].get("namespace", "-"), d["metadata"]["name"])' | sort
}
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  "$python" scripts/check-deploy/render_kustomization.py "$dir" > "$out/$name.yaml"
  if command -v kubectl >/dev/null; then
    kubectl kustomize "$dir" > "$out/$name.kubectl.yaml"
    if ! diff <(inventory < "$out/$name.yaml") <(inventory < "$out/$name.kubectl.yaml"); then
      echo "check-deploy: $dir renders differently with kubectl kustomize" >&2
      exit 1
    fi
  fi
  echo "check-deploy: validating $dir against Kubernetes $k8s_version"
  "$venv/bin/kubernetes-validate" --quiet --strict --kubernetes-version "$k8s_version" "$out"/"$name"*.yaml
done
