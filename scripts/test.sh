#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, lints, checks
# the generated code, then runs every tier (unit, sim, e2e, lab) with node:test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v redis-cli >/dev/null 2>&1 || need_pkgs+=(redis-tools)
if ((${#need_pkgs[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_pkgs[*]} from Debian for the lab tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}") >/dev/null
  else
    echo "test.sh: WARNING: ${need_pkgs[*]} missing and cannot be installed (not root): lab tests will report that they cannot run"
  fi
fi

npm run --silent build
npm run --silent lint
npm run --silent typecheck
npm run --silent check:gen
node scripts/run-tests.mjs unit sim e2e lab
