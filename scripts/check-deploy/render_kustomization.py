"""Renders a kustomization directory to one multi-document YAML stream, for
machines without kubectl. It supports exactly the fields deploy/kubernetes
uses (resources, namespace, images, secretGenerator with literals and
disableNameSuffixHash) and refuses any other, so a new field cannot be skipped
silently. scripts/check-deploy.sh compares its output with `kubectl
kustomize` wherever kubectl exists.

usage: render_kustomization.py DIR > rendered.yaml
"""

import base64
import sys
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images",
             "secretGenerator", "generatorOptions"}
# Kinds without a namespace among those deploy/kubernetes uses.
CLUSTER_SCOPED = {"Namespace"}


def render(directory: Path) -> list:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        sys.exit(f"{directory}: unsupported kustomization fields {sorted(unsupported)}")
    docs = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs += render(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    docs += secrets(directory, kustomization)
    for image in kustomization.get("images", []):
        for container in containers(docs):
            name, _, _ = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def secrets(directory: Path, kustomization: dict) -> list:
    generators = kustomization.get("secretGenerator", [])
    options = kustomization.get("generatorOptions", {})
    if generators and not options.get("disableNameSuffixHash"):
        sys.exit(f"{directory}: secretGenerator needs disableNameSuffixHash: true here")
    docs = []
    for generator in generators:
        data = {}
        for literal in generator["literals"]:
            key, _, value = literal.partition("=")
            data[key] = base64.b64encode(value.encode()).decode()
        docs.append({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": generator["name"]},
                     "type": "Opaque", "data": data})
    return docs


def containers(docs: list):
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        yield from spec.get("containers", [])


if __name__ == "__main__":
    yaml.safe_dump_all(render(Path(sys.argv[1])), sys.stdout, sort_keys=False)
