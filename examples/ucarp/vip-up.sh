#!/bin/sh
# ucarp --upscript for carp-hast: this node became MASTER for the shared address.
# ucarp runs it as `vip-up.sh <interface> <address> [xparam]`, with --xparam set to the address's prefix
# length (default 32). Install as /usr/local/libexec/carp-hast/vip-up.sh.
#
# ucarp stops advertising until the script returns, so a slow script would let the peer take over: the
# script only adds the address and hands the switch to the supervisor (--no-wait), which does the slow
# part. The address goes first because the supervisor checks it (carp.vip) before promoting.
set -eu

# ucarp passes on its own environment; the caller's PATH comes first.
PATH="${PATH:+${PATH}:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH

if [ $# -lt 2 ]; then
	echo "usage: vip-up.sh interface address [prefix-length]" >&2
	exit 64 # EX_USAGE
fi
interface=$1
address=$2
prefix=${3:-32}

# `replace` succeeds when the address is already there (ucarp restarted while MASTER).
ip address replace "${address}/${prefix}" dev "${interface}"
exec carp-hast-switch --no-wait primary
