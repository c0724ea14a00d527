# The personalization package (busybox sh; sourced by agent.sh, and by host-side tests with the
# appliance's busybox). An instance with `install.packageUrl` boots with metad.package=1: after
# its OS script succeeded, the agent mounts the installed filesystem and unpacks
# GET os/package over it as the bytes arrive (never a copy in the appliance's memory), so the
# package's files win over what the script wrote (docs/guest-api.md). metad fetched and checked
# the archive on its way (daemon/jobs/package.ts); a refusal (404: the job's record says why) ends
# the run failed.

# personalize_target DISK: the device that holds the installed filesystem: DISK's first
# partition when the script partitioned it, else DISK itself.
personalize_target() {
  pz_d=${1#/dev/}
  if [ -e "/sys/class/block/${pz_d}1" ]; then
    printf '/dev/%s1' "$pz_d"
  elif [ -e "/sys/class/block/${pz_d}p1" ]; then
    printf '/dev/%sp1' "$pz_d"
  else
    printf '%s' "$1"
  fi
}

# personalize_unpack DIR: GET os/package and untar it into DIR as it streams (archive owners and
# modes kept: the agent is root). Retried like every request while metad cannot be reached (an
# interrupted transfer is unpacked again from its start: the same files are written again);
# 0 done, 2 refused (a 4xx), 1 window closed, 3 the archive could not be unpacked.
personalize_unpack() {
  pz_until=$(window)
  pz_t=$T
  T=$((T * 30)) # a whole archive per attempt, not one small answer
  while :; do
    token_fresh
    rm -f /tmp/pkg.rc
    { attempt -O - "$BASE/os/package" || echo $? >/tmp/pkg.rc; } | tar -xzf - -C "$1" 2>/tmp/pkg.tar
    pz_tar=$?
    if [ ! -e /tmp/pkg.rc ]; then
      T=$pz_t
      [ "$pz_tar" -eq 0 ] && return 0
      return 3
    fi
    pz_rc=$(cat /tmp/pkg.rc)
    TOKEN=
    echo "metad-agent: [$(uptime_s)] os/package: $(tr -d '\n' <"$ERRF" | cut -c1-120)" >&2
    if [ "$pz_rc" -eq 2 ] || [ "$(now)" -ge "$pz_until" ]; then
      T=$pz_t
      [ "$pz_rc" -eq 2 ] && return 2
      return 1
    fi
    sleep 1
  done
}

# personalize DISK: mount DISK's filesystem, unpack the package over it, unmount; reports the
# step (ok with the number of entries, or failed with the reason) and fails when it failed.
personalize() {
  [ -n "$1" ] || { report package failed reason=no_disk; return 1; }
  pz_dev=$(personalize_target "$1")
  mkdir -p /mnt/target
  mount "$pz_dev" /mnt/target 2>/tmp/pkg.mount || { report package failed reason=mount; return 1; }
  pz_before=$(find /mnt/target | wc -l)
  pz_r=0
  personalize_unpack /mnt/target || pz_r=$?
  pz_after=$(find /mnt/target | wc -l)
  sync
  umount /mnt/target || { report package failed reason=umount; return 1; }
  case $pz_r in
    0) report package ok "new=$((pz_after - pz_before))" ;;
    2) report package failed reason=refused ;;
    3) report package failed reason=unpack ;;
    *) report package failed reason=unreachable ;;
  esac
  [ "$pz_r" -eq 0 ]
}
