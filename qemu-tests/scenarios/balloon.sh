# balloon: our balloon (xenpvrs_balloon) in a PV guest of 256 MiB with maxmem 384 MiB, moved
# by the toolstack while a process in the guest holds a 32 MiB pattern and verifies it over
# and over. (The guest's initramfs, in tmpfs, is another 30 MiB nothing can reclaim: before
# the floor counted such memory, the OOM killer took this holder at 93 MiB, above the
# formula's 85 MiB floor.) dom0 runs `xl mem-set` 256 -> 160 -> 128 -> 256 -> 384 MiB (the
# last step grows the guest past its boot size, with the frames the module claimed from the
# kernel's built-in core); after each step `xl list`, the guest's MemTotal and Xen's free
# memory must all have moved by the step. Then a target below the floor stops at the floor
# while a second process holds 16 MiB more (a peak of memory use); when the peak ends the
# balloon follows the floor down with no new target; it stays there with sysfs stop_reason
# floor-reached, a floor above the formula's (the usage floor: what
# nothing can reclaim plus headroom), and the guest stays there 15 s with no OOM kill while
# its status loop forks every half second and the holder verifies; bad targets change nothing;
# 100 targets written straight into XenStore as fast as dom0 can end at the last one; the
# module unloads, populating back to its size at load first; loaded again with
# selfballooning=1 it gives back unused memory on its own, above the floor, and unloads clean.
# Also checked: control/feature-balloon, the sysfs files, no OOM kill, clean kernel logs.
TIMEOUT=300
SYS=/sys/devices/system/xen_memory/xen_memory0
HOLD_BYTES=33554432
PEAK_BYTES=16777216
# The last of the rapid targets (200 MiB), then one page more: the guest's cue to unload.
LAST_KB=204800
GO_KB=204804

# bstat_last: the guest's last "BSTAT ..." line.
bstat_last() { grep -a '^BSTAT ' "$(guest_log domu)" | tail -1 | tr -d '\r'; }

# wait_bstat SINCE PATTERN SECS: wait for a BSTAT line matching PATTERN (grep -E) after line
# SINCE of the guest's log.
wait_bstat() {
    _n=$3
    while [ "$_n" -gt 0 ]; do
        tail -n +"$(($1 + 1))" "$(guest_log domu)" | grep -aqE -- "^BSTAT .*$2" && return 0
        sleep 2
        _n=$((_n - 2))
    done
    return 1
}

log_lines() { grep -ac '' "$(guest_log domu)"; }

# xl_mem: the guest's memory in MiB as `xl list` shows it (Xen's tot_pages).
xl_mem() { xl list domu | awk 'NR == 2 { print $3 }'; }
# xen_free: Xen's free memory in MiB.
xen_free() { xl info | awk '$1 == "free_memory" { print $3 }'; }

# near NAME WANT GOT TOL: record a failure unless |WANT - GOT| <= TOL.
near() {
    _d=$(($2 - $3))
    [ "$_d" -lt 0 ] && _d=$((-_d))
    if [ -n "$3" ] && [ "$_d" -le "$4" ]; then
        log "CHECK $1 ok (want $2 got $3, tolerance $4)"
    else
        fail "$1: want $2 got '$3' (tolerance $4)"
    fi
}

