# Test helpers shared by the dom0 and domU init scripts and the scenarios (sourced, busybox sh).
# A check records its failure in $FAILED and the scenario goes on, so one run reports them all.
# shellcheck shell=sh

FAILED=""
CONSOLE_DIR=/var/log/xen/console

log() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }

# fail REASON: record a failed check.
fail() {
    FAILED="${FAILED:+$FAILED; }$*"
    log "CHECK FAIL: $*"
}

# check NAME CMD...: run CMD; record "NAME (exit N)" if it fails. Returns CMD's status.
check() {
    _name=$1
    shift
    if "$@"; then
        log "CHECK $_name ok"
        return 0
    else
        _rc=$?
        fail "$_name (exit $_rc)"
        return "$_rc"
    fi
}

# check_eq NAME WANT GOT: record a failure unless the two strings are equal and non-empty.
check_eq() {
    if [ -n "$2" ] && [ "$2" = "$3" ]; then
        log "CHECK $1 ok ($2)"
    else
        fail "$1: want '$2' got '$3'"
    fi
}

# wait_for FILE PATTERN SECS: wait until FILE has a line matching PATTERN (grep -E).
wait_for() {
    _n=$3
    while [ "$_n" -gt 0 ]; do
        grep -aqE -- "$2" "$1" 2>/dev/null && return 0
        sleep 1
        _n=$((_n - 1))
    done
    return 1
}

# kernel_warnings FILE: the lines of a kernel log (or a console log holding one) that fail a
# run: warnings, oopses, BUGs (soft lockups are "BUG: soft lockup"), panics, hung tasks and RCU
# stalls, and call traces. A call trace after "sysrq: Show ..." belongs to a dump the harness
# asked for (blocked tasks, CPU backtraces); the dumps of real problems have their own header
# line above, which is still caught.
kernel_warnings() {
    awk '
        /sysrq: Show / { dump = 1 }
        /WARNING:|BUG:|Oops|Kernel panic|INFO: task .* blocked for more than|detected stalls? on CPU|self-detected stall/ { print; next }
        /Call Trace/ && !dump { print }' "$1" | head -5
}

# kernel_log_clean: the kernel log has no warning, oops, BUG, hang or stall report. Fails too
# when dmesg fails or prints nothing: an unread log is not a clean one.
kernel_log_clean() {
    dmesg > /tmp/kernel-log-check || { log "dmesg failed"; return 1; }
    [ -s /tmp/kernel-log-check ] || { log "dmesg printed nothing"; return 1; }
    _w=$(kernel_warnings /tmp/kernel-log-check)
    [ -z "$_w" ] && return 0
    echo "$_w"
    return 1
}

# sleep_until_uptime SECS: return once this kernel has been up SECS seconds (checked every 5 s).
sleep_until_uptime() {
    while :; do
        sleep 5
        read -r _up _idle < /proc/uptime
        [ "${_up%%.*}" -ge "$1" ] && return
    done
}

# debugfs_counters: every counter our modules publish in debugfs, one "dir/name=value" a line.
debugfs_counters() {
    _none=1
    for _c in /sys/kernel/debug/xenpvrs-*/*; do
        [ -f "$_c" ] || continue
        _d=${_c%/*}
        echo "${_d##*/}/${_c##*/}=$(cat "$_c")"
        _none=
    done
    [ -z "$_none" ] || echo "(no xenpvrs debugfs counters: none of our devices is up)"
}

# hotplug_agent_on: from now on the kernel runs /sbin/xen-pv-rs-hotplug for each uevent, which
# loads drivers by modalias (a scenario asks for it with AUTOLOAD=1); devices that are already
# there are announced again ("coldplug"), as udev does at boot.
hotplug_agent_on() {
    echo /sbin/xen-pv-rs-hotplug > /proc/sys/kernel/hotplug || return
    for _u in /sys/bus/xen/devices/*/uevent /sys/bus/xen-backend/devices/*/uevent; do
        [ -f "$_u" ] && echo add > "$_u"
    done
    log "hotplug agent on"
}

# bound_driver BUS DEVICE: the name of the driver bound to a XenBus device, or "none".
bound_driver() {
    _l=$(readlink "/sys/bus/$1/devices/$2/driver" 2>/dev/null)
    echo "${_l##*/}" | sed 's/^$/none/'
}

# cmdline_value KEY: the value of KEY=value on the kernel command line.
# Shell builtins only: no helper process that could fail.
cmdline_value() {
    _v=
    read -r _cmdline < /proc/cmdline
    for _w in $_cmdline; do
        case "$_w" in "$1="*) _v=${_w#*=} ;; esac
    done
    echo "$_v"
}

