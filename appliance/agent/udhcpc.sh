#!/bin/sh
# udhcpc event script: configure the leased address as a /32 with host routes to the router
# (the comm network is routed per guest; no default route is wanted). Only a lease from the
# server at METAD_HOST (metad's address, where its dnsmasq listens) is configured, and
# DHCP_OK (default /tmp/dhcp.ok) marks it; a lease from any other server is left alone (the agent
# then fails).
host=${METAD_HOST:-169.254.169.254}
case $1 in
  bound|renew)
    if [ "$serverid" != "$host" ]; then
      echo "metad-agent: ignoring a lease of $ip from $serverid on $interface: not $host" >&2
      exit 0
    fi
    ip addr flush dev "$interface"
    ip addr add "$ip/32" dev "$interface"
    for r in $router; do ip route add "$r/32" dev "$interface"; done
    ip route add "$host/32" dev "$interface" 2>/dev/null
    : >"${DHCP_OK:-/tmp/dhcp.ok}"
    ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
