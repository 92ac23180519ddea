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
KILN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kiln"
VENV="$CACHE/validate-deploy-venv"
REQUIREMENTS="$KILN_ROOT/scripts/validate-deploy-requirements.txt"
mkdir -p "$CACHE"

# Debian packages this needs installed: Python's venv, and nginx for `nginx -t`.
missing=()
for pkg in python3-venv nginx; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q >/dev/null
  # policy-rc.d keeps nginx's system-wide service from being started.
  as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { as_root rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
  as_root rm -f /usr/sbin/policy-rc.d
fi

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

# The venv is (re)built whenever the pinned requirements change. Debian's own Python is used, so a
# pyenv or conda python3 earlier on PATH does not matter.
stamp=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$VENV/.kiln-requirements" 2>/dev/null)" != "$stamp" ] \
   || ! "$VENV/bin/python" -c 'import kubernetes_validate, check_jsonschema, yamllint' 2>/dev/null; then
  log "installing the validators into $VENV"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV" || die "creating the venv $VENV failed"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-virtualenv \
    -r "$REQUIREMENTS" || die "installing the validators from $REQUIREMENTS failed"
  echo "$stamp" >"$VENV/.kiln-requirements"
fi

# Docker Compose's own check of docker-compose.yml: the real v2 client where it is installed (the
# checks use it then), else the last Python release of the client, in a venv of its own.
COMPOSE_VENV="$CACHE/validate-deploy-compose-venv"
COMPOSE_REQUIREMENTS="$KILN_ROOT/scripts/validate-deploy-compose-requirements.txt"
COMPOSE=""
if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
else
  stamp=$(sha256sum "$COMPOSE_REQUIREMENTS" | cut -d' ' -f1)
  if [ "$(cat "$COMPOSE_VENV/.kiln-requirements" 2>/dev/null)" != "$stamp" ] \
     || ! "$COMPOSE_VENV/bin/docker-compose" version >/dev/null 2>&1; then
    log "installing docker-compose 1.29.2 into $COMPOSE_VENV"
    rm -rf "$COMPOSE_VENV"
    /usr/bin/python3 -m venv "$COMPOSE_VENV" || die "creating the venv $COMPOSE_VENV failed"
    "$COMPOSE_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-virtualenv \
      -r "$COMPOSE_REQUIREMENTS" 2>&1 | grep -v DEPRECATION >&2 || true
    "$COMPOSE_VENV/bin/docker-compose" version >/dev/null 2>&1 \
      || die "installing docker-compose from $COMPOSE_REQUIREMENTS failed"
    echo "$stamp" >"$COMPOSE_VENV/.kiln-requirements"
  fi
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
