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
#     syslinux, syslinux-common, mtools, dosfstools, fdisk: the Ganeti install image
#                         (appliance/install-image.sh; test/integration/ganeti-helper-vm.test.ts)
#   groff-base:         renders docs/man/*.8 in test/unit/man.test.ts
#   systemd-container:  systemd-nspawn boots a real systemd in a container (these machines have no
#                       systemd as PID 1) to run metad under systemd/metad.service
#                       (test/integration/systemd-live.test.ts); upgrades systemd to the same version
#   Ganeti 3.0's own code, for the Ganeti feed (test/integration/ganeti-real.test.ts, docs/ganeti.md):
#     ganeti-os-noop:     installed: an OS definition (sh scripts in /usr/share/ganeti/os/noop)
#     libpcre3:           what Debian's ganeti-metad binary links
#     python3-simplejson, -pyparsing, -openssl, -pyinotify, -pycurl, -bitarray, -psutil:
#                         what Ganeti's Python package imports (with Debian's /usr/bin/python3)
#     ganeti-3.0, ganeti-haskell-3.0: fetched with `apt-get download` and unpacked into
#                         $GANETI_DIR, never installed (no cluster, no Ganeti daemon runs)
#     the users and groups Ganeti's daemons run as: ganeti-metad refuses to start without them
#   lintian, dpkg-dev:  the Debian package `npm run package` builds (dpkg-shlibdeps) and its check
#                       (test/integration/deb-package.test.ts)
#   sudo:               docs/operations.md's host steps run as printed by a sudo user in such a
#                       container (test/integration/operator-live.test.ts)
#   prometheus:         Debian's, fetched with `apt-get download` and unpacked into
#                       $PROMETHEUS_DIR, never installed (its package starts a system service on
#                       :9090); test/integration/prometheus-dashboard.test.ts runs it on loopback
#                       with its own config to evaluate docs/grafana-dashboard.json
#   mmdebstrap:         the Debian appliance variant's root disk (appliance/build-debian.sh) and
#                       ganeti-instance-debootstrap's cache tarball (test/integration/install-debian.test.ts)
#   ganeti-instance-debootstrap: fetched with `apt-get download` and unpacked into
#                       $GIDEB_DIR, never installed: its OS definition runs unmodified in the appliance
#   dbus, polkitd:      Debian's libvirtd (libvirt-daemon-system, never installed here: its files
#                       are laid over the container's /usr) asks polkit who may use its socket
#                       (test/integration/libvirtd-live.test.ts)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(iproute2 nftables util-linux cloud-init python3 systemd wrk curl jq openssl
  cpio xz-utils qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  syslinux syslinux-common mtools dosfstools fdisk
  libvirt-dev pkg-config g++ make tini e2fsprogs dnsmasq-base busybox systemd-container groff-base sudo dbus polkitd
  lintian dpkg-dev ganeti-os-noop libpcre3 python3-simplejson python3-pyparsing python3-openssl python3-pyinotify
  python3-pycurl python3-bitarray python3-psutil mmdebstrap)

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

# Ganeti 3.0 (Debian bookworm's ganeti-3.0 and ganeti-haskell-3.0), unpacked, for the Ganeti
# feed tests: the Python package in usr/share/ganeti/3.0, ganeti-metad in usr/lib/ganeti/3.0/usr/sbin.
GANETI_DIR=/var/cache/metad-test/ganeti
if [ ! -x "$GANETI_DIR/usr/lib/ganeti/3.0/usr/sbin/ganeti-metad" ] || [ ! -f "$GANETI_DIR/usr/share/ganeti/3.0/ganeti/metad.py" ]; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download -qq ganeti-3.0 ganeti-haskell-3.0 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq ganeti-3.0 ganeti-haskell-3.0; }; } )
  rm -rf "$GANETI_DIR.new" && mkdir -p "$GANETI_DIR.new"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$GANETI_DIR.new"; done
  dpkg-deb -f "$tmp"/ganeti-3.0_*.deb Version >"$GANETI_DIR.new/VERSION"
  rm -rf "$GANETI_DIR" && mv "$GANETI_DIR.new" "$GANETI_DIR" && rm -rf "$tmp"
fi
for g in gnt-daemons gnt-admin gnt-metad gnt-masterd gnt-rapi gnt-confd gnt-luxid; do
  getent group "$g" >/dev/null || groupadd -r "$g"
done
for u in gnt-metad gnt-masterd gnt-rapi gnt-confd gnt-luxid; do
  id "$u" >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin -g "$u" "$u"
done

# Debian's ganeti-instance-debootstrap, unpacked, never installed (its Depends would pull
# debootstrap and kpartx onto the machine): its OS definition, usr/share/ganeti/os/debootstrap,
# is what the Debian appliance runs.
GIDEB_DIR=/var/cache/metad-test/ganeti-instance-debootstrap
if [ ! -f "$GIDEB_DIR/usr/share/ganeti/os/debootstrap/create" ]; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download -qq ganeti-instance-debootstrap 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq ganeti-instance-debootstrap; }; } )
  rm -rf "$GIDEB_DIR.new" && mkdir -p "$GIDEB_DIR.new"
  dpkg-deb -x "$tmp"/ganeti-instance-debootstrap_*.deb "$GIDEB_DIR.new"
  rm -rf "$GIDEB_DIR" && mv "$GIDEB_DIR.new" "$GIDEB_DIR" && rm -rf "$tmp"
fi

# Prometheus (Debian bookworm's prometheus), unpacked, never installed: the dashboard test runs
# usr/bin/prometheus itself, on a loopback port with a temp config and storage dir.
PROMETHEUS_DIR=/var/cache/metad-test/prometheus
if [ ! -x "$PROMETHEUS_DIR/usr/bin/prometheus" ]; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download -qq prometheus 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq prometheus; }; } )
  rm -rf "$PROMETHEUS_DIR.new" && mkdir -p "$PROMETHEUS_DIR.new"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$PROMETHEUS_DIR.new"
  rm -rf "$PROMETHEUS_DIR" && mv "$PROMETHEUS_DIR.new" "$PROMETHEUS_DIR" && rm -rf "$tmp"
fi
