#!/usr/bin/env bash
# A long `pgha chaos` campaign in distributed mode, on test hosts: etcd, three `pgha agent`
# members and a client host running `pgha proxy`, each in its own Linux network namespace on
# one bridge (as crates/pgha/tests/common/netns.rs builds them). The campaign runs on n1's
# host, as a DBA would run it on one of the members: writers through the proxy and through a
# multi-host URI, and every fault `pgha chaos --config` has: kills and pauses of n1's own
# processes, isolate-host (n1 cut off from etcd and the other members by iptables), and two
# faults given as --fault-command: etcd-restart (etcd stopped, down ETCD_DOWN s, started again),
# agent-kill (n1's `pgha agent` killed with SIGKILL and started again after AGENT_DOWN s, as
# systemd would), etcd-pause (etcd SIGSTOPped for ETCD_PAUSE s), link-cut (the leader's link to
# one standby blackholed, one way or both, for LINK_CUT s) and etcd-cut (the leader's link to
# etcd blackholed both ways for LINK_CUT s), disk-stall (one member's disk frozen with fsfreeze
# for DISK_STALL s), etcd-disk (etcd's own file system frozen with fsfreeze for ETCD_DISK s:
# its WAL's fsyncs wait, as on a stalled disk), etcd-slow (etcd's answers late, for the leader
# alone or for every host, for ETCD_SLOW s), clock-jump (the wall clock of the leader's agent, a standby's or both stepped by
# an hour, CLOCK_HOLD s one way then CLOCK_HOLD s the other, by libfaketime: only the agents and
# their supervisors see it), and switchover, failover, stop/crash/restart through the agents. Every host
# reaches etcd through a forwarder of its own (crates/pgha-testkit/examples/delay_link.rs) that
# etcd-slow slows down (this kernel has no netem), at an address every host has on its own
# loopback interface (not 127.0.0.1, which isolate-host refuses to cut: it cuts that address).
#   bench/chaos_dist.sh                 ROUNDS=100 faults, synchronous_mode=on
#   env: ROUNDS=N, SYNC=on|strict|off|quorum (quorum: on, synchronous_method=quorum), FAULTS=all, SEED, WRITERS=2, ETCD_DOWN=2 (seconds etcd
#        stays down in a restart), AGENT_DOWN=1, ETCD_PAUSE=8, LINK_CUT=20, DISK_STALL=20,
#        ETCD_DISK=15, ETCD_SLOW=20, CLOCK_HOLD=10 (seconds),
#        OUT=bench/results/<date>-chaos-dist, BIN, NO_BUILD=1,
#        PG_BIN=DIR (the members' PostgreSQL: its bin directory, e.g. a version of
#        scripts/install-deps.sh's /var/cache/pgha/pg-18.*/bin; default Debian's 15),
#        OVERLAP=1 (a second nemesis beside the campaign's faults, see background.sh below;
#        recovery bound then 90 s, settle 40 s)
# Needs root, ip (iproute2), iptables, etcd, losetup, fsfreeze and libfaketime (Debian: iproute2
# iptables etcd-server util-linux libfaketime).
# Settings: pgha's defaults (ttl 10 s, safety margin 2.5 s, loop 1 s), members without TLS
# (`insecure_no_tls = true`: the writers then also go through the proxy), fsync on.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/common.sh
[ "$(id -u)" = 0 ] || { echo "bench/chaos_dist.sh needs root (network namespaces, iptables)" >&2; exit 2; }
for tool in ip iptables etcd losetup fsfreeze mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install iproute2 iptables etcd-server util-linux e2fsprogs)" >&2; exit 2; }
done
# the multi-threaded build: the single-threaded one hands threads reading the clock while it
# changes invalid times
faketime_lib="$(ls /usr/lib/*/faketime/libfaketimeMT.so.1 2>/dev/null | head -1)"
[ -n "$faketime_lib" ] || { echo "missing libfaketimeMT.so.1 (apt-get install libfaketime)" >&2; exit 2; }
rounds="${ROUNDS:-100}"
sync="${SYNC:-on}"
case "$sync" in
  on|strict|off) sync_lines="synchronous_mode = \"$sync\"" ;;
  quorum) sync_lines=$'synchronous_mode = "on"\nsynchronous_method = "quorum"' ;;
  *) echo "SYNC=$sync: expected on, strict, off or quorum" >&2; exit 2 ;;
