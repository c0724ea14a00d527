#!/usr/bin/env bash
# Builds the Debian variant of the install appliance: a small Debian userland (bash, coreutils,
# util-linux, e2fsprogs, fdisk, kpartx, tar, gzip, qemu-utils, curl, debootstrap, and Debian's
# ganeti-instance-debootstrap for its configuration files) as a read-only qcow2 root disk. The
# appliance still boots the busybox build's kernel and initramfs (build.sh); its agent mounts this
# disk, through a fresh per-run qcow2 overlay, and runs the OS definition's scripts chrooted into
# it with bash (appliance/README.md, "The Debian variant").
#
#   root.qcow2     ext4 (label metad-debian), no partition table; made read-only (0444)
#   manifest.json  suite, sources, every installed package with its version, sizes, build time
#
# into CACHE/debian/<stamp>/ where <stamp> names the suite, a hash of the candidate versions of
# the packages asked for and a hash of this script. An existing build is reused as it is; a new
# one is built in a temporary directory and renamed into place (a concurrent build loses the race
# harmlessly).
#
# usage: appliance/build-debian.sh [CACHE_DIR] [MANIFEST]
#   CACHE_DIR  default: $METAD_APPLIANCE_CACHE or /var/cache/metad/appliance
#   MANIFEST   an earlier build's manifest.json: the same suite and every package at the version
#              it lists (the mirror, or a snapshot mirror in the apt sources, must still have them)
# prints the build directory on stdout, progress and timings on stderr.
# needs: root (mmdebstrap's root mode: the files belong to root:root in the image), mmdebstrap,
# apt with package lists and a reachable mirror (the host's own apt sources), mke2fs, qemu-img.
set -euo pipefail
export LC_ALL=C

