#!/bin/sh
# The FreeBSD Handbook's carp-hast-switch (chapter "Highly Available Storage (HAST)", the example failover
# script run by devd on CARP MASTER and BACKUP), as the baseline of bench/failover.mjs. Its steps, fixed sleep
# and poll intervals are the Handbook's; what had to change to run on Linux against carp-hast's built-in
# engine is marked "Linux:" below. Settings come from the environment:
#
#   CARP_HAST   how to run carp-hast (e.g. "node /path/to/dist/cli/main.js")
#   HAST_CONF   hast.conf          NODE  this node's name in it (hastctl -n)
#   MOUNTPOINT  where the resource is mounted (the Handbook: /hast/${disk})
#   PEER_POLL   seconds between looks for the old secondary worker (the Handbook: 1)
#
# Usage: handbook-carp-hast-switch.sh master|slave
# Each step prints "<epoch-ns> <step>" on stderr, so the benchmark can time the steps.

# The names of the HAST resources, as listed in /etc/hast.conf
resources="test"

# delay in mounting HAST resource after becoming master
# make your best guess
delay=3

# Linux: logger(1) needs a syslog daemon; the lines go to stderr with a timestamp instead.
log() {
	echo "$(date +%s%N) $*" >&2
}

# Linux: the built-in engine's hastctl, pointed at the lab's hast.conf and node.
hastctl() {
	${CARP_HAST} hastctl "$@" -c "${HAST_CONF}" -n "${NODE}"
}

# Linux: there is no "hastd: <name> (secondary)" process title to pgrep for: the secondary worker is
# inside the engine. It is connected to a primary while `hastctl status` shows it complete.
secondary_worker() {
	hastctl status "$1" 2>/dev/null | grep -Eq "^$1[[:space:]]+complete[[:space:]]+secondary"
}

case "$1" in
master)
	log "Switching to primary provider for ${resources}."
	sleep ${delay}
	log "slept"

	# Wait for any "hastd secondary" processes to stop
	for disk in ${resources}; do
		while secondary_worker "${disk}"; do
			sleep "${PEER_POLL:-1}"
		done
		log "secondary gone"

		# Switch role for each disk
		hastctl role primary ${disk}
		if [ $? -ne 0 ]; then
			log "Unable to change role to primary for resource ${disk}."
			exit 1
		fi
		log "role primary"
	done

	# Wait for the /dev/hast/* devices to appear
	for disk in ${resources}; do
		# Linux: no jot(1); /dev/hast/<name> is a link to a block device, not a character device.
		I=0
		while [ ${I} -lt 60 ]; do
			[ -b "/dev/hast/${disk}" ] && break
			sleep 0.5
			I=$((I + 1))
		done

		if [ ! -b "/dev/hast/${disk}" ]; then
			log "GEOM provider /dev/hast/${disk} did not appear."
			exit 1
		fi
	done
	log "device"

	log "Role for HAST resources ${resources} switched to primary."

	log "Mounting disks."
	for disk in ${resources}; do
		mkdir -p "${MOUNTPOINT}"
		# Linux: the lab's file system is ext4, so e2fsck's preen stands for `fsck -p -y -t ufs`.
		fsck.ext4 -p /dev/hast/${disk}
		log "fsck"
		mount /dev/hast/${disk} "${MOUNTPOINT}"
		log "mounted"
	done
	;;

slave)
	log "Switching to secondary provider for ${resources}."

	# Switch roles for the HAST resources
	for disk in ${resources}; do
		# Linux: the Handbook's `if ! mount | grep ...; then else umount -f ...; fi` has an empty then, which
		# sh rejects, and mount(8) names the loop device rather than /dev/hast/<name>; look at the mountpoint.
		if mount | grep -q " on ${MOUNTPOINT} "; then
			umount -f "${MOUNTPOINT}"
		fi
		sleep $delay
		hastctl role secondary ${disk} 2>&1
		if [ $? -ne 0 ]; then
			log "Unable to switch role to secondary for resource ${disk}."
			exit 1
		fi
		log "Role switched to secondary for resource ${disk}."
	done
	;;
esac
