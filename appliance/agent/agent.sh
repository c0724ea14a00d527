#!/bin/sh
# The install agent (busybox sh; runs as PID 1's child in the appliance). It brings up the comm
# NIC, reads the instance's Ganeti metadata and OS parameters from metad's guest door, exports
# them with Ganeti's OS API names, fetches and runs the OS's `create` script (or, for Ganeti's
# helper VM, unpacks the OS install package and runs its script: package.sh), reports each step
# and a final status through the pipe (POST /ganeti/latest/write, format in docs/guest-api.md),
# and returns (init powers off). Every request carries an IMDSv2 session token and is retried
# until its window closes (http.sh); every attempt is bounded by `timeout`.
#
# Kernel command line: metad.ip=A.B.C.D (static comm address; without it: DHCP on the comm NIC),
# metad.url=http://169.254.169.254 (the guest door), metad.timeout=SECONDS (each attempt),
# metad.claim=SECONDS (the job's claim deadline: until SECONDS after boot the agent keeps trying
# to reach metad and read its parameters; afterwards it waits up to SECONDS per outage),
# metad.nic=eth0 (the comm NIC; `last`: the highest-numbered ethN, where Ganeti puts an
# instance's comm NIC: the install image's default, appliance/install-image.sh),
# metad.package=1 (after create, unpack the personalization package over the first disk's
# filesystem: personalize.sh), metad.root=vdX (the Debian variant: its root disk, where the OS
# scripts run chrooted: osdef.sh), metad.share=TAG:/PATH (a host directory shared read-only,
# mounted at PATH in the Debian root; repeated).
URL=http://169.254.169.254
NIC=eth0
IP=
T=10
CLAIM=300
TTL=300
PACKAGE=
ROOT=
SHARES=
for w in $(cat /proc/cmdline 2>/dev/null); do
  case $w in
    metad.ip=*) IP=${w#*=} ;;
    metad.url=*) URL=${w#*=} ;;
    metad.timeout=*) T=${w#*=} ;;
    metad.claim=*) CLAIM=${w#*=} ;;
    metad.nic=*) NIC=${w#*=} ;;
    metad.package=*) PACKAGE=${w#*=} ;;
    metad.root=*) ROOT=${w#*=} ;;
    metad.share=*) SHARES="$SHARES ${w#*=}" ;;
  esac
done
case $T in '' | *[!0-9]* | 0) T=10 ;; esac
case $CLAIM in '' | *[!0-9]*) CLAIM=300 ;; esac
BASE=$URL/ganeti/latest
WORK=/tmp/os
ERRF=/tmp/agent.err
mkdir -p "$WORK"
. /agent/http.sh
. /agent/osdef.sh

# Console lines carry the uptime (boot -> first request, retries during a metad restart).
log() { echo "metad-agent: [$(uptime_s)] $*" >/dev/console 2>/dev/null || echo "metad-agent: [$(uptime_s)] $*"; }

# window: the uptime until which a request is retried: the claim deadline until the parameters
# are read; afterwards CLAIM seconds from the start of the current outage (the first failed
# attempt since the last success), so a metad restart later in the run costs nothing either,
# and a metad that never comes back costs at most CLAIM seconds in all, not per request.
CLAIMED=
window() {
  if [ -z "$CLAIMED" ]; then echo "$CLAIM"; else echo $((${OUTAGE_SINCE:-$(now)} + CLAIM)); fi
}

# report STEP STATUS [KEY=VALUE ...]: one line `metad-progress v1 step=STEP status=STATUS ...`
# POSTed to the pipe. Values are reduced to [A-Za-z0-9._:/@+,=-] and 200 characters.
report() {
  line="metad-progress v1 step=$1 status=$2"
  shift 2
  for kv in "$@"; do
    line="$line $(printf '%s' "$kv" | tr -c 'A-Za-z0-9._:/@+,=-' '_' | cut -c1-200)"
  done
  log "$line"
  request "$(window)" -O /dev/null --post-data="$line
" "$BASE/write" || log "report failed: $line"
}

# get PATH: the body of $BASE/PATH in BODY (not in a subshell: the token is kept for the next
# request); fails when refused for good or when the window closes.
get() { request "$(window)" -O - "$BASE/$1"; }

finish() { # STATUS [KEY=VALUE ...]
  report final "$@"
  exit 0
}

# The disks' kernel modules load in the background from boot (init): an OS script runs once they
# are in (at most 60 s; they take a fraction of a second). Without init's marker (an agent run
# outside the appliance) there is nothing to wait for.
disks_ready() {
  [ -e /lib/modules/load-order.disk ] || return 0
  n=0
  while [ ! -e /run/modules.done ]; do
    [ "$n" -lt 1200 ] || return 1
    sleep 0.05
    n=$((n + 1))
  done
}

# ---------------------------------------------------------------- comm NIC
ip link set lo up
if [ "$NIC" = last ]; then
  i=0
  NIC=
  while [ -e "/sys/class/net/eth$i" ]; do NIC=eth$i; i=$((i + 1)); done
  [ -n "$NIC" ] || { log "no NIC at all"; exit 1; }
  log "comm NIC: $NIC, the last of $i"
