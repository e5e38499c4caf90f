#!/bin/sh
# ucarp --downscript for carp-hast: this node is BACKUP now (or ucarp is exiting, with --shutdown).
# ucarp runs it as `vip-down.sh <interface> <address> [xparam]`, with --xparam set to the address's prefix
# length (default 32). Install as /usr/local/libexec/carp-hast/vip-down.sh.
#
# The address goes first: the peer holds it now, and the supervisor, which checks it (carp.vip), must not
# see it here any more. Then the supervisor is told to let the storage go, without waiting for it.
set -u

PATH="${PATH:+${PATH}:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH

if [ $# -lt 2 ]; then
	echo "usage: vip-down.sh interface address [prefix-length]" >&2
	exit 64 # EX_USAGE
fi
interface=$1
address=$2
prefix=${3:-32}

# Failing here usually means the address was not there (ucarp starting as BACKUP); demote all the same.
ip address del "${address}/${prefix}" dev "${interface}" || true
exec carp-hast-switch --no-wait secondary
