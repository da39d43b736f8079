#!/usr/bin/env bash
# Install everything closebench uses on Debian 12/13 or Ubuntu 22.04/24.04, then run the default
# comparison. Run it as root: `./setup.sh` as root, or `sudo ./setup.sh`. Works unattended (CI).
#   ./setup.sh                    install, probe every strategy, run the seed scenario (about 1 min)
#   ./setup.sh --install          install only
#   ./setup.sh --packages [FILE]  print the Debian/Ubuntu packages it installs here, one a line (or
#                                 for the system whose /etc/os-release is FILE); needs no root
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The Debian/Ubuntu packages closebench uses: the one list to extend. One line each:
#   PACKAGE | ITS NAME ELSEWHERE | NEED | WHAT IT IS FOR, OR WHAT GOES WITHOUT IT
# ITS NAME ELSEWHERE: ID=name or ID:VERSION_ID=name, with ID and VERSION_ID from /etc/os-release
# (a version's entry wins); `-` where that system has no such package. NEED: required (setup.sh
# fails without it), optional (it says what goes without), or browser (skipped when a Chrome or
# Chromium already runs, see closebench/attackers/chromium.py). Python packages go in pyproject.toml (its
# extras test, locust and docs are installed below).
PACKAGES='
iproute2     |                              | required | the lab (ip)
util-linux   |                              | required | the lab (unshare, nsenter)
procps       |                              | required | the lab (sysctl)
nftables     |                              | required | the fw-* bans, the scapy and volume attackers
tcpdump      |                              | required | every capture
curl         |                              | required | the curl attacker
python3      | ubuntu:22.04=python3.11      | required | closebench (Python 3.11 or later)
python3-venv | ubuntu:22.04=python3.11-venv | required | the .venv
wrk          |                              | optional | the benchmark tests/benchmarks/test_volume_rate.py is skipped
haproxy      |                              | optional | the haproxy-* strategies are skipped (they fail with CI=true)
nginx-light  | debian:13=nginx ubuntu:24.04=nginx | optional | the nginx-* strategies are skipped (they fail with CI=true)
endlessh     |                              | optional | the endlessh strategy is skipped (it fails with CI=true)
clang        |                              | optional | xdp-drop and tc-drop compile their BPF program with it; without it they are skipped
libbpf-dev   |                              | optional | the headers of that BPF program (bpf_helpers.h); without them xdp-drop and tc-drop are skipped
bpftool      | ubuntu=linux-tools-generic   | optional | loads and pins that BPF program; without it xdp-drop and tc-drop are skipped
hydra        |                              | optional | the tool attacker hydra profile (-a tool:hydra); its trials are skipped
medusa       |                              | optional | the tool attacker medusa profile; its trials are skipped
ncrack       |                              | optional | the tool attacker ncrack profile; its trials are skipped
nmap         |                              | optional | the tool attacker nmap and nmap-sV profiles; their trials and tests are skipped
masscan      |                              | optional | the tool attacker masscan profile; its trials are skipped
chromium     | ubuntu=-                     | browser  | the browser attacker (-a browser) stops with an error naming it; the report page test tests/test_report.py::test_page_renders_in_headless_chromium is skipped (it fails with CI=true)
'
SUPPORTED="Debian 12, Debian 13, Ubuntu 22.04, Ubuntu 24.04"

say() { echo "setup.sh: $*" >&2; }
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

# The system whose package names apply: os_id and os_version, from an os-release file.
read_os_release() {
  local fields
  [[ -r $1 ]] || { say "cannot read $1"; exit 2; }
  fields=$(. "$1" && printf '%s|%s|%s' "${ID:-}" "${VERSION_ID:-}" "${ID_LIKE:-}")
  IFS='|' read -r os_id os_version os_like <<<"$fields"
  case $os_id in
    debian | ubuntu) ;;
    *)
      local like
      for like in $os_like; do
        if [[ $like == ubuntu || $like == debian ]]; then
          say "$os_id is not one of $SUPPORTED: using $like's package names (ID_LIKE)"
          os_id=$like os_version=""
          return
        fi
      done
      say "$1 says ID=${os_id:-?}, and setup.sh knows Debian and Ubuntu ($SUPPORTED):" \
        "install the equivalents of $(list_packages | cut -d'|' -f1 | tr '\n' ' ')yourself," \
        "then python3 -m venv .venv && .venv/bin/pip install -e '.[test,locust,docs]'"
      exit 2
      ;;
  esac
}

# PACKAGE's name on this system (or -), from its ITS NAME ELSEWHERE entries.
package_name() {
  local package=$1 entries=$2 entry everywhere=""
  for entry in $entries; do
    case $entry in
      "$os_id:$os_version="*) echo "${entry#*=}" && return ;;
      "$os_id="*) everywhere=${entry#*=} ;;
    esac
  done
  echo "${everywhere:-$package}"
}

