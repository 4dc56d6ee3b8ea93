# shellcheck shell=bash
# The swarm lab's names and addresses, and the helpers `up`, `down` and `load-image` share.
# Sourced, never run. Everything the lab creates carries `baton-lab` / `baton-swarm-lab`
# in its name (or the comment of its iptables rule), so `down` removes exactly that.

# All lab state: one directory per worker (config, data root, exec root, pidfile, socket,
# log) and `state` (what `up` made, read by `down`).
LAB_DIR=/run/baton-swarm-lab
LAB_STATE="$LAB_DIR/state"
# Serializes every `up` / `down` / `load-image` (and the test harness, which holds it while
# it calls them and sets BATON_SWARM_LAB_LOCKED=1). Kept: deleting a lock file others may
# have open would let two holders in at once.
LAB_LOCK=/run/lock/baton-swarm-lab.lock
# The test harness's users of the lab (one file each) and `owner` (who brought it up).
LAB_USERS=/run/lock/baton-swarm-lab.users

# The host bridge and its /24; node1 is the machine's own engine (the manager) on the
# bridge address, node2 and node3 are workers in network namespaces.
LAB_BRIDGE=baton-lab0
LAB_NET=10.231.77
LAB_MANAGER_ADDR="$LAB_NET.1"
LAB_WORKERS=(node2 node3)
# Swarm's own address pool (the ingress network and any overlay made without --subnet)
# and the lab's attachable overlay network: all inside 10.231.64.0/18, which `up` refuses
# to use when anything on the host already routes into it.
LAB_GUARD_RANGE=10.231.64.0/18
LAB_POOL=10.231.80.0/20
LAB_OVERLAY=baton-lab
LAB_OVERLAY_SUBNET=10.231.96.0/24
# Tag of the rule that lets bridged traffic between the workers through the host's
# FORWARD chain (br_netfilter sends it there, and Docker's FORWARD policy is DROP).
LAB_RULE_COMMENT=baton-swarm-lab

say() { echo "swarm-lab: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

worker_dir() { echo "$LAB_DIR/$1"; }
worker_sock() { echo "$LAB_DIR/$1/docker.sock"; }
worker_netns() { echo "baton-lab-$1"; }
# Host side of the worker's veth (15 characters at most): baton-lab-n2, baton-lab-n3.
worker_veth() { echo "baton-lab-n${1#node}"; }
worker_addr() { echo "$LAB_NET.${1#node}"; }
wdocker() {
  local node=$1
  shift
  docker -H "unix://$(worker_sock "$node")" "$@"
}

# Takes the lab's lock unless the caller (the test harness) already holds it.
take_lock() {
  if [ "${BATON_SWARM_LAB_LOCKED:-}" = 1 ]; then
    return
  fi
  mkdir -p "$(dirname "$LAB_LOCK")"
  exec 9>>"$LAB_LOCK"
  flock -w 600 9 || die "another swarm-lab command held $LAB_LOCK for 600 s"
}

# Checks for what the lab needs; names the Debian package of what is missing.
need_tools() {
  [ "$(id -u)" = 0 ] || die "run as root (the lab makes network namespaces, a bridge and daemons)"
  local missing=()
  command -v docker >/dev/null || missing+=("docker (docker.io)")
  command -v dockerd >/dev/null || missing+=("dockerd (docker.io)")
  command -v ip >/dev/null || missing+=("ip (iproute2)")
  command -v nsenter >/dev/null || missing+=("nsenter (util-linux)")
  command -v flock >/dev/null || missing+=("flock (util-linux)")
  command -v iptables >/dev/null || missing+=("iptables (iptables)")
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing commands: ${missing[*]}"
  fi
}

# `key=value` lines of $LAB_STATE.
state_get() {
  [ -f "$LAB_STATE" ] || return 0
  sed -n "s/^$1=//p" "$LAB_STATE" | tail -1
}
state_set() {
  mkdir -p "$LAB_DIR"
  echo "$1=$2" >>"$LAB_STATE"
}

manager_swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }
manager_cluster_id() { docker info --format '{{if .Swarm.Cluster}}{{.Swarm.Cluster.ID}}{{end}}' 2>/dev/null || true; }

# Whether the manager's swarm is the one this lab created: its cluster id is the one in
# $LAB_STATE or, when that file is gone, this node carries the lab's label and address.
swarm_is_ours() {
  local ours
  ours=$(state_get cluster)
  if [ -n "$ours" ]; then
    [ "$(manager_cluster_id)" = "$ours" ]
    return
  fi
  [ "$(docker info --format '{{.Swarm.NodeAddr}}' 2>/dev/null)" = "$LAB_MANAGER_ADDR" ] &&
    [ "$(docker node inspect self --format '{{index .Spec.Labels "baton-lab"}}' 2>/dev/null)" = node1 ]
}

forward_rule() { echo "FORWARD -i $LAB_BRIDGE -o $LAB_BRIDGE -m comment --comment $LAB_RULE_COMMENT -j ACCEPT"; }

# Starts worker $1's dockerd in its namespace (`up`, and `node start` after a `node stop`).
# `nsenter --net`, not `ip netns exec`: the latter remounts /sys, and dockerd then dies
# with "Devices cgroup isn't mounted". setsid: the daemon outlives the caller's session
# and process group.
start_dockerd() {
  local w=$1 dir
  dir=$(worker_dir "$w")
  setsid nsenter --net="/var/run/netns/$(worker_netns "$w")" \
    dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" \
    --exec-root "$dir/exec" --pidfile "$dir/docker.pid" -H "unix://$(worker_sock "$w")" \
    --storage-driver vfs --bridge none --iptables=false --ip-masq=false \
    --label "baton-lab=$w" </dev/null >>"$dir/dockerd.log" 2>&1 9>&- &
}