# cmdline_seed: the numeric xenpvrs.seed dom0 put on the guest's command line, in $SEED;
# records a failure (and returns 1) if there is none.
cmdline_seed() {
    SEED=$(cmdline_value xenpvrs.seed)
    case "$SEED" in
    "" | *[!0-9]*) fail "no numeric xenpvrs.seed on the command line: $(cat /proc/cmdline)"; return 1 ;;
    esac
}

# scenario_name: the scenario this boot runs, from the kernel command line.
scenario_name() { sed -n 's/.*xenpvrs\.scenario=\([^ ]*\).*/\1/p' /proc/cmdline; }

# kv LINE KEY: the value of KEY=value in LINE (shell expansion only: few processes, see below).
kv() {
    case " $1" in
    *" $2="*) _v=${1##*"$2="}; echo "${_v%% *}" ;;
    esac
}

# kscan TAG WHAT: over the kernel log, KN = how many lines hold "TAG WHAT", KLAST = the last one
# from WHAT on.
kscan() {
    KN=0
    KLAST=
    dmesg > /tmp/kmsg || return
    while IFS= read -r _l; do
        case "$_l" in
        *"$1 $2"*) KN=$((KN + 1)); KLAST=${_l#*"$1 "} ;;
        esac
    done < /tmp/kmsg
}

# kwait TAG WHAT N SECS: wait until there are at least N such lines (KLAST is the last).
kwait() {
    _n=$4
    kscan "$1" "$2"
    while [ "$KN" -lt "$3" ] && [ "$_n" -gt 0 ]; do
        sleep 2
        _n=$((_n - 2))
        kscan "$1" "$2"
    done
    [ "$KN" -ge "$3" ]
}

# --- dom0 side ---------------------------------------------------------------------------------

# write_domu_cfg NAME MEMORY_MB EXTRA_CFG_LINES: a PV guest running this scenario's domu_main;
# $DOMU_CMDLINE is appended to its kernel command line (read it back with cmdline_value).
write_domu_cfg() {
    cat > "/etc/xen/$1.cfg" <<CFG
name = "$1"
type = "pv"
kernel = "/boot/bzImage"
ramdisk = "/boot/domu.cpio.gz"
extra = "console=hvc0 xenpvrs.scenario=$(scenario_name) xenpvrs.domu=$1 ${DOMU_CMDLINE:-}"
memory = $2
vcpus = 1
on_poweroff = "destroy"
$3
CFG
}

# xl_attach DOMAIN VDEV SPEC...: xl block-attach DOMAIN SPEC... (VDEV is the virtual-device
# number, e.g. 51728 for xvdb).
xl_attach() {
    _dom=$1
    shift 2
    xl block-attach "$_dom" "$@"
}

# xl_detach DOMAIN VDEV: xl block-detach; done once its frontend directory is gone from XenStore
# too (an attach of the same disk while the old frontend keys are still there lets the new
# backend read the old state and ring references).
xl_detach() {
    _fe=/local/domain/$(xl domid "$1")/device/vbd/$2
    xl block-detach "$1" "$2" || return
    _n=30
    while xenstore-exists "$_fe" 2>/dev/null && [ $_n -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    ! xenstore-exists "$_fe" 2>/dev/null
}

# wait_guest NAME REGEX SECS WHAT: waits for REGEX in the guest's console log; if it does not
# come within SECS, fails with "the guest did not get to WHAT" and dumps the guest's tasks.
wait_guest() {
    wait_for "$(guest_log "$1")" "$2" "$3" && return 0
    fail "the guest did not get to $4"
    guest_dump "$1"
    return 1
}

# guest_log NAME: path of the guest's console log in dom0.
guest_log() { echo "$CONSOLE_DIR/guest-$1.log"; }

# follow_guest NAME: copy the guest's console to ours as it comes, each line tagged with NAME.
follow_guest() {
    _log=$(guest_log "$1")
    touch "$_log"
    tail -n +1 -f "$_log" 2>/dev/null | while IFS= read -r _l; do echo "{$1} $_l"; done &
}

# guest_dump NAME: ask a stuck guest's kernel for its blocked tasks and CPU backtraces (magic
# SysRq through Xen); they land in the guest's console log, which the scenario's log follows.
guest_dump() {
    log "dumping the state of guest $1"
    xl sysrq "$1" w
    xl sysrq "$1" l
    sleep 5
}

# domu_result NAME SECS: wait for the guest's verdict line and fold it into ours.
domu_result() {
    _log=$(guest_log "$1")
    if ! wait_for "$_log" '^DOMU-RESULT ' "$2"; then
        fail "$1: no result from the guest within $2 s"
        guest_dump "$1"
        return 1
    fi
    _line=$(grep -a '^DOMU-RESULT ' "$_log" | tail -1 | tr -d '\r')
    case "$_line" in
    "DOMU-RESULT PASS") log "CHECK $1 result ok" ;;
    *) fail "$1: ${_line#DOMU-RESULT }" ;;
    esac
}

