#!/bin/sh
# keepalived `notify` hook for carp-hast. Install as /usr/local/libexec/carp-hast/keepalived-notify.sh
# (owned by root, not writable by others: enable_script_security checks). keepalived runs it as
#   keepalived-notify.sh INSTANCE|GROUP <name> <state> <priority>
#
# keepalived does not wait for notify scripts, so two of them can run at once and finish out of order. The
# script therefore only passes the new state on (--no-wait); the supervisor runs one transition at a time
# and checks whether the address (carp.vip) is really here before promoting.
#   MASTER                          this node holds the address: primary
#   BACKUP, FAULT, STOP, DELETED    it does not, or is about to lose it: secondary
set -u

# The caller's PATH comes first.
PATH="${PATH:+${PATH}:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH

if [ $# -lt 3 ]; then
	echo "usage: keepalived-notify.sh INSTANCE|GROUP name state [priority]" >&2
	exit 64 # EX_USAGE
fi

case $3 in
MASTER) exec carp-hast-switch --no-wait primary ;;
BACKUP | FAULT | STOP | DELETED) exec carp-hast-switch --no-wait secondary ;;
*)
	echo "keepalived-notify.sh: $1 $2: ignoring state $3" >&2
	;;
esac
