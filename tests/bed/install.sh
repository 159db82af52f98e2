#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine (run as root, no Docker):
# MariaDB server + client headers, pkg-config, Chromium, openssl (the bed's TLS certificates),
# Prometheus (the bed scrapes a consumer with it), payscore with its dev and mysql extras, and
# the Kafka broker jars (cached). Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[install] %s\n' "$*"; }

# dpkg-query reports "install ok installed" only for fully installed packages.
missing=()
for pkg in mariadb-server libmariadb-dev pkg-config chromium openssl; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# Installed without its recommends (a node exporter the bed does not use). The bed starts its
# own Prometheus on a free port, as it does MariaDB; the package's system service is not used.
lean=()
command -v prometheus >/dev/null 2>&1 || lean+=(prometheus)
# Java and Maven run the Kafka broker; add them too when absent (same packages on Debian 12).
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)

if ((${#missing[@]} + ${#lean[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing packages: ${missing[*]} ${lean[*]}; run this script as root or install them with apt"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if ((${#missing[@]})); then
        say "apt-get install ${missing[*]}"
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ((${#lean[@]})); then
        say "apt-get install --no-install-recommends ${lean[*]}"
        apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
    fi
else
    say "system packages present"
fi

for tool in java mvn prometheus; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        say "error: '$tool' not found; the Kafka test broker needs Java 17+ and Maven, the bed's"
        say "scrape test needs Prometheus (Debian package prometheus)"
        exit 1
    fi
done
say "java: $(java -version 2>&1 | head -n 1)"

say "pip install -e .[dev,mysql]"
python -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[dev,mysql]"

say "fetching Kafka jars (cached after the first run)"
python -m tests.bed.kafka fetch
say "done"
