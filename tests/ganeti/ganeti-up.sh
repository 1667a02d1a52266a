#!/bin/bash
# Bring up single-node Ganeti 3.0 test cluster number N (1..254), fake
# hypervisor, entirely inside its own network namespace gnt<N>:
#   root ns  gnt<N>h 10.77.N.1/24  <--veth-->  gnt<N>n 10.77.N.2/24 (node IP)  netns gnt<N>
#   cluster (master) IP 10.77.N.200/32 on the empty bridge gntbr0 inside gnt<N>
# The daemons also run in a private UTS+mount namespace in which the fixed
# Ganeti paths are bind mounts of per-cluster directories under /srv/gnt<N>:
#   /var/lib/ganeti <- /srv/gnt<N>/lib     /etc/ganeti     <- /srv/gnt<N>/etc
#   /run/ganeti     <- /srv/gnt<N>/run     /var/log/ganeti <- /srv/gnt<N>/log
#   /srv/ganeti     <- /srv/gnt<N>/srv     /run/lock       <- /srv/gnt<N>/lock
#   /etc/hosts, /etc/default/ganeti <- /srv/gnt<N>/ns/{hosts,default-ganeti}
# RAPI: https://10.77.N.2:5080/ (from the root namespace), job queue: /srv/gnt<N>/lib/queue
# Disk templates diskless, file and ext (ExtStorage providers in /srv/gnt<N>/srv/extstorage).
set -euo pipefail
N=${1:?usage: ganeti-up.sh N   (N = 1..254)}
[[ $N =~ ^[0-9]+$ ]] && (( N >= 1 && N <= 254 )) || { echo "bad N: $N" >&2; exit 2; }
NS=gnt$N
NET=10.77.$N
HOST_IP=$NET.1           # root-namespace end of the veth pair
NODE_IP=$NET.2           # node primary IP (namespace end); RAPI listens here
CLUSTER_IP=$NET.200      # must not answer TCP when init probes it
NODE=node$N.ganeti.test
CLUSTER=cluster$N.ganeti.test
BR=gntbr0                # bridge inside the netns: master netdev + NIC link
VH=gnt${N}h; VN=gnt${N}n # veth ends: root side / namespace side
BASE=/srv/gnt$N
RAPI_USER=${RAPI_USER:-synnefo}; RAPI_PASS=${RAPI_PASS:-synnefopass}

[ -e $BASE ] && { echo "$BASE exists; run ganeti-down.sh $N first" >&2; exit 1; }
# A fresh machine may lack the package (or have stale package lists): install it,
# refreshing the lists once if the first attempt fails.
if ! dpkg -s ganeti >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends ganeti >/dev/null ||
    { apt-get -o DPkg::Lock::Timeout=600 update >/dev/null &&
      apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends ganeti >/dev/null; }
fi

# 1. network: own netns, veth pair with private addresses, empty bridge inside.
#    The netns gets NO default route, so nothing in it can reach eth0's network.
ip netns add $NS
ip -n $NS link set lo up                        # node-IP self check pings from 127.0.0.1
ip link add $VH type veth peer name $VN netns $NS
ip addr add $HOST_IP/24 dev $VH
ip link set $VH up
ip -n $NS addr add $NODE_IP/24 dev $VN
ip -n $NS link set $VN up
ip -n $NS link add $BR type bridge
ip -n $NS link set $BR up

# 2. per-cluster directories backing Ganeti's fixed paths
mkdir -p $BASE/{lib,etc,run,log,srv,lock,ns}
cp -a /etc/ganeti/. $BASE/etc/                  # lib/share symlinks, *-ifup-os
echo /srv/ganeti/file-storage > $BASE/etc/file-storage-paths
chown gnt-masterd:gnt-masterd $BASE/lib; chmod 755 $BASE/lib
chown gnt-masterd:gnt-daemons $BASE/run; chmod 775 $BASE/run
chown gnt-masterd:gnt-daemons $BASE/log; chmod 770 $BASE/log
chmod 1777 $BASE/lock
# ExtStorage actions log into log/extstorage, which ensure-dirs does not make: without
# it every ext disk fails ("Cannot find log directory"). Providers go in srv/extstorage.
mkdir -p $BASE/log/extstorage $BASE/srv/extstorage
chown root:gnt-daemons $BASE/log/extstorage; chmod 750 $BASE/log/extstorage
mkdir -p $BASE/srv/file-storage $BASE/srv/os/noop
# no-op guest OS (seen as /srv/ganeti/os/noop inside the namespace)
echo 20 > $BASE/srv/os/noop/ganeti_api_version
echo default > $BASE/srv/os/noop/variants.list
printf 'img_id image id\nimg_format image format\nimg_passwd password\nimg_properties image properties\nconfig_url config url\n' > $BASE/srv/os/noop/parameters.list
for s in create export import rename verify; do
  printf '#!/bin/sh\nexit 0\n' > $BASE/srv/os/noop/$s; chmod 755 $BASE/srv/os/noop/$s
