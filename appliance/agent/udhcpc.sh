#!/bin/sh
# udhcpc event script: configure the leased address as a /32 with host routes to the router
# (the comm network is routed per guest; no default route is wanted).
case $1 in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/32" dev "$interface"
    for r in $router; do ip route add "$r/32" dev "$interface"; done
    ip route add 169.254.169.254/32 dev "$interface" 2>/dev/null
    ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