esac
faults="${FAULTS:-all}"
seed="${SEED:-$(date +%s)}"
writers="${WRITERS:-2}"
etcd_down="${ETCD_DOWN:-2}"
agent_down="${AGENT_DOWN:-1}"
etcd_pause="${ETCD_PAUSE:-8}"
link_cut="${LINK_CUT:-20}"
disk_stall="${DISK_STALL:-20}"
etcd_disk="${ETCD_DISK:-15}"
etcd_slow="${ETCD_SLOW:-20}"
clock_hold="${CLOCK_HOLD:-10}"
overlap="${OVERLAP:-0}"
case "$overlap" in 0|1) ;; *) echo "OVERLAP=$overlap: expected 0 or 1" >&2; exit 2 ;; esac
out="${OUT:-bench/results/$(date -u +%Y-%m-%d)-chaos-dist}"
pg_bin="${PG_BIN:-}"
pg_section=""
if [ -n "$pg_bin" ]; then
  [ -x "$pg_bin/postgres" ] || { echo "PG_BIN=$pg_bin: no postgres binary there" >&2; exit 2; }
  pg_section=$'[postgresql]\n'"bin_dir = \"$pg_bin\""
fi
pgha_build
link_bin="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/delay_link"
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q -p pgha-testkit --example delay_link
[ -x "$link_bin" ] || { echo "missing $link_bin (cargo build --release -p pgha-testkit --example delay_link)" >&2; exit 2; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"
make_work pgha-chaos-dist

prefix="pgcd$$"
subnet=$(( $$ % 200 + 20 ))
etcd_alias="10.204.$subnet.1"
hosts=(etcd n1 n2 n3 client)
declare -A ip_of
pids=()
cleanup() {
  [ -n "${background_pid:-}" ] && kill -TERM "$background_pid" 2>/dev/null || true
  # what the background nemesis stopped (SIGSTOP) must run to take SIGTERM
  for f in "$work"/n?.agent.pid "$work/etcd.pid"; do [ -f "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null || true; done
  # a process waiting on a frozen disk ends only once it thaws
  for n in n1 n2 n3 etcd.fs; do fsfreeze -u "$work/$n" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for f in "$work"/n?.agent.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  [ -f "$work/etcd.pid" ] && kill -TERM "$(cat "$work/etcd.pid")" 2>/dev/null || true
  sleep 2
  for d in "$work"/n*/data; do
    [ -f "$d/postmaster.pid" ] && kill -QUIT "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
  done
  for h in "${hosts[@]}" br; do
    if ip netns list | grep -q "^$prefix-$h\b"; then
      for p in $(ip netns pids "$prefix-$h" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$prefix-$h" 2>/dev/null || true
    fi
  done
  for n in n1 n2 n3 etcd.fs; do
    umount "$work/$n" 2>/dev/null || umount -l "$work/$n" 2>/dev/null || true
    [ -f "$work/$n.loop" ] && losetup -d "$(cat "$work/$n.loop")" 2>/dev/null || true
    umount -l "$work/$n.ram" 2>/dev/null || true
  done
  rm -rf "$work"
  # what libfaketime left in /dev/shm for the processes it was preloaded in that are gone
  # (a clean exit removes its own; killed agents and PostgreSQL processes leave theirs)
  python3 - "$campaign_started" <<'PY' || true
import os, sys
since = float(sys.argv[1])
for name in os.listdir("/dev/shm"):
    pid = name.removeprefix("faketime_shm_").removeprefix("sem.faketime_sem_")
    path = os.path.join("/dev/shm", name)
    try:
        if pid != name and pid.isdigit() and not os.path.exists(f"/proc/{pid}") \
                and os.stat(path).st_mtime >= since:
            os.remove(path)
    except OSError:
        pass
PY
}
campaign_started="$(date +%s)"
trap cleanup EXIT
trap 'exit 130' INT TERM

# The hosts: a namespace each, eth0 on a bridge that lives in a namespace of its own.
ip netns add "$prefix-br"
ip -n "$prefix-br" link set lo up
ip -n "$prefix-br" link add br0 type bridge
ip -n "$prefix-br" link set br0 up
i=0
for h in "${hosts[@]}"; do
  ns="$prefix-$h"
  ip_of[$h]="10.203.$subnet.$((10 + i))"
  ip netns add "$ns"
  ip -n "$prefix-br" link add "v$i" type veth peer name eth0 netns "$ns"
  ip -n "$prefix-br" link set "v$i" master br0 up
  ip -n "$ns" addr add "${ip_of[$h]}/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  # where this host reaches etcd: its own forwarder (below), at one address every host has
  [ "$h" = etcd ] || ip -n "$ns" addr add "$etcd_alias/32" dev lo
  i=$((i + 1))
done
on() { local h="$1"; shift; ip netns exec "$prefix-$h" "$@"; }

# Each member's directory on a file system of its own, which disk-stall freezes, and etcd's,
# which etcd-disk freezes: an ext4 image of 1 GiB mounted through a loop device, the image in a
# tmpfs (memory, not this machine's disk).
for n in n1 n2 n3 etcd.fs; do
  mkdir -p "$work/$n.ram" "$work/$n"
  mount -t tmpfs -o size=1049664k,mode=700 tmpfs "$work/$n.ram"
  truncate -s 1G "$work/$n.ram/image"
  mkfs.ext4 -q -F "$work/$n.ram/image"
  losetup --find --show "$work/$n.ram/image" > "$work/$n.loop"
  mount "$(cat "$work/$n.loop")" "$work/$n"
  chmod 755 "$work/$n"
done

# etcd, and the script the `command` fault runs: etcd stopped (SIGTERM), down for ETCD_DOWN
# seconds, started again with the same data.
etcd_ip="${ip_of[etcd]}"
cat > "$work/etcd-start.sh" <<EOF
#!/bin/sh
ip netns exec $prefix-etcd setsid etcd --name e --data-dir $work/etcd.fs/data \\
  --listen-client-urls http://$etcd_ip:2379 --advertise-client-urls http://$etcd_ip:2379 \\
  --listen-peer-urls http://$etcd_ip:2380 --initial-advertise-peer-urls http://$etcd_ip:2380 \\
  --initial-cluster e=http://$etcd_ip:2380 >> $work/etcd.log 2>&1 < /dev/null &
echo \$! > $work/etcd.pid
EOF
cat > "$work/etcd-restart.sh" <<EOF
#!/bin/sh
pid=\$(cat $work/etcd.pid)
kill -TERM "\$pid"
while kill -0 "\$pid" 2>/dev/null; do sleep 0.1; done
sleep $etcd_down
$work/etcd-start.sh
EOF
# Agents start detached (setsid, their pid in nK.agent.pid), so that agent-kill can start n1's
# again the same way. Each agent's wall clock (and its supervisor's: programs named pgha only,
# PostgreSQL keeps the true one) is the true one plus the offset in nK.faketime, which
# clock-jump writes; their monotonic and boot clocks stay true, as on a real clock step.
cat > "$work/agent-start.sh" <<EOF
#!/bin/sh
[ -f $work/\$1.faketime ] || echo +0 > $work/\$1.faketime
ip netns exec $prefix-\$1 env LD_PRELOAD=$faketime_lib FAKETIME_DONT_FAKE_MONOTONIC=1 \\
  FAKETIME_NO_CACHE=1 FAKETIME_TIMESTAMP_FILE=$work/\$1.faketime FAKETIME_ONLY_CMDS=pgha \\
  setsid $bin agent --config $work/\$1.toml >> $work/\$1.agent.log 2>&1 < /dev/null &
echo \$! > $work/\$1.agent.pid
EOF
cat > "$work/agent-kill.sh" <<EOF
#!/bin/sh
pid=\$(cat $work/n1.agent.pid)
kill -KILL "\$pid"
while [ -e /proc/\$pid ]; do sleep 0.1; done
sleep $agent_down
$work/agent-start.sh n1
EOF
# etcd-pause: etcd stopped with SIGSTOP for ETCD_PAUSE seconds (its connections stay open and
# answer nothing: a stalled disk or VM), then SIGCONT.
cat > "$work/etcd-pause.sh" <<EOF
#!/bin/sh
pid=\$(cat $work/etcd.pid)
kill -STOP "\$pid"
sleep $etcd_pause
kill -CONT "\$pid"
EOF
# draw.sh FAULT N: FAULT's next draw in 0..N-1, from SEED and how many draws FAULT made before
# (Python's random: mawk's srand gave the same number for every seed this large).
cat > "$work/draw.sh" <<EOF
#!/bin/sh
n=\$(cat $work/\$1.count 2>/dev/null || echo 0); echo \$((n + 1)) > $work/\$1.count
python3 -c 'import random, sys; print(random.Random(sys.argv[1]).randrange(int(sys.argv[2])))' "\$1 $seed \$n" "\$2"
EOF
# standby.sh K: the member numbered K (0 or 1) of the two not leading ($PGHA_LEADER).
cat > "$work/standby.sh" <<EOF
#!/bin/sh
for m in n1 n2 n3; do [ "\$m" = "\$PGHA_LEADER" ] || echo \$m; done | sed -n "\$((\$1 + 1))p"
EOF
# oneway.sh CHAIN -d|-s ADDR: the iptables rules (CHAIN and the rest, a line each) that drop
# what crosses CHAIN to or from ADDR in one direction and let TCP's bare acknowledgements
# through: every packet but TCP segments without data (an IP header of 20 bytes and a TCP
# header whose length its data offset says, 20 to 60 bytes). Dropping every packet would also
# drop the acknowledgements of what flows the other way, which then stops within a
# retransmission timeout: a cut both ways, not one.
cat > "$work/oneway.sh" <<'ONEWAY'
#!/bin/sh
for h in 20 24 28 32 36 40 44 48 52 56 60; do
  echo "$1 $2 $3 -p tcp -m u32 --u32 0>>24&0x0F=5&&0>>22&0x3C@12>>26&0x3C=$h&&0&0xFFFF=$((21 + h)):65535 -j DROP"
done
echo "$1 $2 $3 ! -p tcp -j DROP"
ONEWAY
chmod 755 "$work/oneway.sh"
# The links of the member leading when a fault is drawn ($PGHA_LEADER), blackholed by iptables
# in its namespace for LINK_CUT seconds, then healed: link-cut cuts it from one standby (drawn
# from SEED and the fault's number), one way (what it sends is dropped) or both, again drawn;
# etcd-cut cuts it from etcd alone, both ways, while it still streams to its standbys.
cat > "$work/cut.sh" <<EOF
#!/bin/sh
# cut.sh PEER_IP WAY: WAY one (drop what the leader sends) or both
ns=$prefix-\$PGHA_LEADER
rules=\$($work/oneway.sh OUTPUT -d \$1)
[ "\$2" = both ] && rules="OUTPUT -d \$1 -j DROP
INPUT -s \$1 -j DROP"
echo "\$rules" | while read -r chain rest; do ip netns exec \$ns iptables -w -I \$chain 1 \$rest; done
sleep $link_cut
echo "\$rules" | while read -r chain rest; do ip netns exec \$ns iptables -w -D \$chain \$rest; done
echo "cut \$PGHA_LEADER from \$1 (\$2) for $link_cut s" >> $work/cuts.log
EOF
cat > "$work/link-cut.sh" <<EOF
#!/bin/sh
draw=\$($work/draw.sh link-cut 4)
peer=\$($work/standby.sh \$(( draw % 2 )))
way=one; [ \$(( draw / 2 )) = 1 ] && way=both
case \$peer in n1) ip=${ip_of[n1]};; n2) ip=${ip_of[n2]};; n3) ip=${ip_of[n3]};; esac
exec $work/cut.sh "\$ip" "\$way"
EOF
# disk-stall: the file system of one member's directory (drawn from SEED and the fault's
# number: the leader, or either standby) frozen with fsfreeze for DISK_STALL seconds: its
# writes and fsyncs wait, reads from memory still answer.
cat > "$work/disk-stall.sh" <<EOF
#!/bin/sh
draw=\$($work/draw.sh disk-stall 3)
victim=\$(echo n1 n2 n3 | cut -d' ' -f\$((draw + 1)))
role=standby; [ "\$victim" = "\$PGHA_LEADER" ] && role=leader
fsfreeze -f $work/\$victim
sleep $disk_stall
fsfreeze -u $work/\$victim
echo "froze \$victim's disk (\$role) for $disk_stall s" >> $work/cuts.log
EOF
# etcd-disk: etcd's file system frozen for ETCD_DISK seconds: every write and fsync of etcd
# waits (its WAL, its database), what it holds in memory still answers.
cat > "$work/etcd-disk.sh" <<EOF
#!/bin/sh
fsfreeze -f $work/etcd.fs
sleep $etcd_disk
fsfreeze -u $work/etcd.fs
echo "froze etcd's disk for $etcd_disk s" >> $work/cuts.log
EOF
cat > "$work/etcd-cut.sh" <<EOF
#!/bin/sh
exec $work/cut.sh $etcd_ip both
EOF
# etcd-slow: the forwarders to etcd of the leader alone, or of every host (the proxy's too),
# deliver each chunk late for ETCD_SLOW seconds (both drawn from SEED and the fault's number):
# 150-400 ms each way (round trips on both sides of the store call bound) or 1 s (no call
# answered in time). Every request still reaches etcd, late, and is carried out.
cat > "$work/etcd-slow.sh" <<EOF
#!/bin/sh
draw=\$($work/draw.sh etcd-slow 4)
hosts=\$PGHA_LEADER; who="the leader (\$PGHA_LEADER)"
[ \$(( draw % 2 )) = 1 ] && { hosts="n1 n2 n3 client"; who="every host"; }
delay="150 400"; [ \$(( draw / 2 )) = 1 ] && delay="1000 1000"
for h in \$hosts; do echo "\$delay" > $work/\$h.delay; done
sleep $etcd_slow
for h in \$hosts; do : > $work/\$h.delay; done
echo "slowed etcd by \$delay ms each way for \$who for $etcd_slow s" >> $work/cuts.log
EOF
# clock-jump: the wall clock of the leader's agent, of a standby's, or of both (opposite ways),
# an hour ahead or behind (drawn from SEED and the fault's number) for CLOCK_HOLD seconds, then
# an hour the other way for CLOCK_HOLD seconds, then true again.
cat > "$work/clock-jump.sh" <<EOF
#!/bin/sh
draw=\$($work/draw.sh clock-jump 6)
standby=\$($work/standby.sh \$(( draw % 2 )))
case \$(( draw / 2 )) in 0) ahead=\$PGHA_LEADER; behind=;; 1) ahead=\$standby; behind=;; *) ahead=\$PGHA_LEADER; behind=\$standby;; esac
step() { [ -z "\$1" ] || { echo "\$2" > $work/\$1.faketime.tmp; mv $work/\$1.faketime.tmp $work/\$1.faketime; }; }
step "\$ahead" +3600; step "\$behind" -3600
sleep $clock_hold
step "\$ahead" -3600; step "\$behind" +3600
sleep $clock_hold
step "\$ahead" +0; step "\$behind" +0
echo "stepped the wall clock of \$ahead (leader \$PGHA_LEADER) +1 h then -1 h\${behind:+, of \$behind -1 h then +1 h}, $clock_hold s each" >> $work/cuts.log
EOF
chmod 755 "$work/clock-jump.sh" "$work/draw.sh" "$work/standby.sh"
chmod 755 "$work/etcd-start.sh" "$work/etcd-restart.sh" "$work/agent-start.sh" "$work/agent-kill.sh" \
  "$work/etcd-pause.sh" "$work/cut.sh" "$work/link-cut.sh" "$work/etcd-cut.sh" "$work/disk-stall.sh" \
  "$work/etcd-slow.sh" "$work/etcd-disk.sh"
