#!/usr/bin/env bash
# Debian packages the test suite needs (idempotent). Extended by each issue that adds a part.
#   iproute2, nftables: throwaway network namespaces with a tripwire (test/support/netns.ts)
#   util-linux:         setpriv/nsenter and friends
#   cloud-init:         cloud-init 22.4's own datasources, driven by test/conformance/cloudinit_crawl.py
#                       (pulls python3-requests, python3-yaml, python3-jinja2, ... as dependencies)
#   python3:            Debian's /usr/bin/python3 (the one that sees /usr/lib/python3/dist-packages)
#   curl, jq, openssl:  the commands the documentation's examples use (test/integration/docs-examples.test.ts)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(iproute2 nftables util-linux cloud-init python3 systemd wrk curl jq openssl)

# This machine is no cloud instance and 169.254.169.254 is not ours: never let
# cloud-init run at boot (its systemd generator honours this marker). Tests
# import its Python modules directly and are not affected.
mkdir -p /etc/cloud
touch /etc/cloud/cloud-init.disabled

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
