#!/bin/bash
# Tear down Ganeti test cluster N started by ganeti-up.sh N: stop its daemons,
# delete its netns (which also deletes the veth pair and the bridge) and /srv/gnt<N>.
# The last cluster to go also removes the shared /srv/ganeti mount point and hail-single.
#   ORDERLY=1  stop daemons with daemon-util stop-all first (about 2 s per daemon, ~13 s)
#   DESTROY=1  run gnt-cluster destroy first (also stops the daemons)
# Loop devices and FUSE mounts of the ExtStorage provider archipelago are released first.
N=${1:?usage: ganeti-down.sh N}
NS=gnt$N; BASE=/srv/gnt$N; GX=$BASE/ns/gx
if [ -s $BASE/ns/pid ] && kill -0 "$(cat $BASE/ns/pid)" 2>/dev/null; then
  [ "${DESTROY:-0}" = 1 ] && { $GX gnt-cluster destroy --yes-do-it || true; }
  [ "${ORDERLY:-0}" = 1 ] && { $GX /usr/lib/ganeti/daemon-util stop-all >/dev/null 2>&1 || true; }
fi
# Volumes the ExtStorage provider archipelago left attached (the tests install it with
# run_dir $BASE/run/snfd-archipelago, where each attachment is <map>/{loop,nbdfuse.pid,mnt}):
# loop devices belong to the whole machine, so detach them here; their FUSE mounts live in
# the cluster's mount namespace, unmounted there while it exists (nbdfuse then exits) and
# gone with it otherwise; nbdfuse runs in the netns and is stopped below with the rest.
ES_RUN=$BASE/run/snfd-archipelago
for rec in $ES_RUN/*/loop; do
  [ -f "$rec" ] || continue
  loop=$(cat "$rec"); dir=${rec%/loop}
  back=$(cat /sys/block/${loop#/dev/}/loop/backing_file 2>/dev/null)
  [ -n "$back" ] && [ "${back%/${dir##*/}/mnt/disk}" != "$back" ] && losetup -d "$loop"
done
if [ -s $BASE/ns/pid ] && kill -0 "$(cat $BASE/ns/pid)" 2>/dev/null; then
  for mnt in $ES_RUN/*/mnt; do
    [ -d "$mnt" ] && $GX fusermount3 -u -z "$mnt" 2>/dev/null
  done
fi
# Every process in netns gnt<N> was started by ganeti-up.sh (holder) or by the Ganeti
# daemons it started (daemons, on-demand metad, job processes): SIGTERM them by PID, all at
# once (daemon-util stops them one by one, ~2 s each), then SIGKILL what is left after 5 s.
if ip netns list | grep -qw "^$NS"; then
  pids=$(ip netns pids $NS)
  [ -n "$pids" ] && kill $pids 2>/dev/null
  for _ in $(seq 100); do [ -z "$(ip netns pids $NS)" ] && break; sleep 0.05; done
  pids=$(ip netns pids $NS); [ -n "$pids" ] && kill -9 $pids 2>/dev/null && sleep 0.2
  ip netns del $NS                               # also destroys the veth pair and gntbr0
fi
ip link show gnt${N}h >/dev/null 2>&1 && ip link del gnt${N}h
rm -rf $BASE
if ! ls -d /srv/gnt[0-9]* >/dev/null 2>&1; then
  rmdir /srv/ganeti 2>/dev/null
  if [ -e /run/ganeti/.made-by-ganeti-up ]; then
    rm -f /run/ganeti/.made-by-ganeti-up; rmdir /run/ganeti 2>/dev/null
  fi
  rm -f /usr/local/lib/ganeti/iallocators/hail-single
  rmdir /usr/local/lib/ganeti/iallocators /usr/local/lib/ganeti 2>/dev/null
  # /run/netns is created (and bind-mounted onto itself) by the first "ip netns add"
  if [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then umount /run/netns 2>/dev/null; rmdir /run/netns; fi
fi
true