# OVERLAP=1: a second nemesis beside the campaign's faults, as real incidents come (a link
# flapping while a failover runs, a standby's disk stalling as the leader dies, an agent
# paused while etcd is slow). After a pause drawn in 5-20 s it injects one fault for 3-15 s,
# both drawn from SEED, on hosts drawn without regard to who leads, and heals it: a member's
# link to another member, etcd or the proxy's host blackholed one way or both (iptables in
# the member's namespace), the proxy's host cut from etcd, a member's disk frozen (fsfreeze),
# every process of a member's PostgreSQL stopped (SIGSTOP), a member's agent paused (SIGSTOP),
# n2's or n3's agent killed (SIGKILL) and started again a second later (the campaign's
# agent-kill kills n1's), etcd paused (at most 6 s), etcd's answers 150-400 ms late for one
# member, an agent's wall clock stepped an hour. One at a time, each logged with its UTC times
# in background.log. It stops once the campaign has reported ROUNDS-1 faults: the last fault
# and the read-back run without it.
cat > "$work/background.sh" <<EOF
#!/bin/sh
addr() { case \$1 in n1) echo ${ip_of[n1]};; n2) echo ${ip_of[n2]};; n3) echo ${ip_of[n3]};; etcd) echo $etcd_ip;; client) echo ${ip_of[client]};; esac; }
log() { echo "\$(date -u +%H:%M:%S.%3N) \$*" >> $work/background.log; }
stopping() { [ -e $work/background.stop ] || [ "\$(grep -c '^#' $out/dist.log 2>/dev/null)" -ge $((rounds - 1)) ]; }
while :; do
  gap=\$(( \$($work/draw.sh bg-gap 16) + 5 ))
  while [ \$gap -gt 0 ]; do stopping && exit 0; sleep 1; gap=\$((gap - 1)); done
  hold=\$(( \$($work/draw.sh bg-hold 13) + 3 ))
  member=n\$(( \$($work/draw.sh bg-member 3) + 1 ))
  case \$($work/draw.sh bg-kind 10) in
  0|1)
    # a link: member to another member, etcd or the proxy's host; out (what member sends
    # dropped), in, or both
    draw=\$($work/draw.sh bg-link 12)
    peer=\$(for h in n1 n2 n3 etcd client; do [ \$h = \$member ] || echo \$h; done | sed -n "\$(( draw % 4 + 1 ))p")
    way=\$(echo out in both | cut -d' ' -f\$(( draw / 4 + 1 )))
    case \$way in
    out) rules=\$($work/oneway.sh OUTPUT -d \$(addr \$peer)) ;;
    in) rules=\$($work/oneway.sh INPUT -s \$(addr \$peer)) ;;
    both) rules="OUTPUT -d \$(addr \$peer) -j DROP
