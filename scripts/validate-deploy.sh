#!/usr/bin/env bash
# Validates the deployment files offline, so that a broken manifest fails CI instead of a rollout:
#
#   scripts/validate-deploy.sh
#
# - the Kubernetes kustomizations (deploy/kubernetes/{base,overlays/*,migrate,monitoring}), rendered
#   and every object checked against the Kubernetes OpenAPI schemas of the oldest and newest
#   versions we support (kubernetes-validate, strict: unknown fields fail), KEDA's ScaledObject and
#   the operator's PodMonitor against the schemas in deploy/kubernetes/schemas/, and Kiln's own
#   rules (probes, resources, security contexts, selectors, PodDisruptionBudgets, no Secret objects,
#   only known KILN_* variables);
# - docker-compose.yml against the compose specification, with Docker Compose's own `config` (every
#   profile), and its health checks and dependencies;
# - the GitHub workflows against their schema;
# - the Prometheus configs and alert rules with promtool, and the rules' unit tests;
# - the Grafana dashboard's JSON, and every query of it and of the autoscaler parsed by promtool;
# - that every kiln_* metric the dashboard, the alerts and the autoscaler use is in docs/metrics.md;
# - the edge's nginx config as the containers render it (nginx -t), and the Dockerfile's promises;
# - yamllint (relaxed) over every YAML file.
#
# Needs only Debian's package repositories and PyPI: the Python tools go into a venv under
# ${XDG_CACHE_HOME:-~/.cache}/kiln (rebuilt when scripts/validate-deploy-requirements.txt changes),
# and kubectl (for `kubectl kustomize`) and promtool are unpacked from Debian's kubernetes-client
# and prometheus packages into the same cache without being installed. Exits non-zero, naming the
# file and the problem, when anything is invalid.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kiln"
VENV="$CACHE/validate-deploy-venv"
REQUIREMENTS="$KILN_ROOT/scripts/validate-deploy-requirements.txt"
mkdir -p "$CACHE"

# Python's venv for the validators, and nginx for `nginx -t`.
ensure_packages python3-venv nginx

# unpack_deb PACKAGE BINARY: unpacks the candidate version of a Debian package into the cache (once
# per version) and prints the path of BINARY inside it. Nothing is installed: the binaries run from
# the cache, so they cannot clash with a kubectl or a Prometheus installed otherwise.
unpack_deb() {
  local pkg=$1 binary=$2 version dir
  version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    as_root apt-get update -q >/dev/null
    version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
  fi
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then die "Debian has no package $pkg"; fi
  dir="$CACHE/debs/$pkg-$version"
  if [ ! -x "$dir/root$binary" ]; then
    log "unpacking Debian's $pkg $version into $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$pkg=$version" >/dev/null) \
      || die "apt-get download $pkg=$version failed"
    dpkg-deb -x "$dir"/*.deb "$dir/root" && rm -f "$dir"/*.deb
  fi
  [ -x "$dir/root$binary" ] || die "$pkg $version has no $binary"
  echo "$dir/root$binary"
}

KUBECTL=$(unpack_deb kubernetes-client /usr/bin/kubectl)
PROMTOOL=$(unpack_deb prometheus /usr/bin/promtool)

ensure_venv "$VENV" "$REQUIREMENTS" "the validators" python -c 'import kubernetes_validate, check_jsonschema, yamllint'

# Docker Compose's own check of docker-compose.yml: the real v2 client where it is installed (the
# checks use it then), else the last Python release of the client, in a venv of its own.
COMPOSE_VENV="$CACHE/validate-deploy-compose-venv"
COMPOSE_REQUIREMENTS="$KILN_ROOT/scripts/validate-deploy-compose-requirements.txt"
COMPOSE=""
if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
else
  ensure_venv "$COMPOSE_VENV" "$COMPOSE_REQUIREMENTS" "docker-compose 1.29.2" docker-compose version
  COMPOSE="$COMPOSE_VENV/bin/docker-compose"
fi

# A second renderer, when one is on PATH (a current kubectl or kustomize): the kustomizations must
# give the same objects with it as with Debian's older kubectl.
MODERN=""
if command -v kustomize >/dev/null 2>&1; then
  MODERN="kustomize build"
elif command -v kubectl >/dev/null 2>&1 && [ "$(command -v kubectl)" != "$KUBECTL" ] \
     && kubectl kustomize --help >/dev/null 2>&1; then
  MODERN="kubectl kustomize"
fi

exec "$VENV/bin/python" "$KILN_ROOT/scripts/validate-deploy.py" \
  --root "$KILN_ROOT" --kubectl "$KUBECTL" --promtool "$PROMTOOL" --modern-kustomize "$MODERN" \
  --bin "$VENV/bin" --compose "$COMPOSE"