# step MIB: xl mem-set; the guest settles at exactly MIB (target-reached); then
# - xl list says MIB (Xen's own count of the guest's pages; the engine tracks it page for
#   page from XENMEM_current_reservation at load, so no tolerance beyond xl's rounding to MiB,
#   which is exact here: every target is whole MiB);
# - the guest's MemTotal moved by exactly the same number of KiB (each page taken or freed
#   moves the kernel's managed count by one; nothing else changes it in this guest);
# - Xen's free memory moved the other way by the same MiB, within 2 MiB: `xl info` rounds
#   to MiB and Xen's own small allocations (dom0's xenstored and xl) come and go meanwhile.
step() {
    _want=$(($1 * 1024))
    _before=$(bstat_last)
    _cur0=$(kv "$_before" current_kb)
    _mt0=$(kv "$_before" memtotal_kb)
    _free0=$(xen_free)
    _since=$(log_lines)
    check "mem-set-$1" xl mem-set domu "${1}m" || return
    if ! wait_bstat "$_since" "target_kb=$_want current_kb=$_want .*stop=target-reached" 120; then
        fail "step $1: the guest did not settle at $_want KiB (last: $(bstat_last))"
        return 1
    fi
    _after=$(bstat_last)
    log "STEP $1 MiB: $_after"
    check_eq "step-$1-xl-list" "$1" "$(xl_mem)"
    near "step-$1-memtotal-delta" $((_want - _cur0)) $(($(kv "$_after" memtotal_kb) - _mt0)) 0
    near "step-$1-xen-free-delta" $(((_cur0 - _want) / 1024)) $(($(xen_free) - _free0)) 2
    check_eq "step-$1-holder" alive "$(kv "$_after" holder)"
}

