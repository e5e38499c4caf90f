#!/bin/sh
# Installs the Debian 12 packages that carp-hast's tests and lab use (run as root; idempotent).
# util-linux: losetup, fallocate, blkdiscard. e2fsprogs: mkfs.ext4, fsck.ext4. qemu-utils (qemu-io),
# libnbd-bin (nbdinfo, nbdcopy, nbdfuse), fio (its nbd engine), nbdkit (the NBD reference server):
# clients and a peer nobody here wrote, to check our NBD export. fuse3: nbdfuse. kmod: modprobe nbd.
# iproute2: the lab's network namespaces. psmisc: fuser, which the demotion uses to find holders of a mount.
# The shellcheck package checks the shipped shell scripts.
set -eu

PACKAGES="util-linux e2fsprogs qemu-utils libnbd-bin fio nbdkit fuse3 kmod iproute2 psmisc shellcheck"

missing=""
for pkg in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
	echo "install-deps: all packages present:$(printf ' %s' $PACKAGES)"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: these packages are missing and installing them needs root:$missing" >&2
	exit 77
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