INPUT -s \$(addr \$peer) -j DROP" ;;
    esac
    log "cut \$member -> \$peer (\$way) for \$hold s"
    echo "\$rules" | while read -r chain rest; do [ -z "\$chain" ] || ip netns exec $prefix-\$member iptables -w -I \$chain 1 \$rest; done
    sleep \$hold
    echo "\$rules" | while read -r chain rest; do [ -z "\$chain" ] || ip netns exec $prefix-\$member iptables -w -D \$chain \$rest; done
    log "healed \$member -> \$peer (\$way)" ;;
  2)
    log "froze \$member's disk for \$hold s"
    fsfreeze -f $work/\$member
    sleep \$hold
    fsfreeze -u $work/\$member
    log "thawed \$member's disk" ;;
  3)
    pid=\$(cat $work/\$member.agent.pid)
    log "paused \$member's agent (pid \$pid) for \$hold s"
    kill -STOP \$pid
    sleep \$hold
    kill -CONT \$pid
    log "resumed \$member's agent" ;;
  4)
    pid=\$(cat $work/etcd.pid)
    hold=\$(( hold % 5 + 2 ))
    log "paused etcd (pid \$pid) for \$hold s"
    kill -STOP \$pid
    sleep \$hold
    kill -CONT \$pid
    log "resumed etcd" ;;
  5)
    log "slowed etcd by 150-400 ms each way for \$member for \$hold s"
    echo "150 400" > $work/\$member.delay
    sleep \$hold
    : > $work/\$member.delay
    log "etcd at full speed again for \$member" ;;
  6)
    step=+3600; [ \$(( hold % 2 )) = 1 ] && step=-3600
    log "stepped \$member's agent's wall clock \$step s for \$hold s"
    echo \$step > $work/\$member.faketime.tmp; mv $work/\$member.faketime.tmp $work/\$member.faketime
    sleep \$hold
    echo +0 > $work/\$member.faketime.tmp; mv $work/\$member.faketime.tmp $work/\$member.faketime
    log "\$member's agent's wall clock true again" ;;
  7)
    # every process of the member's PostgreSQL stopped, as a stalled host or I/O would hold it
    pm=\$(head -1 $work/\$member/data/postmaster.pid 2>/dev/null)
    procs=\$( [ -n "\$pm" ] && echo \$pm \$(pgrep -P \$pm) )
    log "stopped \$member's PostgreSQL (\$(echo \$procs | wc -w) processes) for \$hold s"
    [ -z "\$procs" ] || kill -STOP \$procs 2>/dev/null
    sleep \$hold
    [ -z "\$procs" ] || kill -CONT \$procs 2>/dev/null
    log "continued \$member's PostgreSQL" ;;
  8)
    victim=n\$(( hold % 2 + 2 ))
    pid=\$(cat $work/\$victim.agent.pid)
    log "killed \$victim's agent (pid \$pid), started again 1 s after"
    kill -KILL \$pid
    while [ -e /proc/\$pid ]; do sleep 0.1; done
    sleep 1
    $work/agent-start.sh \$victim
    log "started \$victim's agent again (pid \$(cat $work/\$victim.agent.pid))" ;;
  9)
    way=\$(echo out in both | cut -d' ' -f\$(( hold % 3 + 1 )))
    rules=""
    [ \$way = in ] || rules="OUTPUT -d $etcd_ip -j DROP"
    [ \$way = out ] || rules="\$rules