dom0_main() {
    write_domu_cfg domu 256 "maxmem = 384"
    follow_guest domu
    # Paused first: like XAPI (and unlike Xen 4.17's libxl) make control/feature-balloon
    # writable for the guest before it runs, so the module can announce itself.
    check xl-create xl create -p /etc/xen/domu.cfg || return
    d=$(xl domid domu)
    check feature-node xenstore-write "/local/domain/$d/control/feature-balloon" ""
    check feature-node-perms xenstore-chmod "/local/domain/$d/control/feature-balloon" "n$d"
    check xl-unpause xl unpause domu
    wait_guest domu '^(BALLOON READY|DOMU-RESULT)' 180 "its balloon" || return
    grep -aq '^BALLOON READY' "$(guest_log domu)" || { domu_result domu 10; return; }
    d=$(xl domid domu)
    check_eq feature-balloon 1 "$(xenstore-read "/local/domain/$d/control/feature-balloon")"
    check_eq boot-size 256 "$(xl_mem)"
    for m in 160 128 256 384; do
        step "$m" || break
    done

    # Below the floor: stops there and says why. With the pattern and the initramfs held, the
    # floor is the usage floor, above the formula's (the module's load line gives the latter).
    # sysfs floor_kb is evaluated when read: it reads high while the per-CPU free lists are
    # full (their pages count as used) and the engine follows it down, 1 s later, once it
    # has fallen 8 MiB below the balloon. So at rest the median of its readings must not be
    # more than 8 MiB below where the balloon stopped: the balloon is not stranded above it.
    _formula=$(kv "$(grep -a '^BLOAD ' "$(guest_log domu)" | head -1 | tr -d '\r')" floor_formula_kb)
    [ -n "$_formula" ] || fail "no floor_formula_kb in the module's load line"
    # The guest holds 16 MiB more while it goes down (a peak of memory use), so the balloon
    # first stops 16 MiB above the floor; 5 s later the peak ends, and within the engine's
    # 1 s recheck the balloon goes on down to the floor with no new target.
    wait_guest domu '^PEAK UP' 30 "its peak of memory use" || return
    _since=$(log_lines)
    _floor_cur=
    check mem-set-48 xl mem-set domu 48m
    if wait_bstat "$_since" "target_kb=49152 .*stop=floor-reached" 120; then
        _l=$(bstat_last)
        log "FLOOR on the peak: $_l"
        _peak_cur=$(kv "$_l" current_kb)
        if wait_guest domu '^PEAK ENDED' 60 "the end of its peak"; then
            # From the PEAK ENDED line on: the status lines of the follow-down may already be
            # there (the guest prints one only when something changed).
            _since=$(grep -an '^PEAK ENDED' "$(guest_log domu)" | head -1 | cut -d: -f1)
            wait_bstat "$_since" "target_kb=49152 current_kb=[0-9]+ .*stop=floor-reached" 30 ||
                fail "no BSTAT at the floor after the peak (last: $(bstat_last))"
            # Settled: 8 MiB or more below the stop on the peak, and the same size 3 s apart.
            # It may take two steps: the peak's freed pages wait on the per-CPU lists (counted
            # as used) until the kernel drains them, a few seconds later.
            _n=0
            _prev=
            while [ $_n -lt 20 ]; do
                sleep 3
                _cur=$(kv "$(bstat_last)" current_kb)
                [ "$_cur" = "$_prev" ] && [ "$_cur" -le $((_peak_cur - 8192)) ] && break
                _prev=$_cur
                _n=$((_n + 1))
            done
        fi
        _l=$(bstat_last)
        log "FLOOR: $_l (formula floor ${_formula} KiB)"
        _floor_cur=$(kv "$_l" current_kb)
        check_eq floor-after-peak floor-reached "$(kv "$_l" stop)"
        # The peak was 16 MiB; at least 8 of them (the peak less the 8 MiB margin the resting
        # balloon may stay above the floor) must have been followed down.
        check floor-followed-down [ "$_floor_cur" -le $((_peak_cur - 8192)) ]
        _since=$(log_lines)
        check floor-above-formula [ "$_floor_cur" -gt "${_formula:-999999999}" ]
        near floor-xl-list $((_floor_cur / 1024)) "$(xl_mem)" 1
        # At the floor for 15 s: the guest keeps forking its status commands, the holder keeps
        # verifying; nothing is killed. The balloon never grows back and never goes below the
        # lowest floor read (it may follow the floor down as the per-CPU lists drain).
        sleep 15
        _l=$(bstat_last)
        log "FLOOR +15 s: $_l"
        check_eq floor-holder alive "$(kv "$_l" holder)"
        check_eq floor-no-oom 0 "$(kv "$_l" oom)"
        _rest=$(tail -n +"$((_since + 1))" "$(guest_log domu)" | grep -a '^BSTAT .*stop=floor-reached' | tr -d '\r')
        _fl=$(echo "$_rest" | sed -n 's/.* floor_kb=\([0-9]*\) .*/\1/p' | sort -n |
            awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)], v[1], v[NR], NR }')
        log "FLOOR floor_kb readings at rest: median min max count = $_fl"
        _cur=$(echo "$_rest" | sed -n 's/.* current_kb=\([0-9]*\) .*/\1/p' | uniq | tr '\n' ' ')
        log "FLOOR current_kb at rest, in order: $_cur"
        _up=$(echo "$_floor_cur $_cur" | tr ' ' '\n' |
            awk 'NF && p != "" && $1 > p { print "grew " p " -> " $1; exit } NF { p = $1 }')
        [ -z "$_up" ] || log "FLOOR at rest the balloon $_up"
        check floor-never-up [ -z "$_up" ]
        _fl_min=$(echo "$_fl" | awk '{ print $2 }')
        check floor-not-below [ "$(kv "$_l" current_kb)" -ge "${_fl_min:-999999999}" ]
        check floor-not-stranded [ "${_fl%% *}" -ge $(($(kv "$_l" current_kb) - 8192)) ]
        _floor_cur=$(kv "$_l" current_kb)
        check floor-meminfo grep -aq '^FLOORMEM ' "$(guest_log domu)"
        log "$(grep -a '^FLOORMEM ' "$(guest_log domu)" | head -1 | tr -d '\r')"
    else
        fail "target below the floor: no floor-reached (last: $(bstat_last))"
    fi

    # Bad targets: one log line (the engine rate-limits them), no action.
    _since=$(log_lines)
    for v in 12x -5 123456789012345678901 ""; do
        xenstore-write -- "/local/domain/$d/memory/target" "$v" || fail "bad write '$v'"
    done
    sleep 3
    _l=$(bstat_last)
    # Not taken: the target stays, and the balloon did not grow toward any of them (it may
    # still follow the floor down meanwhile).
    check_eq bad-target-ignored 49152 "$(kv "$_l" target_kb)"
    check bad-target-no-growth [ "$(kv "$_l" current_kb)" -le "${_floor_cur:-0}" ]
    check bad-target-logged sh -c "tail -n +$((_since + 1)) $(guest_log domu) | grep -aq 'memory/target refused (not-decimal)'"

    # xl mem-set capped Xen's max_pages at the target; lift it so the guest may grow again.
    check mem-max xl mem-max domu 384m
    # 100 targets as fast as dom0 writes them, between 120 and 340 MiB, the last 200 MiB.
    _since=$(log_lines)
    i=1
    while [ $i -lt 100 ]; do
        xenstore-write "/local/domain/$d/memory/target" $(((120 + (i * 37) % 221) * 1024 + 4 * (i % 3))) ||
            fail "rapid write $i"
        i=$((i + 1))
    done
    check rapid-last xenstore-write "/local/domain/$d/memory/target" "$LAST_KB"
    if wait_bstat "$_since" "target_kb=$LAST_KB current_kb=$LAST_KB .*stop=target-reached" 120; then
        log "RAPID: $(bstat_last)"
        check_eq rapid-xl-list 200 "$(xl_mem)"
    else
        fail "rapid targets: the guest did not end at the last one (last: $(bstat_last))"
    fi
    # One page more: the guest's cue to stop its holder and unload the module.
    check go xenstore-write "/local/domain/$d/memory/target" "$GO_KB"
    # The unload populated the guest back to its size at load (256 MiB); the guest waits for
    # these checks before it ends.
    if wait_guest domu '^(BALLOON UNLOADED|DOMU-RESULT)' 120 "its unload"; then
        check_eq unload-xl-list 256 "$(xl_mem)"
        check_eq feature-balloon-off 0 "$(xenstore-read "/local/domain/$d/control/feature-balloon")"
    fi
    domu_result domu 60
}