# guest_value NAME KEY: the value the guest printed on a "KEY value" line.
guest_value() {
    grep -a "^$2 " "$(guest_log "$1")" | tail -1 | tr -d '\r' | cut -d' ' -f2
}

# --- domU side ---------------------------------------------------------------------------------

# wait_for_dev PATH SECS: wait for a device node to appear.
wait_for_dev() {
    _n=$2
    while [ ! -e "$1" ] && [ "$_n" -gt 0 ]; do sleep 1; _n=$((_n - 1)); done
    [ -e "$1" ]
}

# unload_blkfront (domU): unbind every disk from our blkfront (the XenBus core holds the module
# while a device is bound), unload it, and check its unload line says every grant, ring,
# channel and watch was given back.
# unload_netfront (domU): unbind every vif from our netfront, unload it, and check its unload
# report (no grant, ring or channel left).
unload_netfront() {
    for _v in /sys/bus/xen/drivers/xenpvrs-netfront/vif-*; do
        [ -e "$_v" ] || continue
        echo "${_v##*/}" > /sys/bus/xen/drivers/xenpvrs-netfront/unbind || fail "unbind ${_v##*/}"
    done
    check rmmod-netfront rmmod xenpvrs_netfront
    kscan XENPVRS-NETFRONT unload
    log "unload: $KLAST"
    check_eq netfront-unload-clean 1 "$(kv "$KLAST" clean)"
}

unload_blkfront() {
    for _v in /sys/bus/xen/drivers/xenpvrs-blkfront/vbd-*; do
        [ -e "$_v" ] || continue
        echo "${_v##*/}" > /sys/bus/xen/drivers/xenpvrs-blkfront/unbind || fail "unbind ${_v##*/}"
    done
    check rmmod-blkfront rmmod xenpvrs_blkfront
    kscan XENPVRS-BLKFRONT unload
    log "unload: $KLAST"
    check_eq blkfront-unload-clean 1 "$(kv "$KLAST" clean)"
}

# --- tools disk -----------------------------------------------------------------------------------
# fio and its libraries weigh ~80 MB: too much for a guest's initramfs. dom0 has them, so it
# builds an ext4 image holding the tools, every library they load and the loader, and gives it to
# the guest as one more (read-only) disk; the guest mounts it and runs each tool through that
# loader.

# make_tools_disk IMG [BIN...] (dom0): build the tools image with BIN... (default: fio).
make_tools_disk() {
    _img=$1
    shift
    [ $# -gt 0 ] || set -- /usr/bin/fio
    _t=/data/tools
    rm -rf "$_t" && mkdir -p "$_t/lib" || return
    cp -L /lib64/ld-linux-x86-64.so.2 "$_t/ld.so" || return
    for _bin in "$@"; do
        cp "$_bin" "$_t/${_bin##*/}" || return
        /lib64/ld-linux-x86-64.so.2 --list "$_bin" > /tmp/tools.libs || return
        while read -r _a _b _c _d; do
            case "$_c" in /*) cp -L "$_c" "$_t/lib/" || return ;; esac
        done < /tmp/tools.libs
    done
    # Checksums of every file, checked by use_tools in the guest: tools read back wrong through
    # a block driver fail as a data error, not as a mysterious crash of the tool.
    (cd "$_t" && find . -type f | sort | xargs md5sum > SUMS) || return
    rm -f "$_img" && truncate -s 160M "$_img" && /sbin/mke2fs -q -t ext4 -d "$_t" "$_img" && rm -rf "$_t"
}

# use_tools DEV (domU): mount the tools disk and check every file against its checksum (the
# tools are read through the block drivers under test); fio is then a function.
use_tools() {
    mkdir -p /tools && mount -t ext4 -o ro "$1" /tools || return
    check tools-intact sh -c 'cd /tools && md5sum -c SUMS > /dev/null'
}
# TOOLS: where the tools are (a copy in memory lets a scenario detach the tools disk).
fio() { "${TOOLS:-/tools}/ld.so" --library-path "${TOOLS:-/tools}/lib" "${TOOLS:-/tools}/fio" "$@"; }
iperf3() { "${TOOLS:-/tools}/ld.so" --library-path "${TOOLS:-/tools}/lib" "${TOOLS:-/tools}/iperf3" "$@"; }
