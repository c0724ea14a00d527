#!/usr/bin/env bash
# Makes metad's appliance a bootable raw disk image for Ganeti's helper VM
# (`gnt-cluster modify --install-image=FILE`): Ganeti writes the image onto a temporary disk,
# starts the instance with that disk first (vda) and boots it with the BIOS. The image is
#   MBR (syslinux's mbr.bin) | partition 1 at 1 MiB, FAT16, bootable:
#                               ldlinux.sys, syslinux.cfg, vmlinuz (the appliance's bzImage),
#                               initrd.cpio (the appliance's initramfs: busybox, modules, agent)
# built without root, loop devices or mounts (sfdisk, mkfs.fat --offset, mtools, syslinux
# --offset). It is reproducible: the same build directory and options give the same bytes
# (mkfs.fat --invariant, SOURCE_DATE_EPOCH for mtools).
#
# usage: appliance/install-image.sh BUILD_DIR OUT [NIC]
#   BUILD_DIR  an appliance build (build.sh's output: vmlinuz, initrd.cpio, manifest.json)
#   OUT        the image file to write (replaced atomically)
#   NIC        the comm NIC, on the kernel command line as metad.nic= (default `last`: the
#              instance's last NIC, where `gnt-instance add --communication` puts it)
# Prints OUT's size and sha256 on stderr and OUT on stdout.
set -euo pipefail
die() { echo "install-image: $*" >&2; exit 1; }
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: install-image.sh BUILD_DIR OUT [NIC]"
build=$1
out=$2
nic=${3-last}
[[ $nic =~ ^(last|[a-z][a-z0-9]{0,14})$ ]] || die "bad NIC name '$nic' (an interface name such as eth1, or last)"
for f in vmlinuz initrd.cpio manifest.json; do
  [ -f "$build/$f" ] || die "$build/$f is missing: rebuild the appliance (metad appliance build)"
done
for c in sfdisk mkfs.fat mcopy syslinux; do
  command -v "$c" >/dev/null || die "$c not found (apt-get install fdisk dosfstools mtools syslinux syslinux-common)"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || die "$mbr not found (apt-get install syslinux-common)"

tmp=$(mktemp "$(dirname "$out")/.install-image.XXXXXX")
trap 'rm -f "$tmp"' EXIT
export MTOOLS_SKIP_CHECK=1 # mtools' geometry check does not apply to a partition in a file
# mtools dates every file it writes (syslinux's ldlinux.* included) with this time, not now.
export SOURCE_DATE_EPOCH=946684800

# The file system holds both files plus a quarter and 2 MiB of slack (FAT16 wants at least 16 MiB).
kb=$(stat -c %s "$build/vmlinuz")
ib=$(stat -c %s "$build/initrd.cpio")
mib=$(((kb + ib) * 5 / 4 / 1048576 + 3))
[ "$mib" -ge 17 ] || mib=17
truncate -s $(((mib + 1) * 1048576)) "$tmp"
printf 'label: dos\nlabel-id: 0x6d657461\nstart=2048, type=e, bootable\n' | sfdisk -q "$tmp" >/dev/null
mkfs.fat -F 16 --invariant --offset 2048 -n METAD "$tmp" $((mib * 1024)) >/dev/null

# syslinux and the kernel on the serial console (where Ganeti's KVM and the tests read it); no metad.ip (the
# agent asks DHCP on the comm NIC and takes a lease from metad's address only).
cfg=$(mktemp)
trap 'rm -f "$tmp" "$cfg"' EXIT
cat >"$cfg" <<EOF
SERIAL 0 115200
DEFAULT metad
PROMPT 0
TIMEOUT 0
LABEL metad
  KERNEL vmlinuz
  INITRD initrd.cpio
  APPEND console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests metad.nic=$nic
EOF
mcopy -o -i "$tmp@@1M" "$build/vmlinuz" "$build/initrd.cpio" ::
mcopy -o -i "$tmp@@1M" "$cfg" ::syslinux.cfg
syslinux --offset 1048576 --install "$tmp"
dd if="$mbr" of="$tmp" bs=440 count=1 conv=notrunc status=none
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
rm -f "$cfg"
trap - EXIT
echo "install-image: $out: $(stat -c %s "$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1), metad.nic=$nic" >&2
printf '%s\n' "$out"