# status: one BSTAT line from sysfs, /proc/meminfo and the kernel log (oom: lines of the
# OOM killer so far).
status() {
    _t=$(cat $SYS/target_kb)
    _c=$(cat $SYS/info/current_kb)
    _mt=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
    _h=dead
    kill -0 "$HOLDER" 2>/dev/null && _h=alive
    _oom=$(dmesg | grep -ciE 'out of memory|oom-kill|invoked oom-killer')
    echo "target_kb=$_t current_kb=$_c memtotal_kb=$_mt floor_kb=$(cat $SYS/floor_kb) stop=$(cat $SYS/stop_reason) holder=$_h low_kb=$(cat $SYS/info/low_kb) oom=$_oom"
}

# floormem: the figures behind the usage floor, from /proc (KiB).
floormem() {
    awk '$1 ~ /^(MemTotal|MemFree|MemAvailable|Active\(anon\)|Inactive\(anon\)|Active\(file\)|Inactive\(file\)|Unevictable|Shmem|AnonPages|SReclaimable|SUnreclaim|KernelStack|PageTables|Percpu|VmallocUsed|SwapFree):$/ { printf "%s%s ", $1, $2 }' /proc/meminfo
    echo "min_free_kbytes=$(cat /proc/sys/vm/min_free_kbytes)"
}

