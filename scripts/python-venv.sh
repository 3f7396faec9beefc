#!/usr/bin/env bash
# Makes sure the Python virtual environment VENV holds exactly the PyPI tools
# pinned in REQUIREMENTS, installing them afresh only when that file changed
# since the last install (scripts/api-fuzz.sh and scripts/check-deploy.sh keep
# theirs under target/). Needs python3 with its venv module.
#
#   scripts/python-venv.sh VENV REQUIREMENTS
set -euo pipefail

venv=$1
requirements=$2

if ! cmp -s "$requirements" "$venv/installed-requirements.txt" 2>/dev/null; then
  echo "python-venv: installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/installed-requirements.txt"
fi