cache=${1:-${METAD_APPLIANCE_CACHE:-/var/cache/metad/appliance}}
manifest=${2:-}
t0=$(date +%s%N)
say() { printf 'appliance-build: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
. "$(dirname "$0")/build-lib.sh"

for c in mmdebstrap apt-cache mke2fs qemu-img sha256sum; do
  command -v "$c" >/dev/null || die "$c not found (apt-get install --no-install-recommends mmdebstrap e2fsprogs qemu-utils)"
done
[ "$(id -u)" = 0 ] || die "the Debian variant is built as root (its files must belong to root in the image)"

# What the OS scripts of real definitions call (ganeti-instance-debootstrap: bash, blkid, sfdisk,
# kpartx, mke2fs, mount, tar, run-parts, which, dpkg; others dd, qemu-img, curl, debootstrap).
PACKAGES=(bash coreutils util-linux mount e2fsprogs fdisk kpartx dmsetup tar gzip xz-utils
  qemu-utils curl ca-certificates debootstrap ganeti-instance-debootstrap)

# The host's own apt sources (the mirror this machine is set up for) and its suite.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sources+=("$f")
done
[ "${#sources[@]}" -gt 0 ] || die "no apt sources in /etc/apt"
suite=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
[[ "$suite" =~ ^[a-z]+$ ]] || die "cannot tell the host's Debian suite from /etc/os-release"

# From a manifest: its suite and every package pinned (`name=version`), in the manifest's order.
pins=
if [ -n "$manifest" ]; then
  [ -f "$manifest" ] || die "no manifest at $manifest"
  suite=$(sed -n 's/^  "suite": "\([a-z]*\)",$/\1/p' "$manifest")
  [[ "$suite" =~ ^[a-z]+$ ]] || die "$manifest names no suite"
  pins=$(sed -n '/^  "packages": {$/,/^  },$/s/^    "\([a-z0-9][a-z0-9+.-]*\)": "\([A-Za-z0-9.+~:-]*\)",\{0,1\}$/\1=\2/p' "$manifest" | paste -sd, -)
  [ -n "$pins" ] || die "$manifest lists no packages"
fi

# The stamp changes with the suite, the candidate versions of what is asked for (or the pinned
# versions of a manifest), the sources and this script. (Dependencies move with their packages'
# versions in a point release; the manifest lists every package of the image.)
if [ -n "$pins" ]; then
  cand=$pins
else
  cand=$(apt-cache policy "${PACKAGES[@]}" 2>/dev/null | awk '/^[^ ]/{p=$1} /Candidate:/{print p, $2}')
  [ -n "$cand" ] && ! printf '%s\n' "$cand" | grep -q '(none)' || die "no candidate for some of ${PACKAGES[*]} (apt-get update?)"
fi
stamp="${suite}_$( (cat "$0" "$(dirname "$0")/build-lib.sh"; printf '%s\n' "$cand"; cat "${sources[@]}") | sha256sum | cut -c1-16)"
dest="$cache/debian/$stamp"
reuse_build "$dest"

mkdir -p "$cache/debian"
work=$(mktemp -d "$cache/debian/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- the userland
root="$work/root"
incl=${pins:-$(IFS=,; printf '%s' "${PACKAGES[*]}")}
mmdebstrap --quiet --mode=root --variant=essential --include="$incl" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  "$suite" "$root" "${sources[@]}" </dev/null >&2 || die "mmdebstrap failed"
t1=$(date +%s%N)

# Nothing of the build host stays in the image: its own hosts, resolver and name, no apt lists.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
printf 'metad-appliance\n' >"$root/etc/hostname"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
# The agent mounts /dev, /proc, /sys, /run and /tmp here before it chroots.
mkdir -p "$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/tmp"
packages=$(dpkg-query --root="$root" -W -f '${Package}\t${Version}\n' | sort)

# ---------------------------------------------------------------- the disk
used=$(du -s --block-size=1M "$root" | cut -f1)
size_mb=$((used + used / 4 + 128)) # room for what a run writes (its overlay takes it, never the base)
mke2fs -q -t ext4 -L metad-debian -m 0 -d "$root" "$work/root.raw" "${size_mb}M" >&2 || die "mke2fs failed"
qemu-img convert -q -f raw -O qcow2 "$work/root.raw" "$work/root.qcow2" || die "qemu-img convert failed"
rm -f "$work/root.raw"
rm -rf "$root"
t2=$(date +%s%N)

size() { stat -c %s "$1"; }
json_packages=$(printf '%s\n' "$packages" | awk -F'\t' 'BEGIN{ORS=""} {gsub(/["\\]/, "", $2); printf "%s\n    \"%s\": \"%s\"", (NR > 1 ? "," : ""), $1, $2}')
json_sources=$(printf '"%s",' "${sources[@]}" | sed 's/,$//')
cat >"$work/manifest.json" <<EOF
{
  "variant": "debian",
  "stamp": "$stamp",
  "suite": "$suite",
  "sources": [$json_sources],
  "asked": [$(printf '"%s",' "${PACKAGES[@]}" | sed 's/,$//')],
  "packages": {$json_packages
  },
  "packageCount": $(printf '%s\n' "$packages" | wc -l),
  "pinned": $([ -n "$pins" ] && echo true || echo false),
  "rootMiB": $size_mb,
  "qcow2Bytes": $(size "$work/root.qcow2"),
  "debootstrapMs": $(((t1 - t0) / 1000000)),
  "buildMs": $(((t2 - t0) / 1000000))
}
EOF
out="$work/out"
mkdir "$out"
mv "$work/root.qcow2" "$work/manifest.json" "$out/"
publish_build "$out" "$dest"
say "built $dest in $(((t2 - t0) / 1000000)) ms (mmdebstrap $(((t1 - t0) / 1000000)) ms):" \
  "root.qcow2 $(size "$dest/root.qcow2") bytes, $(printf '%s\n' "$packages" | wc -l) packages, ${size_mb} MiB filesystem"
printf '%s\n' "$dest"