# Every line of PACKAGES as "package|name here|need|why" (name here: - where this system has none).
list_packages() {
  local package entries need why
  while IFS='|' read -r package entries need why; do
    package=$(trim "$package")
    [[ -n $package ]] || continue
    printf '%s|%s|%s|%s\n' "$package" "$(package_name "$package" "$entries")" "$(trim "$need")" \
      "$(trim "$why")"
  done <<<"$PACKAGES"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

find_browser() { command -v python3 >/dev/null && python3 "$here/closebench/attackers/chromium.py" 2>/dev/null; }

# Fills `wanted` (the names to install here) and `lacking` ("package (reason)|why" of those this
# system has no package for).
choose_packages() {
  local package name need why
  wanted=() lacking=()
  while IFS='|' read -r package name need why; do
    if [[ $need == browser ]] && find_browser >/dev/null; then
      continue
    elif [[ $name == - ]]; then
      local reason="no $os_id${os_version:+ $os_version} package"
      [[ $need == browser ]] && reason+=", and no Chrome or Chromium runs here"
      lacking+=("$package ($reason)|$why")
    else
      wanted+=("$name")
    fi
  done < <(list_packages)
}

# apt-get install, one package at a time when the whole set fails; sets `failed`.
install_packages() {
  local package missing=()
  failed=()
  for package in "$@"; do
    installed "$package" || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null; then
    for package in "${missing[@]}"; do
      apt-get install -y -qq --no-install-recommends "$package" </dev/null || failed+=("$package")
    done
  fi
}

# One line on what could not be installed and what goes without it; exit 1 for a required one.
report_what_is_missing() {
  local verb=$1 package name need why entry required=() missing=("${lacking[@]}")
  while IFS='|' read -r package name need why; do
    for entry in "${failed[@]}"; do
      [[ $entry == "$name" ]] || continue
      if [[ $need == required ]]; then
        required+=("$name, for $why")
      else
        missing+=("$name (apt-get failed)|$why")
      fi
    done
  done < <(list_packages)
  if ((${#required[@]})); then
    say "$verb install $(printf '%s; ' "${required[@]}")closebench needs them"
    exit 1
  fi
  ((${#missing[@]})) || return 0
  local names=() effects=()
  for entry in "${missing[@]}"; do
    names+=("${entry%%|*}")
    effects+=("${entry#*|}")
  done
  say "$verb install $(join ", " "${names[@]}"): $(join "; " "${effects[@]}")"
}

join() { local separator=$1 first=$2; shift 2; printf '%s' "$first" "${@/#/$separator}"; }

new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

# The first Python 3.11 or later: Ubuntu 22.04's python3 is 3.10, its python3.11 comes apart.
pick_python() {
  local candidate
  for candidate in python3 python3.13 python3.12 python3.11; do
    if new_enough "$candidate"; then
      echo "$candidate"
      return
    fi
  done
  say "no Python 3.11 or later found (python3 is $(python3 --version 2>&1)); install one"
  exit 1
}

main() {
  local os_release=/etc/os-release python pip
  cd "$here"
  if [[ ${1:-} == --packages ]]; then
    read_os_release "${2:-$os_release}"
    choose_packages
    printf '%s\n' "${wanted[@]}"
    failed=()
    report_what_is_missing "cannot"
    exit 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    say "installs Debian packages: run it as root (as root: ./setup.sh; otherwise: sudo ./setup.sh)"
    exit 2
  fi
  read_os_release "$os_release"
  choose_packages
  install_packages "${wanted[@]}"
  choose_packages # again: python3, which finds a browser, may have come with the packages
  report_what_is_missing "could not"

  python=$(pick_python)
  if [[ -x .venv/bin/python ]] && ! new_enough .venv/bin/python; then
    rm -rf .venv # made with an older Python
  fi
  if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
  fi
  pip=(.venv/bin/python -m pip -q --disable-pip-version-check --no-input)
  "${pip[@]}" install --upgrade pip
  # locust: the optional extra closebench[locust] (the Locust engine), which the tests cover too;
  # docs: mkdocs and its plugins, for the docs site (tests/test_docs.py builds it)
  "${pip[@]}" install -e '.[test,locust,docs]'
  echo "installed: .venv/bin/closebench"

  if [[ ${1:-} != "--install" ]]; then
    .venv/bin/closebench probe
    .venv/bin/closebench run
    echo "report: reports/latest/index.html (and summary.json, attempts/, samples.csv, pcaps/)"
  fi
}

# Sourced (by the tests), it only defines the functions above.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
