#!/bin/sh
# dhcpcd --script for the integration tests: only logs the environment next to itself
# (no resolv.conf, hostname or NTP changes on the host).
{ echo "=== reason=$reason iface=$interface"; env | grep -E '^(new_|old_)' | sort; } \
    >> "$(dirname "$0")/dhcpcd-events.log"
exit 0
