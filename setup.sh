#!/usr/bin/env bash
# Install everything closebench uses on Debian/Ubuntu, then run the default comparison.
#   sudo ./setup.sh              install, probe every strategy, run the seed scenario (about 1 min)
#   sudo ./setup.sh --install    install only
set -euo pipefail
cd "$(dirname "$0")"

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh installs Debian packages: run it as root (sudo ./setup.sh)" >&2
  exit 2
fi

# chromium: the browser attacker drives it headless; the report tests render index.html in it.
packages=(iproute2 util-linux procps nftables tcpdump curl wrk python3 python3-venv python3-pip
  chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "installed: .venv/bin/closebench"

if [[ ${1:-} != "--install" ]]; then
  .venv/bin/closebench probe
  .venv/bin/closebench run
  echo "report: reports/latest/summary.json (and attempts.jsonl, samples.csv, pcaps/)"
fi
