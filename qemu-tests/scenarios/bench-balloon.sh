# bench-balloon (run by `cargo xtask bench balloon`, which reads its BENCH lines): in one boot
# and one guest of 768 MiB, Linux's C balloon core (driven by xenpvrs_cballoon_peer: one
# balloon_set_new_target per target, as Linux's xen-balloon.c does) and ours (xenpvrs_balloon,
# target through sysfs target_kb) each give 512 MiB back to Xen and take it again, ROUNDS
# rounds each in alternating order (C R, R C, ...). Each move is timed in the guest from the
# write of the target to the moment the balloon's own count reads it (polled every 20 ms with
# the shell's builtin read: no process per poll). Scrubbing is off for both: Linux's default
# follows CONFIG_XEN_SCRUB_PAGES_DEFAULT, which our config leaves off (XEN_BALLOON is off), so
# ours runs with scrub_pages=0 to do the same work.
BENCHMARK=1
TIMEOUT=600
ROUNDS=5
MOVE_KB=524288
SYS=/sys/devices/system/xen_memory/xen_memory0
PEER=/sys/module/xenpvrs_cballoon_peer/parameters

dom0_main() {
    write_domu_cfg domu 768 "maxmem = 768"
    follow_guest domu
    check xl-create xl create /etc/xen/domu.cfg || return
    domu_result domu 540
}

# ms_now: this kernel's uptime in ms (10 ms resolution).
ms_now() {
    read -r _u _i < /proc/uptime
    _c=${_u#*.}
    echo $((${_u%.*} * 1000 + ${_c#0} * 10))
}

# wait_value FILE WANT SECS: until FILE reads WANT (about SECS: each poll sleeps 20 ms).
wait_value() {
    _n=$(($3 * 50))
    while [ "$_n" -gt 0 ]; do
        read -r _v < "$1"
        [ "$_v" = "$2" ] && return 0
        sleep 0.02
        _n=$((_n - 1))
    done
    return 1
}

# move IMPL ROUND DIR TARGET_FILE CURRENT_FILE WANT_KB MODULE: one timed move; a BENCH line.
move() {
    _t0=$(ms_now)
    echo "$6" > "$4"
    if ! wait_value "$5" "$6" 120; then
        fail "$1 round $2 $3: stuck at $(cat "$5") KiB, want $6"
        return 1
    fi
    _t1=$(ms_now)
    echo "BENCH balloon impl=$1 round=$2 dir=$3 kib=$MOVE_KB ms=$((_t1 - _t0)) module=$7"
}

run_c() {
    check "c-load-$1" modprobe xenpvrs_cballoon_peer || return
    grep -q '^xenpvrs_balloon ' /proc/modules && fail "round $1: ours is loaded during a C run"
    read -r base < $PEER/current_kb
    move c "$1" down $PEER/target_kb $PEER/current_kb $((base - MOVE_KB)) xenpvrs_cballoon_peer &&
        move c "$1" up $PEER/target_kb $PEER/current_kb "$base" xenpvrs_cballoon_peer
    check "c-unload-$1" rmmod xenpvrs_cballoon_peer
}

run_rust() {
    check "rust-load-$1" modprobe xenpvrs_balloon scrub_pages=0 || return
    grep -q '^xenpvrs_cballoon_peer ' /proc/modules && fail "round $1: the C peer is loaded during a Rust run"
    # The first watch event (the toolstack's 768 MiB target) settles first.
    wait_value $SYS/stop_reason target-reached 30 || fail "round $1: ours did not settle at load"
    check_eq "rust-scrub-$1" 0 "$(cat $SYS/scrub_pages)"
    read -r base < $SYS/info/current_kb
    move rust "$1" down $SYS/target_kb $SYS/info/current_kb $((base - MOVE_KB)) xenpvrs_balloon &&
        move rust "$1" up $SYS/target_kb $SYS/info/current_kb "$base" xenpvrs_balloon
    check "rust-unload-$1" rmmod xenpvrs_balloon
}

domu_main() {
    r=1
    while [ $r -le $ROUNDS ]; do
        if [ $((r % 2)) -eq 1 ]; then
            run_c $r
            run_rust $r
        else
            run_rust $r
            run_c $r
        fi
        r=$((r + 1))
    done
    check no-oom sh -c '! dmesg | grep -qiE "out of memory|oom-kill|invoked oom-killer"'
}