INPUT -s $etcd_ip -j DROP"
    log "cut the proxy's host -> etcd (\$way) for \$hold s"
    echo "\$rules" | while read -r chain rest; do [ -z "\$chain" ] || ip netns exec $prefix-client iptables -w -I \$chain 1 \$rest; done
    sleep \$hold
    echo "\$rules" | while read -r chain rest; do [ -z "\$chain" ] || ip netns exec $prefix-client iptables -w -D \$chain \$rest; done
    log "healed the proxy's host -> etcd (\$way)" ;;
  esac
done
EOF
chmod 755 "$work/background.sh"
"$work/etcd-start.sh"
for _ in $(seq 100); do
  on n1 curl -sf "http://$etcd_ip:2379/health" >/dev/null 2>&1 && break
  sleep 0.2
done
# Each host's forwarder to etcd, where its pgha reaches etcd (no delay until etcd-slow).
for h in n1 n2 n3 client; do
  on "$h" "$link_bin" "$etcd_alias:2379" "$etcd_ip:2379" "$work/$h.delay" > "$work/$h.link.log" 2>&1 &
  pids+=($!)
done

# Secrets and one node config per member (the proxy takes n1's, whose [proxy] names the
# client host).
secret() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
printf 'superuser_password = "%s"\nreplication_password = "%s"\napi_token = "%s"\n' \
  "$(secret)" "$(secret)" "$(secret)" > "$work/secrets.toml"
