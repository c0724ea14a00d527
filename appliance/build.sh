#!/usr/bin/env bash
# Builds the install appliance from Debian packages without installing anything into /:
#   vmlinux     the Debian kernel, uncompressed (PVH entry: boots with qboot, no bzImage stub)
#   vmlinuz     the same kernel as Debian ships it (bzImage: what a BIOS bootloader loads;
#               install-image.sh puts it on Ganeti's install image)
#   initrd.cpio busybox-static + the virtio/ext4 modules in load order + our agent as /init
#   manifest.json  what went in (packages and versions, sizes, build time)
# into CACHE/<stamp>/ where <stamp> names the kernel, busybox and a hash of the agent and this
# script. An existing CACHE/<stamp>/ is reused as it is (idempotent); a new one is built in a
# temporary directory, made read-only and renamed into place (a concurrent build loses the race
# harmlessly). Downloaded .debs are kept in CACHE/debs/.
#
# usage: appliance/build.sh [CACHE_DIR]      (default: $METAD_APPLIANCE_CACHE or
#                                              /var/cache/metad/appliance)
# prints the appliance directory on stdout, progress and timings on stderr.
# needs: apt-get (with package lists), dpkg-deb, cpio, xz (xz-utils), sha256sum.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${METAD_APPLIANCE_CACHE:-/var/cache/metad/appliance}}
t0=$(date +%s%N)
say() { printf 'appliance-build: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
. "$here/build-lib.sh"

for c in apt-get apt-cache dpkg-deb cpio xz sha256sum; do
  command -v "$c" >/dev/null || die "$c not found (apt-get install --no-install-recommends cpio xz-utils)"
done

# Kernel modules the appliance needs, by module name, in two groups: what the comm NIC needs
# (loaded before the agent starts: its first request waits for them) and what the disks need
# (virtio disks, ext4: loaded in the background while the agent talks to metad; it waits for them
# before the OS script runs). Their dependencies are added from each module's own `depends=`
# field (the .deb has no modules.dep). loop and dm_mod are what real OS definitions use
# (losetup, kpartx); 9pnet_virtio and 9p mount the host directories the Debian variant is handed
# read-only (appliance.shares).
NET_MODULES=(virtio_pci virtio_net)
DISK_MODULES=(virtio_blk crc32c_generic ext4 loop dm_mod 9pnet_virtio 9p)

# One apt-cache call (each costs seconds on a busy machine): the candidate records of the kernel
# metapackage (whose Depends pins the ABI package and its exact version) and of busybox-static.
records() { apt-cache show --no-all-versions linux-image-amd64 busybox-static 2>/dev/null || true; }
rec=$(records)
if ! printf '%s\n' "$rec" | grep -q '^Package: linux-image-amd64$' && [ "$(id -u)" = 0 ]; then
  say "no package lists: apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  rec=$(records)
fi
kpkg=$(printf '%s\n' "$rec" | awk '/^Package: /{p=$2} p=="linux-image-amd64" && /^Depends: /{ if (match($0, /linux-image-[^ ,]+ \(= [^)]+\)/)) { split(substr($0, RSTART, RLENGTH), a, " "); print a[1]; exit } }')
kver=$(printf '%s\n' "$rec" | awk '/^Package: /{p=$2} p=="linux-image-amd64" && /^Depends: /{ if (match($0, /linux-image-[^ ,]+ \(= [^)]+\)/)) { split(substr($0, RSTART, RLENGTH), a, " "); sub(/\)$/, "", a[3]); print a[3]; exit } }')
bbver=$(printf '%s\n' "$rec" | awk '/^Package: /{p=$2} p=="busybox-static" && /^Version: /{print $2; exit}')
[[ "$kpkg" =~ ^linux-image-[a-z0-9.+-]+$ ]] || die "cannot resolve the kernel package of linux-image-amd64 (apt-get update?)"
[[ "$kver" =~ ^[A-Za-z0-9.+~:-]+$ ]] || die "cannot resolve the version of $kpkg"
[[ "$bbver" =~ ^[A-Za-z0-9.+~:-]+$ ]] || die "no candidate for busybox-static (apt-get update?)"
[ -n "$bbver" ] && [ "$bbver" != "(none)" ] || die "no candidate for busybox-static"

# The stamp changes with the kernel, busybox, the agent and this script.
srchash=$( (cat "$0" "$here/build-lib.sh"; find "$here/agent" -type f | sort | xargs cat) | sha256sum | cut -c1-12)
stamp="${kpkg#linux-image-}_${kver}_bb${bbver//[:+~]/.}_${srchash}"
stamp=${stamp//[^A-Za-z0-9._-]/_}
dest="$cache/$stamp"
reuse_build "$dest"

mkdir -p "$cache/debs"
work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# ---------------------------------------------------------------- download (cached)
fetch() { # PACKAGE VERSION -> path of the .deb
  local f
  f=$(ls "$cache/debs/${1}_"*.deb 2>/dev/null | grep -F "_${2//:/%3a}_" | head -n1 || true)
  if [ -z "$f" ]; then
    (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$1=$2" >&2) || die "apt-get download $1=$2 failed"
    f=$(ls "$work/${1}_"*.deb | head -n1)
    mv "$f" "$cache/debs/"
    f="$cache/debs/$(basename "$f")"
  fi
  printf '%s\n' "$f"
}
kdeb=$(fetch "$kpkg" "$kver")
bbdeb=$(fetch busybox-static "$bbver")
t1=$(date +%s%N)

# ---------------------------------------------------------------- unpack
mkdir -p "$work/kernel" "$work/bb" "$work/root"
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$work/kernel" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/*'
dpkg-deb -x "$bbdeb" "$work/bb"
abi=$(basename "$(ls -d "$work"/kernel/lib/modules/*)")
vmlinuz="$work/kernel/boot/vmlinuz-$abi"
[ -f "$vmlinuz" ] || die "no vmlinuz in $kdeb"

# ---------------------------------------------------------------- vmlinux out of the bzImage
# The bzImage carries the kernel as an xz stream after the setup code: find the xz magic, and
# decompress the first stream that yields an ELF image (trailing data is ignored).
found=
for off in $(grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
  tail -c +$((off + 1)) "$vmlinuz" | xz -dc --single-stream >"$work/vmlinux" 2>/dev/null || true
  if [ "$(head -c 4 "$work/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then found=1; break; fi
done
[ -n "$found" ] || die "no xz-compressed ELF kernel inside $vmlinuz"
# The PVH entry point is an ELF note named "Xen" of type 18 (XEN_ELFNOTE_PHYS32_ENTRY).
grep -qaP 'Xen\x00' "$work/vmlinux" || die "vmlinux has no Xen/PVH note: cannot boot with qboot"

# ---------------------------------------------------------------- modules in load order
moddir="$work/kernel/lib/modules/$abi/kernel"
modpath() { find "$moddir" \( -name "$1.ko" -o -name "${1//_/-}.ko" \) -print -quit; }
moddeps() { tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | tr ',' ' '; }
order=()
visit() { # depth-first: dependencies before the module
  local m=$1 p d
  for d in "${order[@]}"; do [ "$d" = "$m" ] && return 0; done
  p=$(modpath "$m")
  [ -n "$p" ] || die "module $m not found in $kpkg"
  for d in $(moddeps "$p"); do visit "$d"; done
  order+=("$m")
}
for m in "${NET_MODULES[@]}"; do visit "$m"; done
net_count=${#order[@]}
for m in "${DISK_MODULES[@]}"; do visit "$m"; done
mkdir -p "$work/root/lib/modules"
# Each module without its appended signature: the kernel then skips the RSA check (about 0.1 s
# for these modules under TCG) and notes an unsigned module; nothing in the appliance enforces
# signatures (module.sig_enforce is off, and the initramfs is the appliance's own).
MAGIC='~Module signature appended~'
unsign() { # SRC DST
  local n tail siglen
  n=$(stat -c %s "$1")
  tail=$(tail -c 28 "$1" | head -c 27)
  if [ "$tail" != "$MAGIC" ]; then cp "$1" "$2"; return; fi
  # struct module_signature (12 bytes) before the magic: its last 4 bytes are sig_len, big-endian.
  siglen=$(od -An -tu1 -j $((n - 28 - 4)) -N4 "$1" | awk '{print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4}')
  head -c $((n - 28 - 12 - siglen)) "$1" >"$2"
}
for m in "${order[@]}"; do unsign "$(modpath "$m")" "$work/root/lib/modules/$m.ko"; done
printf '%s\n' "${order[@]:0:net_count}" >"$work/root/lib/modules/load-order.net"
printf '%s\n' "${order[@]:net_count}" >"$work/root/lib/modules/load-order.disk"

# ---------------------------------------------------------------- initramfs
r="$work/root"
mkdir -p "$r/bin" "$r/dev" "$r/proc" "$r/sys" "$r/tmp" "$r/run" "$r/etc" "$r/agent"
cp "$work/bb/bin/busybox" "$r/bin/busybox"
cp "$here"/agent/* "$r/agent/"
mv "$r/agent/init" "$r/init"
chmod 0755 "$r/init" "$r"/agent/*.sh "$r/bin/busybox"
printf '%s\n' "kernel=$kpkg $kver" "busybox=$bbver" "agent=$srchash" >"$r/etc/appliance-release"
(cd "$r" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) >"$work/initrd.cpio"
cp "$work/bb/bin/busybox" "$work/busybox" # the exact binary the guest runs (parser tests)

t2=$(date +%s%N)
size() { stat -c %s "$1"; }
cat >"$work/manifest.json" <<EOF
{
  "stamp": "$stamp",
  "kernelPackage": "$kpkg",
  "kernelVersion": "$kver",
  "kernelAbi": "$abi",
  "busyboxVersion": "$bbver",
  "agentHash": "$srchash",
  "modules": [$(printf '"%s",' "${order[@]}" | sed 's/,$//')],
  "vmlinuxBytes": $(size "$work/vmlinux"),
  "vmlinuzBytes": $(size "$vmlinuz"),
  "initrdBytes": $(size "$work/initrd.cpio"),
  "downloadMs": $(((t1 - t0) / 1000000)),
  "buildMs": $(((t2 - t1) / 1000000))
}
EOF
out="$work/out"
mkdir "$out"
# The bzImage as well: a BIOS bootloader loads it (the Ganeti install image, install-image.sh).
cp "$vmlinuz" "$out/vmlinuz"
mv "$work/vmlinux" "$work/initrd.cpio" "$work/busybox" "$work/manifest.json" "$out/"
publish_build "$out" "$dest" busybox
say "built $dest in $(((t2 - t0) / 1000000)) ms (download $(((t1 - t0) / 1000000)) ms):" \
  "vmlinux $(size "$dest/vmlinux") bytes, initrd $(size "$dest/initrd.cpio") bytes, modules ${order[*]}"
printf '%s\n' "$dest"