done
mkdir -p /srv/ganeti                            # empty mount point, removed by the last ganeti-down.sh
# /run/ganeti is a mount point too; it is missing when the machine was not booted
# with systemd-tmpfiles (runit/firecracker here). Made here, the last down removes it.
if [ ! -d /run/ganeti ]; then mkdir -p /run/ganeti; touch /run/ganeti/.made-by-ganeti-up; fi
# one-node iallocator (Ganeti only looks it up by bare name in /usr/local/lib/ganeti/iallocators
# and /usr/lib/ganeti/iallocators); shared by all clusters, removed by the last ganeti-down.sh
mkdir -p /usr/local/lib/ganeti/iallocators
printf '#!/bin/sh\nexec /usr/lib/ganeti/iallocators/hail --no-capacity-checks "$@"\n' > /usr/local/lib/ganeti/iallocators/.hail-single.$$
chmod 755 /usr/local/lib/ganeti/iallocators/.hail-single.$$
mv -f /usr/local/lib/ganeti/iallocators/.hail-single.$$ /usr/local/lib/ganeti/iallocators/hail-single  # atomic: parallel ups

# 3. private hosts and daemon defaults
{ cat /etc/hosts; echo "$NODE_IP $NODE ${NODE%%.*}"; echo "$CLUSTER_IP $CLUSTER ${CLUSTER%%.*}"; } > $BASE/ns/hosts
{ cat /etc/default/ganeti; echo "RAPI_ARGS=\"-b $NODE_IP --require-authentication\""; } > $BASE/ns/default-ganeti

# 4. holder process: netns gnt<N> + new UTS and mount namespaces, mounts, then sleeps.
#    (ip netns exec remounts /sys for the netns, so Ganeti's /sys/class/net bridge check sees gntbr0.)
cat > $BASE/ns/holder.sh <<EOS
#!/bin/bash
set -e
hostname $NODE
mount --bind $BASE/ns/hosts /etc/hosts
mount --bind $BASE/ns/default-ganeti /etc/default/ganeti
mount --bind $BASE/lib  /var/lib/ganeti
mount --bind $BASE/etc  /etc/ganeti
mount --bind $BASE/run  /run/ganeti
mount --bind $BASE/log  /var/log/ganeti
mount --bind $BASE/srv  /srv/ganeti
mount --bind $BASE/lock /run/lock
echo \$\$ > $BASE/ns/pid
exec sleep infinity
EOS
chmod +x $BASE/ns/holder.sh
setsid ip netns exec $NS unshare --uts --mount --propagation private $BASE/ns/holder.sh \
  </dev/null >$BASE/ns/holder.log 2>&1 &
for _ in $(seq 100); do [ -s $BASE/ns/pid ] && break; sleep 0.05; done
[ -s $BASE/ns/pid ] || { cat $BASE/ns/holder.log >&2; exit 1; }
printf '#!/bin/bash\nexec nsenter --net=/var/run/netns/%s -t $(cat %s/ns/pid) -u -m -- "$@"\n' $NS $BASE > $BASE/ns/gx
chmod +x $BASE/ns/gx
GX=$BASE/ns/gx

# 5. cluster init (starts the daemons via daemon-util/start-stop-daemon, inside the namespaces)
$GX gnt-cluster init --enabled-hypervisors=fake --enabled-disk-templates=diskless,file,ext \
    --master-netdev=$BR -N link=$BR --no-etc-hosts --no-ssh-init \
    --default-iallocator=hail-single "$CLUSTER"

# 6. RAPI user (rapi watches the file with inotify)
printf '%s %s write\n' "$RAPI_USER" "$RAPI_PASS" > $BASE/lib/rapi/users
chown gnt-rapi:gnt-masterd $BASE/lib/rapi/users; chmod 640 $BASE/lib/rapi/users
for _ in $(seq 100); do
  curl -skf -m 2 -u "$RAPI_USER:$RAPI_PASS" https://$NODE_IP:5080/2/info >/dev/null && break; sleep 0.1
done
echo "cluster $N: RAPI https://$NODE_IP:5080 version $(curl -skf -m 2 -u "$RAPI_USER:$RAPI_PASS" https://$NODE_IP:5080/version)"
