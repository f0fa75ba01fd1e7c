# xenstore-interop: our XenStore client (xen_core::xs::Client over its Unix-socket transport) run
# by the xs-interop binary against Debian's C xenstored in dom0: every request type the drivers
# use, typed errors, transactions with a real conflict, watches. What it leaves in the store is
# read back with the C tools. No guest.
TIMEOUT=300

# interop_values TAG: the "path value" pairs xs-interop printed on its TAG lines.
interop_values() { sed -n "s/^$1 //p" /tmp/xs-interop.out; }

dom0_main() {
    check xs-interop-binary test -x /usr/bin/xs-interop || return
    xs-interop /run/xenstored/socket > /tmp/xs-interop.out 2>&1
    rc=$?
    cat /tmp/xs-interop.out
    check_eq xs-interop-exit 0 "$rc"
    check_eq xs-interop-result PASS "$(interop_values XS-INTEROP-RESULT)"
    # Every step printed "ok"; a step that never ran is as bad as one that failed.
    for step in connect cleanup write-read empty-value largest-value oversized-refused \
        missing-enoent mkdir-directory rm perms domain-path transaction-commit \
        transaction-conflict watch directory-part watch-relative-special watch-overflow \
        reset-watches domain-introduced binary-value path-limits mkdir-parents transaction-ops \
        watch-long-path owner-must-exist errors stray-reply bad-client-dropped; do
        check_eq "xs-interop-$step" ok "$(interop_values XS-INTEROP | sed -n "s/^$step //p")"
    done
    [ "$(grep -c '^XS-INTEROP-VALUE ' /tmp/xs-interop.out)" -ge 4 ] || fail "xs-interop printed no values"

    # Cross-check with the C tools what the client wrote.
    interop_values XS-INTEROP-VALUE | sort -u -k1,1 > /tmp/xs-values
    while read -r p v; do
        check_eq "c-read $p" "$v" "$(xenstore-read "$p")"
    done < /tmp/xs-values
    check_eq c-read-empty "''" "'$(xenstore-read /xs-interop/empty)'"
    big_len=$(interop_values XS-INTEROP-LENGTH | cut -d' ' -f2)
    check_eq c-read-big-length "$big_len" "$(xenstore-read /xs-interop/big | tr -d '\n' | wc -c)"
    check_eq c-read-big-head abcdefghijklmnopqrstuvwxyzabc "$(xenstore-read /xs-interop/big | cut -c1-29)"
    check_eq c-perms "n0" "$(xenstore-ls -p /xs-interop | sed -n 's/^empty = "".*(\(.*\))$/\1/p')"
    check_eq c-perms-set "r0,b5" "$(xenstore-ls -p /xs-interop | sed -n 's/^perm = "p".*(\(.*\))$/\1/p')"
    check_eq c-list-many "$(interop_values XS-INTEROP-COUNT | cut -d' ' -f2)" \
        "$(xenstore-list /xs-interop/many | wc -l)"
    check_eq c-perms-tx "r0,w3" "$(xenstore-ls -p /xs-interop/txo | sed -n 's/^v = "tv".*(\(.*\))$/\1/p')"
    check c-missing-gone sh -c '! xenstore-read /xs-interop/missing 2>/dev/null'
    check c-too-big-never-written sh -c '! xenstore-exists /xs-interop/too-big 2>/dev/null'
    check c-dir-removed sh -c '! xenstore-exists /xs-interop/dir 2>/dev/null'
    check_eq c-unwatched-write-landed w "$(xenstore-read /xs-interop/w/c3)"
    xenstore-ls -p /xs-interop
    check xenstored-alive test -S /run/xenstored/socket
    check xenstored-running kill -0 "$(cat /run/xenstored.pid)"
}

domu_main() { :; }
