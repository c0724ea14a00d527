# The OS definition in the appliance (sourced by agent.sh; host-side tests source it with the
# appliance's busybox): fetched whole from metad's guest door, its OS API version and default
# variant worked out as Ganeti's node daemon does, its scripts run either here (busybox sh, the
# busybox variant) or chrooted into the Debian variant's root disk (bash and Debian's tools).
#
# Needs from agent.sh: request, window, log, BASE, WORK.

# A file name metad serves under os/scripts/ (routes/guest/scripts.ts allows the same).
osdef_name_ok() {
  case $1 in
    '' | *[!a-z0-9_.-]* | [!a-z]*) return 1 ;;
  esac
  [ "${#1}" -le 64 ]
}

# osdef_fetch: every file the definition's listing names, into $WORK (mode 0755: a definition's
# scripts are run as they are, its other files only read). Fails (1) when the listing or a file
# cannot be read, (3) when the listing names something that is not a plain name.
osdef_fetch() {
  request "$(window)" -O "$WORK/.listing" "$BASE/os/scripts/" || return 1
  OSDEF_FILES=0
  # (`|| [ -n "$f" ]`: the listing's last line has no newline.)
  while IFS= read -r f || [ -n "$f" ]; do
    [ -n "$f" ] || continue
    osdef_name_ok "$f" || return 3
    request "$(window)" -O "$WORK/$f" "$BASE/os/scripts/$f" || return 1
    chmod 0755 "$WORK/$f"
    OSDEF_FILES=$((OSDEF_FILES + 1))
  done <"$WORK/.listing"
  rm -f "$WORK/.listing"
}

# osdef_api_version DIR: the highest OS API version both the definition (its ganeti_api_version
# file, one version per line) and the agent speak: 20, 15 or 10. A definition without the file is
# taken as 20 (metad's own toy definitions); one that lists none of them is refused (1).
osdef_api_version() {
  [ -f "$1/ganeti_api_version" ] || { echo 20; return 0; }
  for v in 20 15 10; do
    if grep -qx "[[:space:]]*$v[[:space:]]*" "$1/ganeti_api_version"; then
      echo "$v"
      return 0
    fi
  done
  return 1
}

# osdef_env DIR: exports what Ganeti's node daemon adds to an instance's OS environment
# (backend.OSCoreEnv/OSEnvironment) that metad's metadata does not carry: OS_API_VERSION,
# OS_NAME, DEBUG_LEVEL, HYPERVISOR, PATH, and (API 15 and later) OS_VARIANT, defaulting to the
# first of the definition's variants.list as Ganeti does.
osdef_env() {
  OS_API_VERSION=$(osdef_api_version "$1") || return 1
  OS_NAME=${INSTANCE_OS%%+*}
  DEBUG_LEVEL=${DEBUG_LEVEL:-0}
  HYPERVISOR=kvm
  PATH=/usr/sbin:/usr/bin:/sbin:/bin
  export OS_API_VERSION OS_NAME DEBUG_LEVEL HYPERVISOR PATH
  if [ "$OS_API_VERSION" -ge 15 ]; then
    if [ -z "${OS_VARIANT:-}" ] && [ -f "$1/variants.list" ]; then
      OS_VARIANT=$(grep -m1 -v '^[[:space:]]*$' "$1/variants.list" | tr -d '[:space:]')
    fi
    [ -n "${OS_VARIANT:-}" ] && export OS_VARIANT
  else
    unset OS_VARIANT
  fi
  return 0
}

# debian_root DEV [TAG:PATH ...]: mounts the Debian variant's root disk (/dev/DEV, the per-run
# overlay: writes never reach the base) at /debian with /dev, /proc, /sys, a fresh /run and /tmp,
# and each host directory metad shares read-only (9p, mount tag TAG) at PATH inside it. The
# definition's files are copied to /debian$WORK. Fails (1) when the disk or a share cannot be
# mounted.
DEBIAN=/debian
debian_root() {
  dev=$1
  shift
  case $dev in vd[a-z]) ;; *) return 1 ;; esac
  mkdir -p "$DEBIAN"
  mount -t ext4 "/dev/$dev" "$DEBIAN" || return 1
  mount -o bind /dev "$DEBIAN/dev" || return 1
  mount -t proc proc "$DEBIAN/proc" || return 1
  mount -t sysfs sysfs "$DEBIAN/sys" || return 1
  mount -t tmpfs -o mode=0755 tmpfs "$DEBIAN/run" || return 1
  mount -t tmpfs -o mode=1777 tmpfs "$DEBIAN/tmp" || return 1
  for s in "$@"; do
    tag=${s%%:*}
    path=${s#*:}
    case $tag in '' | *[!a-z0-9]*) return 1 ;; esac
    case $path in /*) ;; *) return 1 ;; esac
    case $path in *..* | *[!A-Za-z0-9/._-]*) return 1 ;; esac
    mkdir -p "$DEBIAN$path" || return 1
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=none "$tag" "$DEBIAN$path" || return 1
  done
  mkdir -p "$DEBIAN$WORK" && cp -a "$WORK/." "$DEBIAN$WORK/"
}

# osdef_interpreter NAME: the interpreter NAME's `#!` line names when it is missing where the
# script would run (e.g. /bin/bash in the busybox variant); nothing (and 0) when it is there.
osdef_interpreter() {
  IFS= read -r first <"$WORK/$1" || first=
  case $first in '#!'*) ;; *) return 0 ;; esac
  interp=${first#\#!}
  interp=${interp# }
  interp=${interp%% *}
  [ -x "${DEBIAN_ROOT:+$DEBIAN}$interp" ] && return 0
  echo "$interp"
  return 1
}

# osdef_run NAME: runs the definition's script NAME in its directory with the exported
# environment, in the Debian root when one is mounted; its exit status.
osdef_run() {
  if [ -n "${DEBIAN_ROOT:-}" ]; then
    chroot "$DEBIAN" /bin/sh -c 'cd "$1" && exec "./$2"' sh "$WORK" "$1"
  else
    (cd "$WORK" && exec "./$1")
  fi
}