fi
ip link set "$NIC" up || { log "no comm NIC $NIC"; exit 1; }
host=${URL#http://}; host=${host%%[:/]*}
if [ -n "$IP" ]; then
  # A point-to-point comm link: our /32 and a host route to the metadata address.
  ip addr add "$IP/32" dev "$NIC"
  ip route add "$host/32" dev "$NIC"
else
  # A lease counts only from metad's own address (its DHCP server listens there): udhcpc.sh
  # leaves a lease from any other server unconfigured and says so.
  rm -f /tmp/dhcp.ok
  METAD_HOST=$host timeout $((T * 3)) udhcpc -i "$NIC" -f -q -n -t 5 -T 2 -s /agent/udhcpc.sh || { log "dhcp failed"; exit 1; }
  [ -e /tmp/dhcp.ok ] || { log "dhcp: no lease from $host on $NIC"; exit 1; }
fi

# The first request may race the host's side of the link, or metad may be restarting: it is
# retried until the claim deadline.
log "comm NIC up: asking $URL"
get meta_data.json || {
  log "guest door unreachable at $URL until the claim deadline"
  exit 1
}
meta=$BODY
report net ok "ip=${IP:-dhcp}" "token=$([ -n "$TOKEN" ] && echo yes || echo no)"

env_meta=$(printf '%s' "$meta" | awk -v mode=meta -f /agent/json.awk) || finish failed reason=meta_data
eval "$env_meta"
report metadata ok "instance=$INSTANCE_NAME" "disks=$DISK_COUNT"

get os/parameters.json || finish failed reason=parameters_fetch
CLAIMED=yes
params=$BODY
BODY=
env_params=$(printf '%s' "$params" | awk -v mode=params -f /agent/json.awk) || finish failed reason=parameters_parse
# The secret ones again, for a Ganeti OS install package (whose environment never has them).
env_secret=$(printf '%s' "$params" | awk -v mode=params -v only=secret -f /agent/json.awk) || finish failed reason=parameters_parse
unset params
eval "$env_params"
unset env_params
report parameters ok "count=$(env | grep -c '^OSP_')"

# Ganeti's helper VM (`gnt-instance add` with an install image): the public parameter
# os-install-package names the package Ganeti's ExportOS wrote; metad serves it as
# os/os-install-package. The package's `os/$OS_SCRIPT` runs in the package's environment plus
# the secret parameters (package.sh), instead of os/scripts/create.
if [ -n "${OSP_OS_INSTALL_PACKAGE+set}" ]; then
  . /agent/package.sh
  PKG=/tmp/package
  rc=0
  # The package may be large (an OS definition with its own files): each attempt gets 30 times
  # the usual bound.
  t_=$T
  T=$((T * 30))
  request "$(window)" -O /tmp/package.tgz "$BASE/os/os-install-package" || rc=$?
  T=$t_
  [ "$rc" -eq 0 ] || finish failed reason=package_fetch "refused=$([ "$rc" -eq 2 ] && echo yes || echo no)"
  package_unpack /tmp/package.tgz "$PKG" || finish failed reason=package_unpack
  rm -f /tmp/package.tgz
  script=$(package_script "$PKG") || finish failed reason=package_script
  report package ok "script=$script" "osp=$(package_osp_count "$PKG" "$env_secret")"
  disks_ready || finish failed reason=disk_modules
  report create start
  package_run "$PKG" "$env_secret" </dev/null >/dev/console 2>&1
  rc=$?
  unset env_secret
  if [ "$rc" -eq 0 ]; then
    report create ok
    finish succeeded
  fi
  report create failed "exit=$rc"
  finish failed "exit=$rc"
fi
unset env_secret

# The whole OS definition (its scripts, common files, variants.list, ganeti_api_version), as
# Ganeti's node daemon would run it from its directory.
rc=0
osdef_fetch || rc=$?
[ "$rc" -eq 3 ] && finish failed reason=script_name
[ "$rc" -eq 0 ] || finish failed reason=script_fetch
[ -f "$WORK/create" ] || finish failed reason=no_create
osdef_env "$WORK" || finish failed reason=os_api_version
report script ok "files=$OSDEF_FILES" "api=$OS_API_VERSION" "variant=${OS_VARIANT:-}"

disks_ready || finish failed reason=disk_modules
if [ -n "$ROOT" ]; then
  # shellcheck disable=SC2086 # one word per share
  debian_root "$ROOT" $SHARES || finish failed reason=debian_root
  DEBIAN_ROOT=1
  report root ok "shares=$(echo $SHARES | wc -w)"
fi
# A script whose interpreter this variant lacks (bash in busybox) is said plainly, not run.
for s in verify create; do
  [ -f "$WORK/$s" ] || continue
  missing=$(osdef_interpreter "$s") || finish failed reason=interpreter "script=$s" "interpreter=$missing"
done
# Ganeti runs `verify` (API 20) to check the parameters before it installs.
if [ -f "$WORK/verify" ] && [ "$OS_API_VERSION" -ge 20 ]; then
  osdef_run verify </dev/null >/dev/console 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || { report verify failed "exit=$rc"; finish failed reason=verify "exit=$rc"; }
  report verify ok
fi
report create start
osdef_run create </dev/null >/dev/console 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then
  report create ok
  if [ "$PACKAGE" = 1 ]; then
    . /agent/personalize.sh
    personalize "${DISK_0_PATH:-}" || finish failed reason=package
  fi
  finish succeeded
else
  report create failed "exit=$rc"
  finish failed "exit=$rc"
fi
