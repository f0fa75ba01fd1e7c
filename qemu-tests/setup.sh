#!/bin/sh
# Install what the kernel build, the images and the QEMU scenarios need, from Debian's archive
# and crates.io. Idempotent: a package or tool that is already present is left alone.
set -eu

say() { echo "setup: $*"; }

PKGS="linux-source-6.12 rustc-web rust-web-src clang libclang-dev lld llvm \
flex bison bc libelf-dev libssl-dev cpio xz-utils kmod patch \
xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils libxen-dev \
qemu-system-x86 busybox-static fio e2fsprogs iproute2 iperf3 ethtool valgrind"

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (it installs Debian packages)" >&2
    exit 1
fi

# QEMU comes from bookworm-backports (10.0), like the machine's qemu-utils; bookworm's 7.2
# would fight over the shared qemu data packages.
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = bookworm ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding the bookworm-backports suite"
    cat > /etc/apt/sources.list.d/xen-pv-rs-backports.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq
fi

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing Debian packages:$missing"
    [ -n "${XEN_PV_RS_NO_APT_UPDATE:-}" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-x86 >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
else
    say "Debian packages: all present"
fi

# The kernel's minimum bindgen is 0.65.1; Debian ships 0.60.
BINDGEN="${CARGO_HOME:-$HOME/.cargo}/bin/bindgen"
if [ -x "$BINDGEN" ] && "$BINDGEN" --version | grep -q '0.69.5'; then
    say "bindgen-cli 0.69.5: present"
else
    say "installing bindgen-cli 0.69.5 from crates.io"
    cargo install --locked bindgen-cli --version 0.69.5
fi
say "done"
