#!/usr/bin/env bash
# Debian packages the test suite needs (idempotent). Extended by each issue that adds a part.
#   iproute2, nftables: throwaway network namespaces with a tripwire (test/support/netns.ts)
#   util-linux:         setpriv/nsenter and friends
#   cloud-init:         cloud-init 22.4's own datasources, driven by test/conformance/cloudinit_crawl.py
#                       (pulls python3-requests, python3-yaml, python3-jinja2, ... as dependencies)
#   python3:            Debian's /usr/bin/python3 (the one that sees /usr/lib/python3/dist-packages)
#   curl, jq, openssl:  the commands the documentation's examples use (test/integration/docs-examples.test.ts)
#   dnsmasq-base, busybox: the comm network's DHCP server and the guests' udhcpc/arping (test/integration/comm-routed.test.ts)
#   install appliances (appliance/, docs in appliance/README.md):
#     cpio, xz-utils:     the appliance build (initramfs, the kernel's xz payload); the kernel and
#                         busybox-static are fetched with `apt-get download`, never installed
#     qemu-system-x86, qemu-utils, libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients:
#                         the appliance tests run a private libvirtd (never libvirt-daemon-system:
#                         its default network adds virbr0 and NAT on the machine)
#     libvirt-dev, pkg-config, g++, make: build the optional @unraid/libvirt binding (npm ci)
#     tini:               subreaper for that libvirtd (fast domain destroy)
#     e2fsprogs:          mke2fs/debugfs for instance disk images
#   systemd-container:  systemd-nspawn boots a real systemd in a container (these machines have no
#                       systemd as PID 1) to run metad under systemd/metad.service
#                       (test/integration/systemd-live.test.ts); upgrades systemd to the same version
#   sudo:               docs/operations.md's host steps run as printed by a sudo user in such a
#                       container (test/integration/operator-live.test.ts)
#   dbus, polkitd:      Debian's libvirtd (libvirt-daemon-system, never installed here: its files
#                       are laid over the container's /usr) asks polkit who may use its socket
#                       (test/integration/libvirtd-live.test.ts)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(iproute2 nftables util-linux cloud-init python3 systemd wrk curl jq openssl
  cpio xz-utils qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  libvirt-dev pkg-config g++ make tini e2fsprogs dnsmasq-base busybox systemd-container sudo dbus polkitd)

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

# libvirt 9.0 refuses to start without this user, even with user="root" in qemu.conf.
id libvirt-qemu >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin libvirt-qemu