chmod 600 "$work/secrets.toml"
for n in n1 n2 n3; do
  cat > "$work/$n.toml" <<EOF
insecure_no_tls = true
replication_from = ["10.203.$subnet.0/24"]
[cluster]
name = "chaos"
[etcd]
endpoints = ["http://$etcd_alias:2379"]
[member]
name = "$n"
dir = "$work/$n"
host = "${ip_of[$n]}"
port = 5432
api = "${ip_of[$n]}:8008"
[secrets]
file = "$work/secrets.toml"
$pg_section
[postgresql.parameters]
shared_buffers = "64MB"
max_wal_size = "256MB"
[proxy]
rw_listen = "${ip_of[client]}:6432"
ro_listen = "${ip_of[client]}:6433"
[dynamic]
$sync_lines
EOF
done
for n in n1 n2 n3; do "$work/agent-start.sh" "$n"; done
on client "$bin" proxy --config "$work/n1.toml" > "$work/proxy.log" 2>&1 &
pids+=($!)

converged() {
  on n1 "$bin" status --config "$work/n1.toml" --json 2>/dev/null | converged_primary 3 >/dev/null
}
deadline=$(( $(date +%s) + 180 ))
until converged; do
  for p in "${pids[@]}" $(cat "$work"/n?.agent.pid); do
    kill -0 "$p" 2>/dev/null || { echo "an agent or the proxy exited"; tail -5 "$work"/n?.agent.log "$work/proxy.log"; exit 1; } >&2
  done
  [ "$(date +%s)" -gt "$deadline" ] && { echo "the cluster did not converge"; tail -20 "$work"/n?.agent.log; exit 1; } >&2
  sleep 1