domu_main() {
    check modprobe-balloon modprobe xenpvrs_balloon || return
    echo "BLOAD $(dmesg | grep 'XENPVRS-BALLOON loaded' | tail -1)"
    for f in target_kb target schedule_delay max_schedule_delay retry_count max_retry_count \
        scrub_pages floor_kb ceiling_kb stop_reason info/current_kb info/low_kb info/high_kb; do
        [ -f "$SYS/$f" ] || fail "no sysfs $f"
    done
    check_eq ceiling-kb 393216 "$(cat $SYS/ceiling_kb)"
    check_eq scrub-pages 1 "$(cat $SYS/scrub_pages)"
    rm -f /tmp/stop
    xpattern hold $HOLD_BYTES 7 /tmp/stop 2> /tmp/hold.log &
    HOLDER=$!
    sleep 3
    kill -0 "$HOLDER" || fail "the pattern holder died at start: $(cat /tmp/hold.log)"
    last=
    n=0
    floormem_done=
    peak=
    peak_end=
    while [ $n -lt 400 ]; do
        s=$(status)
        [ "$s" != "$last" ] && echo "BSTAT $s"
        # The last growth step reached (384 MiB): a second holder makes a 16 MiB peak of
        # memory use for the descent to the floor; it ends 5 s (10 rounds) after the stop.
        if [ -z "$peak" ] && [ "$(kv "$s" target_kb)" = 393216 ] &&
            [ "$(kv "$s" stop)" = target-reached ]; then
            rm -f /tmp/stop-peak
            xpattern hold $PEAK_BYTES 11 /tmp/stop-peak 2> /tmp/peak.log &
            PEAK=$!
            peak=up
            sleep 2
            kill -0 "$PEAK" || fail "the peak holder died at start: $(cat /tmp/peak.log)"
            echo "PEAK UP"
        fi
        if [ "$peak" = up ] && [ "$(kv "$s" stop)" = floor-reached ]; then
            peak_end=$((n + 10))
            peak=stopping
        fi
        if [ "$peak" = stopping ] && [ $n -ge "$peak_end" ]; then
            touch /tmp/stop-peak
            check peak-held wait "$PEAK"
            log "peak holder: $(cat /tmp/peak.log)"
            echo "PEAK ENDED"
            peak=done
        fi
        # The figures behind the floor, 10 s after the peak ended (the balloon has followed).
        if [ -z "$floormem_done" ] && [ "$peak" = done ] && [ $n -ge $((peak_end + 20)) ] &&
            [ "$(kv "$s" stop)" = floor-reached ]; then
            echo "FLOORMEM $(floormem)"
            floormem_done=1
        fi
        [ -z "$last" ] && echo "BALLOON READY"
        last=$s
        [ "$(kv "$s" target_kb)" = "$GO_KB" ] && break
        sleep 0.5
        n=$((n + 1))
    done
    [ $n -lt 400 ] || fail "no unload cue from dom0"
    touch /tmp/stop
    check pattern-held wait "$HOLDER"
    log "holder: $(cat /tmp/hold.log)"
    mt0=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
    check rmmod-balloon rmmod xenpvrs_balloon
    line=$(dmesg | grep 'XENPVRS-BALLOON unload' | tail -1)
    log "$line"
    check_eq unload-clean 1 "$(kv "$line" clean)"
    check_eq unload-back-to-load "$(kv "$line" load_kb)" "$(kv "$line" current_kb)"
    mt1=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
    check_eq unload-memtotal "$(kv "$line" populated_kb)" $((mt1 - mt0))

    # Self-ballooning (module parameter, off by default): loaded again with it on, the balloon
    # first heads for the toolstack's target (the cue, 200 MiB), then keeps giving back what
    # the guest does not use, an eighth of the way every 5 s, never below the floor.
    check modprobe-self modprobe xenpvrs_balloon selfballooning=1 || return
    n=60
    while [ "$(cat $SYS/info/current_kb)" -ge $((LAST_KB - 16384)) ] && [ $n -gt 0 ]; do
        sleep 1
        n=$((n - 1))
    done
    echo "BSTAT $(status)"
    cur=$(cat $SYS/info/current_kb)
    check self-balloon-shrank [ "$cur" -lt $((LAST_KB - 16384)) ]
    check self-balloon-above-floor [ "$cur" -ge "$(cat $SYS/floor_kb)" ]
    check rmmod-self rmmod xenpvrs_balloon
    line=$(dmesg | grep 'XENPVRS-BALLOON unload' | tail -1)
    log "$line"
    check_eq self-unload-clean 1 "$(kv "$line" clean)"
    check_eq self-unload-back-to-load "$(kv "$line" load_kb)" "$(kv "$line" current_kb)"

    check no-oom sh -c '! dmesg | grep -qiE "out of memory|oom-kill|invoked oom-killer"'
    # dom0 reads xl list while the guest is still there.
    echo "BALLOON UNLOADED"
    sleep 20
}