done

{
  echo "# bench/chaos_dist.sh  (ROUNDS=$rounds SYNC=$sync FAULTS=$faults SEED=$seed WRITERS=$writers ETCD_DOWN=$etcd_down AGENT_DOWN=$agent_down ETCD_PAUSE=$etcd_pause LINK_CUT=$link_cut DISK_STALL=$disk_stall ETCD_DISK=$etcd_disk ETCD_SLOW=$etcd_slow CLOCK_HOLD=$clock_hold OVERLAP=$overlap)"
  echo "# started $(date -u +%FT%TZ) on $(nproc) cores; $("$bin" --version); commit $(git rev-parse --short HEAD)"
  echo "# PostgreSQL: $("${pg_bin:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}/postgres" --version)${pg_bin:+ ($pg_bin)}"
  echo "# hosts: etcd ${ip_of[etcd]}, n1 ${ip_of[n1]}, n2 ${ip_of[n2]}, n3 ${ip_of[n3]}, client (pgha proxy) ${ip_of[client]}; campaign on n1"
} | tee "$out/run.txt"
cmd=("$bin" chaos --config "$work/n1.toml" --rounds "$rounds" --faults "$faults" --seed "$seed"
     --writers "$writers" --fault-command "etcd-restart=$work/etcd-restart.sh"
     --fault-command "agent-kill=$work/agent-kill.sh" --fault-command "etcd-pause=$work/etcd-pause.sh"
     --fault-command "link-cut=$work/link-cut.sh" --fault-command "etcd-cut=$work/etcd-cut.sh"
     --fault-command "disk-stall=$work/disk-stall.sh" --fault-command "etcd-slow=$work/etcd-slow.sh"
     --fault-command "clock-jump=$work/clock-jump.sh" --fault-command "etcd-disk=$work/etcd-disk.sh"
     --json --report "$out/dist.html")
# beside a second nemesis whose faults last up to 15 s, the cluster may be unhealthy that
# long between the campaign's faults: that is no broken promise
[ "$overlap" = 1 ] && cmd+=(--recovery-bound 90s --settle 40s)
echo "== dist: ${cmd[*]}" | tee -a "$out/run.txt"
t0=$(date +%s)
: > "$out/dist.log"
if [ "$overlap" = 1 ]; then
  "$work/background.sh" &
  background_pid=$!
fi
set +e
on n1 "${cmd[@]}" > "$out/dist.json" 2> "$out/dist.log"
rc=$?
set -e
if [ -n "${background_pid:-}" ]; then
  touch "$work/background.stop"
  wait "$background_pid" || true
  background_pid=""
  cp "$work/background.log" "$out/background.log" 2>/dev/null || true
  echo "   background nemesis: $(grep -c ' for \|killed' "$out/background.log" 2>/dev/null || echo 0) faults beside the campaign's (background.log)" | tee -a "$out/run.txt"
fi
echo "$rc" > "$out/dist.rc"
echo "   exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$out/run.txt"
[ -f "$work/cuts.log" ] && cp "$work/cuts.log" "$out/cuts.log"
for f in "$work"/n?.agent.log "$work/proxy.log" "$work/etcd.log"; do
  gzip -9c "$f" > "$out/$(basename "$f").gz"
done
# each member's PostgreSQL log too: timelines, what a WAL receiver was refused, crash recovery
for n in n1 n2 n3; do
  [ -f "$work/$n/postgresql.log" ] && gzip -9c "$work/$n/postgresql.log" > "$out/$n.postgresql.log.gz"
done
[ -f "$out/dist.html" ] && gzip -9f "$out/dist.html"

python3 - "$out" <<'PY' | tee "$out/summary.md"
import json, sys
out = sys.argv[1]
s = json.load(open(f"{out}/dist.json"))
sec = lambda d: "-" if d["n"] == 0 else f'{d["median_ms"]/1000:.2f} / {d["p95_ms"]/1000:.2f} / {d["max_ms"]/1000:.2f}'
print("| fault | injected | recovered | write-unavailable s (median / p95 / max) | recovery s (median / p95 / max) | old member back s (median / p95 / max) | lost |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for k in s["by_kind"]:
    print(f'| {k["kind"]} | {k["injected"]} | {k["recovered"]} | {sec(k["unavailable"])} | {sec(k["recovery"])} | {sec(k["rejoin"])} | {k["lost"]} |')
print()
print(f'faults {len(s["faults"])}, {s["duration_s"]:.0f} s, writes acknowledged {s["writes_acknowledged"]}, lost {s["lost"]}, two-writer intervals {len(s["two_writers"])}, verdict {s["verdict"]}')
PY
