// SPDX-License-Identifier: GPL-2.0

//! Network devices: an Ethernet `net_device` with several queues served by safe Rust.
//!
//! Linux 6.12 has no Rust `net_device`. This module is our layer over the C interfaces, shaped
//! like `kernel::block::mq`:
//!
//! - [`NetDevice`] owns a `net_device` (allocated with one NAPI context per queue, registered
//!   on [`NetDevice::register`]) and a reference to the driver's object, which every callback
//!   is given back. Dropping it unregisters the device (which stops it: `ndo_stop` runs),
//!   deletes the NAPI contexts and frees it, then drops the reference.
//! - [`Operations`] is the driver: `ndo_open`, `ndo_stop`, `ndo_start_xmit`,
//!   `ndo_get_stats64`, `ndo_change_mtu`, `ndo_fix_features`, the NAPI poll, and ethtool's
//!   `-S` statistics. Link state comes from the carrier; `ethtool -i` shows the driver name
//!   and bus of [`NetParams`].
//! - [`NetRef`] is a borrowed view of a live device for what drivers do to it: carrier, TX
//!   queue stop and wake, NAPI scheduling, features and MTU; [`Napi`] is a queue's NAPI
//!   context during its poll (received packets, GRO, completion); a [`NapiScheduler`] lets an
//!   interrupt handler schedule polls. The C half enables every NAPI context before `ndo_open`
//!   and disables them after `ndo_stop`.
//! - [`TxSkb`] is a packet to send, owned by the driver until it consumes it; [`RxSkb`] is a
//!   packet being received, built from copied head bytes and whole pages, delivered through
//!   GRO.
//!
//! Feature bits cross the boundary as [`Features`], our own bits, so the Rust side does not
//! depend on the kernel's `netdev_features_t` layout. The C half is in `linux/helpers.c`
//! (declared in `linux/net_helpers.h`; the externs below mirror it).

use crate::page::GivePage;
use core::marker::PhantomData;
use core::ptr::NonNull;
use kernel::bindings;
use kernel::ffi::{c_char, c_int, c_void};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::ForeignOwnable;

/// `struct xpvrs_net_stats` (net_helpers.h): the counters of `ndo_get_stats64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Received packets with errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets whose transmission failed.
    pub tx_errors: u64,
    /// Packets dropped before transmission.
    pub tx_dropped: u64,
}

/// Offload features a driver decides (`enum xpvrs_net_feature`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features(pub u32);

impl Features {
    /// Scatter-gather (`NETIF_F_SG`).
    pub const SG: Features = Features(1 << 0);
    /// IPv4 TCP/UDP checksum offload (`NETIF_F_IP_CSUM`).
    pub const IP_CSUM: Features = Features(1 << 1);
    /// IPv6 TCP/UDP checksum offload (`NETIF_F_IPV6_CSUM`).
    pub const IPV6_CSUM: Features = Features(1 << 2);
    /// TCP segmentation offload over IPv4 (`NETIF_F_TSO`).
    pub const TSO: Features = Features(1 << 3);
    /// TCP segmentation offload over IPv6 (`NETIF_F_TSO6`).
    pub const TSO6: Features = Features(1 << 4);
    /// Receive checksum offload (`NETIF_F_RXCSUM`).
    pub const RXCSUM: Features = Features(1 << 5);
    /// No feature.
    pub const NONE: Features = Features(0);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` without the bits of `other`.
    pub fn without(self, other: Features) -> Features {
        Features(self.0 & !other.0)
    }

    /// The bits of `self` and `other`.
    pub fn with(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }
}

#[repr(C)]
struct RawOps {
    open: unsafe extern "C" fn(*const c_void, *mut c_void) -> c_int,
    stop: unsafe extern "C" fn(*const c_void, *mut c_void) -> c_int,
    xmit: unsafe extern "C" fn(*const c_void, *mut c_void, *mut c_void, u16) -> c_int,
    poll: unsafe extern "C" fn(*const c_void, *mut c_void, u16, c_int) -> c_int,
    stats: unsafe extern "C" fn(*const c_void, *mut NetStats),
    change_mtu: unsafe extern "C" fn(*const c_void, *mut c_void, u32) -> c_int,
    fix_features: unsafe extern "C" fn(*const c_void, u32) -> u32,
    ethtool_stats: unsafe extern "C" fn(*const c_void, *mut u64, u32),
    select_queue: unsafe extern "C" fn(*const c_void, u32, u16) -> u16,
    set_features: unsafe extern "C" fn(*const c_void, *mut c_void, u32) -> c_int,
}

/// `struct xpvrs_net_params` (net_helpers.h).
#[repr(C)]
struct RawParams {
    nr_queues: u32,
    mac: [u8; 6],
    mtu: u32,
    min_mtu: u32,
    max_mtu: u32,
    hw_features: u32,
    features: u32,
    driver: *const c_char,
    bus_info: *const c_char,
    stat_names: *const *const c_char,
    nr_stats: u32,
}

/// `struct xpvrs_skb_info` (net_helpers.h).
#[repr(C)]
struct RawSkbInfo {
    head: *const u8,
    head_len: u32,
    len: u32,
    nr_frags: u32,
    gso_size: u16,
    csum: u8,
    gso: u8,
}

// Pointers to kernel structs are passed as `c_void` (the C prototypes in net_helpers.h have the
// real types); the structs are opaque to this side.
extern "C" {
    fn xpvrs_net_alloc(
        ops: *const RawOps,
        drv: *const c_void,
        p: *const RawParams,
        parent: *mut c_void,
    ) -> *mut c_void;
    fn xpvrs_net_register(nd: *mut c_void) -> c_int;
    fn xpvrs_net_unregister(nd: *mut c_void);
    fn xpvrs_net_free(nd: *mut c_void);
    fn xpvrs_net_name(nd: *mut c_void) -> *const c_char;
    fn xpvrs_net_carrier(nd: *mut c_void, on: bool);
    fn xpvrs_net_running(nd: *mut c_void) -> bool;
    fn xpvrs_net_update_features(nd: *mut c_void);
    fn xpvrs_net_set_mtu(nd: *mut c_void, mtu: u32) -> c_int;
    fn xpvrs_net_clamp_mtu_locked(nd: *mut c_void, mtu: u32);
    fn xpvrs_net_mtu(nd: *mut c_void) -> u32;
    fn xpvrs_net_features(nd: *mut c_void) -> u32;
    fn xpvrs_net_set_queues(nd: *mut c_void, n: u32) -> c_int;
    fn xpvrs_napi_schedule(nd: *mut c_void, q: u16);
    fn xpvrs_napi_complete(nd: *mut c_void, q: u16, done: c_int) -> bool;
    fn xpvrs_napi_gro_receive(nd: *mut c_void, q: u16, skb: *mut c_void);
    fn xpvrs_txq_stop(nd: *mut c_void, q: u16);
    fn xpvrs_txq_wake(nd: *mut c_void, q: u16);
    fn xpvrs_txq_stopped(nd: *mut c_void, q: u16) -> bool;
    fn xpvrs_txq_disable_all(nd: *mut c_void);
    fn xpvrs_txq_start_all(nd: *mut c_void);
    fn xpvrs_txq_wake_all(nd: *mut c_void);
    fn xpvrs_skb_info(skb: *mut c_void, info: *mut RawSkbInfo);
    fn xpvrs_skb_frag(
        skb: *mut c_void,
        i: u32,
        data: *mut *const u8,
        len: *mut u32,
        page_offset: *mut u32,
    ) -> bool;
    fn xpvrs_skb_linearize(skb: *mut c_void) -> c_int;
    fn xpvrs_skb_consume(skb: *mut c_void);
    fn xpvrs_skb_free(skb: *mut c_void);
    fn xpvrs_skb_rx_alloc(nd: *mut c_void, q: u16, head_len: u32) -> *mut c_void;
    fn xpvrs_skb_put(skb: *mut c_void, len: u32) -> *mut u8;
    fn xpvrs_skb_add_page(
        skb: *mut c_void,
        page_addr: *mut c_void,
        offset: u32,
        len: u32,
        pool: bool,
    ) -> bool;
    fn xpvrs_page_pool_create(pool_size: u32) -> *mut c_void;
    fn xpvrs_page_pool_alloc(pool: *mut c_void, atomic: bool) -> *mut c_void;
    fn xpvrs_page_pool_put(pool: *mut c_void, page_addr: *mut c_void);
    fn xpvrs_page_pool_destroy(pool: *mut c_void);
    fn xpvrs_skb_set_hash(skb: *mut c_void, hash: u32, l4: bool);
    fn xpvrs_skb_rx_finish(
        nd: *mut c_void,
        skb: *mut c_void,
        csum: u8,
        gso: u8,
        gso_size: u16,
    ) -> c_int;
}

/// What a device looks like when it is created.
pub struct NetParams<'a> {
    /// Queues (TX and RX, one NAPI context each), at least 1.
    pub nr_queues: u16,
    /// The MAC address.
    pub mac: [u8; 6],
    /// MTU at start, and its bounds.
    pub mtu: u32,
    /// Smallest MTU accepted.
    pub min_mtu: u32,
    /// Largest MTU accepted.
    pub max_mtu: u32,
    /// Features the user may switch (`ethtool -K`).
    pub hw_features: Features,
    /// Features on at start.
    pub features: Features,
    /// Driver name (`ethtool -i`).
    pub driver: &'static CStr,
    /// Bus information (`ethtool -i`).
    pub bus_info: &'a CStr,
    /// Names of the `ethtool -S` counters, filled by [`Operations::ethtool_stats`].
    pub stat_names: &'static [&'static CStr],
}

/// The checksum state of a packet (`ip_summed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// Nothing known (`CHECKSUM_NONE`).
    None,
    /// The protocol checksum is to be filled in (`CHECKSUM_PARTIAL`).
    Partial,
    /// Verified (`CHECKSUM_UNNECESSARY`).
    Unnecessary,
}

/// TCP segmentation offload of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gso {
    /// TCP over IPv4 with this segment size.
    Tcpv4(u16),
    /// TCP over IPv6 with this segment size.
    Tcpv6(u16),
    /// Another GSO type (a driver that does not offer it never gets one).
    Other,
}

/// A packet to send, owned by the driver from `ndo_start_xmit` until it consumes it
/// ([`TxSkb::consume`]) or drops it (freed as a drop).
///
/// # Invariants
///
/// `skb` is an skb the stack handed to `ndo_start_xmit`, owned by this value alone.
pub struct TxSkb {
    skb: NonNull<c_void>,
}

// SAFETY: an owned skb may be freed from any context and thread.
unsafe impl Send for TxSkb {}

/// The facts of a [`TxSkb`].
#[derive(Clone, Copy, Debug)]
pub struct SkbInfo {
    /// Bytes in the packet.
    pub len: u32,
    /// Fragments after the linear part.
    pub nr_frags: u32,
    /// Checksum state.
    pub csum: Checksum,
    /// Segmentation offload.
    pub gso: Option<Gso>,
}

impl TxSkb {
    fn raw_info(&self) -> RawSkbInfo {
        let mut i = RawSkbInfo {
            head: core::ptr::null(),
            head_len: 0,
            len: 0,
            nr_frags: 0,
            gso_size: 0,
            csum: 0,
            gso: 0,
        };
        // SAFETY: the skb is live (type invariant); `i` is a valid out-pointer.
        unsafe { xpvrs_skb_info(self.skb.as_ptr(), &mut i) };
        i
    }

    /// Length, fragments, checksum state and GSO.
    pub fn info(&self) -> SkbInfo {
        let i = self.raw_info();
        SkbInfo {
            len: i.len,
            nr_frags: i.nr_frags,
            csum: match i.csum {
                1 => Checksum::Partial,
                2 => Checksum::Unnecessary,
                _ => Checksum::None,
            },
            gso: match i.gso {
                0 => None,
                1 => Some(Gso::Tcpv4(i.gso_size)),
                2 => Some(Gso::Tcpv6(i.gso_size)),
                _ => Some(Gso::Other),
            },
        }
    }

    /// The linear part's bytes.
    pub fn head(&self) -> &[u8] {
        let i = self.raw_info();
        if i.head.is_null() || i.head_len == 0 {
            return &[];
        }
        // SAFETY: `head_len` bytes at `head` are the skb's linear data, which stays in place
        // and unchanged while the skb is owned by `self` (borrowed here).
        unsafe { core::slice::from_raw_parts(i.head, i.head_len as usize) }
    }

    /// Fragment `i`: its bytes and their offset in their first page.
    pub fn frag(&self, i: u32) -> Option<(&[u8], usize)> {
        let mut data: *const u8 = core::ptr::null();
        let mut len = 0u32;
        let mut off = 0u32;
        // SAFETY: the skb is live; the out-pointers are valid.
        let ok = unsafe { xpvrs_skb_frag(self.skb.as_ptr(), i, &mut data, &mut len, &mut off) };
        if !ok || data.is_null() {
            return None;
        }
        // SAFETY: a fragment's `len` bytes at `data` are mapped (direct map) and held by the
        // skb, which `self` owns and which is borrowed here.
        Some((
            unsafe { core::slice::from_raw_parts(data, len as usize) },
            off as usize,
        ))
    }

    /// Copies the fragments into the linear part (`skb_linearize`).
    pub fn linearize(&mut self) -> Result {
        // SAFETY: the skb is live and ours (type invariant).
        let r = unsafe { xpvrs_skb_linearize(self.skb.as_ptr()) };
        if r == 0 {
            Ok(())
        } else {
            Err(Error::from_errno(r))
        }
    }

    /// Frees the packet as sent (`dev_consume_skb_any`).
    pub fn consume(self) {
        let skb = self.skb;
        core::mem::forget(self);
        // SAFETY: owned (type invariant), freed once; `self` is forgotten.
        unsafe { xpvrs_skb_consume(skb.as_ptr()) };
    }

    /// The token [`into_token`](Self::into_token) would give: the skb's address.
    pub fn token(&self) -> u64 {
        self.skb.as_ptr() as usize as u64
    }

    /// Gives the packet up while a device reads its memory in place; the token (its address,
    /// never 0) is what [`from_token`](Self::from_token) takes back once the device is done.
    /// A token never taken back leaks the skb.
    pub fn into_token(self) -> u64 {
        let token = self.token();
        core::mem::forget(self);
        token
    }

    /// Takes back a packet given up by [`into_token`](Self::into_token); `None` for 0.
    ///
    /// # Safety
    ///
    /// `token` came from `into_token` and is taken back at most once.
    pub unsafe fn from_token(token: u64) -> Option<TxSkb> {
        let skb = NonNull::new(usize::try_from(token).ok()? as *mut c_void)?;
        // Invariant: the skb was owned by the `TxSkb` that gave the token, and by nothing
        // since (the caller's guarantee).
        Some(TxSkb { skb })
    }

    /// Leaks the packet for good: its memory may still be read by a device that will not
    /// give it back, so it must never be freed or reused.
    pub fn leak(self) {
        core::mem::forget(self);
    }
}

impl Drop for TxSkb {
    /// Frees the packet as dropped (`dev_kfree_skb_any`).
    fn drop(&mut self) {
        // SAFETY: owned (type invariant), freed once.
        unsafe { xpvrs_skb_free(self.skb.as_ptr()) };
    }
}

/// A received packet being built for one queue's NAPI context; dropped unfinished it is freed.
///
/// # Invariants
///
/// `skb` was allocated by `napi_alloc_skb` and is owned by this value alone.
pub struct RxSkb {
    skb: NonNull<c_void>,
}

impl RxSkb {
    /// Appends `data` to the linear part; `false` if it does not fit.
    pub fn put(&mut self, data: &[u8]) -> bool {
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        // SAFETY: the skb is ours (type invariant).
        let dst = unsafe { xpvrs_skb_put(self.skb.as_ptr(), len) };
        if dst.is_null() {
            return false;
        }
        // SAFETY: `skb_put` made `len` bytes at `dst` part of the skb's linear area, which we
        // own; `data` cannot overlap it (a fresh buffer).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        true
    }

    /// Sets the packet's flow hash (`skb_set_hash`), as a NIC's receive hash: `l4` if it covers
    /// the ports too (the stack then uses it for steering, RPS and socket lookup).
    pub fn set_hash(&mut self, hash: u32, l4: bool) {
        // SAFETY: the skb is ours (type invariant).
        unsafe { xpvrs_skb_set_hash(self.skb.as_ptr(), hash, l4) }
    }

    /// Attaches `len` bytes at `offset` of `page` as the next fragment; the skb owns the
    /// page from now on. Gives the page back when the skb has no room for a fragment or the
    /// bytes are not within the page.
    pub fn add_page<P: GivePage>(&mut self, page: P, offset: u32, len: u32) -> Result<(), P> {
        match offset.checked_add(len) {
            Some(end) if end as usize <= bindings::PAGE_SIZE => {}
            _ => return Err(page),
        }
        let addr = page.kernel_addr();
        let pool = page.from_pool();
        // SAFETY: `addr` is an order-0 page of the direct map (`GivePage`); on success the
        // skb takes over its reference, so the page is given up (forgotten) below. A pool
        // page marks the skb for recycling, which returns it to its pool when freed.
        let ok = unsafe {
            xpvrs_skb_add_page(self.skb.as_ptr(), addr.as_ptr().cast(), offset, len, pool)
        };
        if !ok {
            return Err(page);
        }
        page.give_up();
        Ok(())
    }
}

impl Drop for RxSkb {
    fn drop(&mut self) {
        // SAFETY: owned (type invariant), freed once.
        unsafe { xpvrs_skb_free(self.skb.as_ptr()) };
    }
}

/// A receive queue's page pool (`page_pool`): pages attached to skbs come back to it when
/// the stack frees them, instead of going to the page allocator, as Linux's netfront gets
/// its receive buffers. Pages it takes from the allocator are zeroed; a recycled page holds
/// whatever its last packet left in it.
///
/// Allocation takes `&mut self`: a pool's allocation side is not safe to run from two
/// threads at once. Dropping the pool destroys it; pages still out (in skbs, or
/// [`PoolPage`]s) come back to it later, and the kernel frees the pool once they all have.
///
/// # Invariants
///
/// `pool` is a pool from `page_pool_create` that this value owns (destroys once).
pub struct PagePool {
    pool: NonNull<c_void>,
}

// SAFETY: the pool may be used from any thread, one at a time (`&mut self` for allocation);
// its pages are returned through its lock-protected ring from anywhere.
unsafe impl Send for PagePool {}

impl PagePool {
    /// A pool for one receive queue caching up to `pool_size` pages (the ring's size, as
    /// Linux's netfront sizes it). Its pages are not DMA-mapped.
    pub fn new(pool_size: u32) -> Result<PagePool> {
        // SAFETY: no preconditions; returns a pool or NULL.
        let pool = unsafe { xpvrs_page_pool_create(pool_size) };
        // INVARIANT: a pool we own, or an error.
        NonNull::new(pool)
            .map(|pool| PagePool { pool })
            .ok_or(ENOMEM)
    }

    /// A page from the pool (`atomic`: without sleeping), or `None` when memory is short.
    pub fn alloc(&mut self, atomic: bool) -> Option<PoolPage> {
        // SAFETY: the pool is live (type invariant) and `&mut self` excludes a concurrent
        // allocation from it.
        let addr = unsafe { xpvrs_page_pool_alloc(self.pool.as_ptr(), atomic) };
        // INVARIANT: a page of this pool, with the reference the allocation gave us.
        NonNull::new(addr.cast()).map(|addr| PoolPage {
            pool: self.pool,
            addr,
        })
    }
}

impl Drop for PagePool {
    fn drop(&mut self) {
        // SAFETY: owned (type invariant), destroyed once; pages still out come back to it
        // later (the kernel keeps the pool until they have).
        unsafe { xpvrs_page_pool_destroy(self.pool.as_ptr()) };
    }
}

/// An order-0 page of a [`PagePool`], returned to it when dropped (or, given to an skb with
/// [`RxSkb::add_page`], when the stack frees the skb).
///
/// # Invariants
///
/// `addr` is the direct-map address of a page of `pool` whose reference this value owns;
/// `pool` stays allocated until all its pages are back (the kernel's contract for pools).
pub struct PoolPage {
    pool: NonNull<c_void>,
    addr: NonNull<u8>,
}

// SAFETY: a page we own; returning it to its pool is allowed from any thread.
unsafe impl Send for PoolPage {}

impl PoolPage {
    /// The page's kernel address; valid while `self` is borrowed.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// Gives the page up for good: it never returns to its pool (and so never to the
    /// allocator). For a page a peer may still have mapped, which no one may reuse.
    pub fn leak(self) {
        core::mem::forget(self);
    }
}

impl Drop for PoolPage {
    fn drop(&mut self) {
        // SAFETY: a page of `pool` with our reference (type invariant); returned once.
        unsafe { xpvrs_page_pool_put(self.pool.as_ptr(), self.addr.as_ptr().cast()) };
    }
}

// SAFETY: an order-0 page of the direct map with the one reference we own (type invariant);
// `give_up` forgets it, so it is not returned here; `from_pool` is true, so the skb that
// takes it is marked for recycling.
unsafe impl GivePage for PoolPage {
    fn kernel_addr(&self) -> NonNull<u8> {
        self.addr
    }

    fn give_up(self) {
        core::mem::forget(self);
    }

    fn from_pool(&self) -> bool {
        true
    }
}

// SAFETY: `PAGE_SIZE` bytes of the direct map that we own until dropped, which a borrow of
// `self` excludes.
unsafe impl crate::page::KernelPage for PoolPage {
    fn kernel_addr(&self) -> NonNull<u8> {
        self.addr
    }
}

/// A live `net_device`, borrowed for `'a`: what a driver does to its device.
///
/// # Invariants
///
/// `nd` is a `net_device` allocated by [`NetDevice::new`] that is not freed during `'a`: the
/// value is borrowed from its [`NetDevice`] or given to a callback of its [`Operations`] for
/// the call.
#[derive(Clone, Copy)]
pub struct NetRef<'a> {
    nd: NonNull<c_void>,
    _p: PhantomData<&'a ()>,
}

// SAFETY: every operation below is safe to call from any thread and context the C interface
// allows; the device outlives the value (type invariant).
unsafe impl Send for NetRef<'_> {}
// SAFETY: as above.
unsafe impl Sync for NetRef<'_> {}

/// What an interrupt handler may do to a device it does not borrow: schedule a queue's NAPI
/// poll. Made by [`NetDevice::napi_scheduler`], under that function's contract.
///
/// # Invariants
///
/// `nd` is a `net_device` allocated by [`NetDevice::new`], not freed while this value is used
/// (the contract of `napi_scheduler`).
#[derive(Clone, Copy)]
pub struct NapiScheduler {
    nd: NonNull<c_void>,
}

// SAFETY: `napi_schedule` may be called from any context and thread; the device outlives every
// use (type invariant).
unsafe impl Send for NapiScheduler {}
// SAFETY: as above.
unsafe impl Sync for NapiScheduler {}

impl NapiScheduler {
    /// Schedules queue `q`'s NAPI poll (from any context, e.g. an interrupt handler).
    pub fn schedule(&self, q: u16) {
        // SAFETY: live device (type invariant); an out-of-range queue is ignored by C.
        unsafe { xpvrs_napi_schedule(self.nd.as_ptr(), q) }
    }
}

impl<'a> NetRef<'a> {
    fn raw(&self) -> *mut c_void {
        self.nd.as_ptr()
    }

    /// The interface name (`eth0`).
    pub fn name(&self) -> &CStr {
        // SAFETY: `name` is a NUL-terminated array in the live device (type invariant).
        unsafe { CStr::from_char_ptr(xpvrs_net_name(self.raw())) }
    }

    /// Sets the carrier (link up or down).
    pub fn set_carrier(&self, on: bool) {
        // SAFETY: live device (type invariant).
        unsafe { xpvrs_net_carrier(self.raw(), on) }
    }

    /// Whether the interface is up.
    pub fn is_running(&self) -> bool {
        // SAFETY: live device.
        unsafe { xpvrs_net_running(self.raw()) }
    }

    /// Recomputes the features (calls [`Operations::fix_features`]); takes the RTNL lock, so
    /// never from a callback that holds it (open, stop, change_mtu).
    pub fn update_features(&self) {
        // SAFETY: live device; process context (the caller's contract above).
        unsafe { xpvrs_net_update_features(self.raw()) }
    }

    /// Sets the MTU as `ip link set mtu` would; takes the RTNL lock like `update_features`.
    pub fn set_mtu(&self, mtu: u32) -> Result {
        // SAFETY: live device; process context.
        let r = unsafe { xpvrs_net_set_mtu(self.raw(), mtu) };
        if r == 0 {
            Ok(())
        } else {
            Err(Error::from_errno(r))
        }
    }

    /// Lowers the MTU to `mtu` if it is above, under the RTNL lock the caller holds: only from
    /// [`Operations::set_features`] or [`Operations::change_mtu`] (the C half checks).
    pub fn clamp_mtu_locked(&self, mtu: u32) {
        // SAFETY: live device; RTNL is held (the caller's contract, asserted by C).
        unsafe { xpvrs_net_clamp_mtu_locked(self.raw(), mtu) }
    }

    /// The MTU.
    pub fn mtu(&self) -> u32 {
        // SAFETY: live device.
        unsafe { xpvrs_net_mtu(self.raw()) }
    }

    /// The features on.
    pub fn features(&self) -> Features {
        // SAFETY: live device.
        Features(unsafe { xpvrs_net_features(self.raw()) })
    }

    /// Sets the number of queues in use (at most the number allocated); takes the RTNL lock.
    pub fn set_queues(&self, n: u16) -> Result {
        // SAFETY: live device; process context.
        let r = unsafe { xpvrs_net_set_queues(self.raw(), u32::from(n)) };
        if r == 0 {
            Ok(())
        } else {
            Err(Error::from_errno(r))
        }
    }

    /// Schedules queue `q`'s poll (from any context, e.g. an interrupt handler).
    pub fn napi_schedule(&self, q: u16) {
        // SAFETY: live device.
        unsafe { xpvrs_napi_schedule(self.raw(), q) }
    }

    /// Stops TX queue `q` (no more `start_xmit` on it until woken).
    pub fn tx_stop(&self, q: u16) {
        // SAFETY: live device; out-of-range is ignored.
        unsafe { xpvrs_txq_stop(self.raw(), q) }
    }

    /// Wakes TX queue `q`.
    pub fn tx_wake(&self, q: u16) {
        // SAFETY: live device.
        unsafe { xpvrs_txq_wake(self.raw(), q) }
    }

    /// Whether TX queue `q` is stopped.
    pub fn tx_stopped(&self, q: u16) -> bool {
        // SAFETY: live device.
        unsafe { xpvrs_txq_stopped(self.raw(), q) }
    }

    /// Wakes every TX queue (and their qdiscs).
    pub fn tx_wake_all(&self) {
        // SAFETY: live device.
        unsafe { xpvrs_txq_wake_all(self.raw()) }
    }

    /// Stops every TX queue, waiting for running `start_xmit` calls (`netif_tx_disable`).
    pub fn tx_disable_all(&self) {
        // SAFETY: live device.
        unsafe { xpvrs_txq_disable_all(self.raw()) }
    }

    /// Starts every TX queue.
    pub fn tx_start_all(&self) {
        // SAFETY: live device.
        unsafe { xpvrs_txq_start_all(self.raw()) }
    }
}

/// Queue `q`'s NAPI context during its poll.
pub struct Napi<'a> {
    net: NetRef<'a>,
    q: u16,
    budget: i32,
    /// `napi_complete_done` was called (at most once; the trampoline then makes the poll
    /// return less than its budget).
    completed: core::cell::Cell<bool>,
}

impl<'a> Napi<'a> {
    /// The device.
    pub fn net(&self) -> &NetRef<'a> {
        &self.net
    }

    /// The queue.
    pub fn queue(&self) -> u16 {
        self.q
    }

    /// `napi_complete_done`: the poll did `done` packets, less than its budget, and is
    /// finished. `false` when the poll must not re-enable its interrupts (it was rescheduled or
    /// is busy-polled), or when it may not complete: `done` is not below the budget, or it
    /// completed already. After a completion the poll's return value is taken as below its
    /// budget.
    pub fn complete_done(&self, done: i32) -> bool {
        if done < 0 || done >= self.budget || self.completed.get() {
            return false;
        }
        self.completed.set(true);
        // SAFETY: live device; called once from this queue's poll, with `done` below its
        // budget.
        unsafe { xpvrs_napi_complete(self.net.raw(), self.q, done) }
    }

    /// A new received packet with room for `head_len` bytes in its linear part
    /// (`napi_alloc_skb`, which only this queue's poll may call).
    pub fn rx_skb(&self, head_len: u32) -> Option<RxSkb> {
        // SAFETY: live device; this is queue `q`'s poll (softirq), the only context
        // `napi_alloc_skb` allows for this queue.
        let skb = unsafe { xpvrs_skb_rx_alloc(self.net.raw(), self.q, head_len) };
        // INVARIANT: a fresh skb from napi_alloc_skb, ours.
        NonNull::new(skb).map(|skb| RxSkb { skb })
    }

    /// Finishes `skb` (protocol, checksum state, GSO) and hands it to this queue's GRO.
    /// `Err` when it is not a valid frame or its checksum cannot be set up (it is freed as a
    /// drop).
    pub fn receive(&self, skb: RxSkb, csum: Checksum, gso: Option<Gso>) -> Result {
        let raw = skb.skb;
        core::mem::forget(skb);
        let c = match csum {
            Checksum::None => 0,
            Checksum::Partial => 1,
            Checksum::Unnecessary => 2,
        };
        let (g, size) = match gso {
            Some(Gso::Tcpv4(s)) => (1, s),
            Some(Gso::Tcpv6(s)) => (2, s),
            _ => (0, 0),
        };
        // SAFETY: live device; `raw` is ours and given to C, which frees it on failure.
        let r = unsafe { xpvrs_skb_rx_finish(self.net.raw(), raw.as_ptr(), c, g, size) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        // SAFETY: a finished skb, ours, handed to this queue's GRO during its poll (GRO owns it
        // from now on).
        unsafe { xpvrs_napi_gro_receive(self.net.raw(), self.q, raw.as_ptr()) };
        Ok(())
    }
}

/// A network driver.
pub trait Operations: Send + Sync + 'static + Sized {
    /// `ndo_open` (under RTNL; every queue's NAPI context is enabled just before).
    fn open(this: ArcBorrow<'_, Self>, net: &NetRef<'_>) -> Result;
    /// `ndo_stop` (under RTNL; every queue's NAPI context is disabled just after).
    fn stop(this: ArcBorrow<'_, Self>, net: &NetRef<'_>) -> Result;
    /// `ndo_start_xmit` on TX queue `queue` (bottom halves off). `Err` gives the packet back
    /// untouched with the queue stopped (`NETDEV_TX_BUSY`); the stack retries it.
    fn start_xmit(
        this: ArcBorrow<'_, Self>,
        net: &NetRef<'_>,
        queue: u16,
        skb: TxSkb,
    ) -> Result<(), TxSkb>;
    /// Queue `napi.queue()`'s NAPI poll (softirq): at most `budget` packets (0: no RX at
    /// all, netpoll); returns the number done, and completes the context
    /// ([`Napi::complete_done`]) when below `budget`.
    fn poll(this: ArcBorrow<'_, Self>, napi: &Napi<'_>, budget: i32) -> i32;
    /// `ndo_get_stats64`.
    fn stats(this: ArcBorrow<'_, Self>, stats: &mut NetStats);
    /// `ndo_change_mtu` (under RTNL, within the device's bounds): `Ok` to accept `mtu`.
    fn change_mtu(this: ArcBorrow<'_, Self>, net: &NetRef<'_>, mtu: u32) -> Result;
    /// `ndo_fix_features`: what of `wanted` the device can do now.
    fn fix_features(this: ArcBorrow<'_, Self>, wanted: Features) -> Features;
    /// The `ethtool -S` values, in the order of [`NetParams::stat_names`].
    fn ethtool_stats(this: ArcBorrow<'_, Self>, vals: &mut [u64]);
    /// `ndo_select_queue`: the TX queue for a packet whose flow hash (`skb_get_hash`) is
    /// `hash`, when `queues` (more than one) are in use; whatever it returns is reduced modulo
    /// `queues`. By default the hash picks the queue, as Linux's netfront does.
    fn select_queue(_this: ArcBorrow<'_, Self>, hash: u32, queues: u16) -> u16 {
        // The remainder is below `queues`, a `u16`.
        (hash % u32::from(queues.max(1))) as u16
    }
    /// `ndo_set_features` (under RTNL): the device's features become `features` (already
    /// through [`Operations::fix_features`]). `Err` refuses the change.
    fn set_features(_this: ArcBorrow<'_, Self>, _net: &NetRef<'_>, _features: Features) -> Result {
        Ok(())
    }
}

struct VTable<T: Operations>(PhantomData<T>);

impl<T: Operations> VTable<T> {
    /// # Safety (of every callback below)
    ///
    /// Called by the C half only, for a device made by [`NetDevice::new`]: `drv` is the
    /// foreign form of the `Arc<T>` the [`NetDevice`] holds until the device is freed, and
    /// `nd` is that device, live for the call.
    unsafe fn this<'a>(drv: *const c_void) -> ArcBorrow<'a, T> {
        // SAFETY: see above.
        unsafe { <Arc<T> as ForeignOwnable>::borrow(drv) }
    }

    fn net<'a>(nd: *mut c_void) -> Option<NetRef<'a>> {
        // INVARIANT: the device of a callback, live for the call (`'a` does not leave it).
        NonNull::new(nd).map(|nd| NetRef {
            nd,
            _p: PhantomData,
        })
    }

    unsafe extern "C" fn open(drv: *const c_void, nd: *mut c_void) -> c_int {
        let Some(net) = Self::net(nd) else {
            return EINVAL.to_errno();
        };
        // SAFETY: the callback contract above.
        match T::open(unsafe { Self::this(drv) }, &net) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    unsafe extern "C" fn stop(drv: *const c_void, nd: *mut c_void) -> c_int {
        let Some(net) = Self::net(nd) else {
            return EINVAL.to_errno();
        };
        // SAFETY: the callback contract above.
        match T::stop(unsafe { Self::this(drv) }, &net) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    unsafe extern "C" fn xmit(
        drv: *const c_void,
        nd: *mut c_void,
        skb: *mut c_void,
        queue: u16,
    ) -> c_int {
        let (Some(net), Some(skb)) = (Self::net(nd), NonNull::new(skb)) else {
            return 0;
        };
        let given = skb;
        // INVARIANT: the stack hands the skb over with the call.
        let skb = TxSkb { skb };
        // SAFETY: the callback contract above.
        match T::start_xmit(unsafe { Self::this(drv) }, &net, queue, skb) {
            Ok(()) => 0,
            Err(back) if back.skb == given => {
                // NETDEV_TX_BUSY: the stack keeps the skb.
                core::mem::forget(back);
                1
            }
            Err(other) => {
                // Not the packet the stack gave (the driver freed that one): the stack must not
                // keep it. Dropping `other` frees it; the call reports it sent.
                drop(other);
                0
            }
        }
    }

    unsafe extern "C" fn poll(drv: *const c_void, nd: *mut c_void, q: u16, budget: c_int) -> c_int {
        let Some(net) = Self::net(nd) else {
            return 0;
        };
        let napi = Napi {
            net,
            q,
            budget,
            completed: core::cell::Cell::new(false),
        };
        // SAFETY: the callback contract above.
        let done = T::poll(unsafe { Self::this(drv) }, &napi, budget);
        if napi.completed.get() {
            // Completed: the poll may not report its whole budget (NAPI would poll again a
            // context that is no longer scheduled).
            done.clamp(0, budget.saturating_sub(1).max(0))
        } else {
            done.clamp(0, budget.max(0))
        }
    }

    unsafe extern "C" fn stats(drv: *const c_void, s: *mut NetStats) {
        // SAFETY: `s` points to a zeroed `struct xpvrs_net_stats` on the C caller's stack.
        let Some(s) = (unsafe { s.as_mut() }) else {
            return;
        };
        // SAFETY: the callback contract above.
        T::stats(unsafe { Self::this(drv) }, s)
    }

    unsafe extern "C" fn change_mtu(drv: *const c_void, nd: *mut c_void, mtu: u32) -> c_int {
        let Some(net) = Self::net(nd) else {
            return EINVAL.to_errno();
        };
        // SAFETY: the callback contract above.
        match T::change_mtu(unsafe { Self::this(drv) }, &net, mtu) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    unsafe extern "C" fn fix_features(drv: *const c_void, f: u32) -> u32 {
        // SAFETY: the callback contract above.
        T::fix_features(unsafe { Self::this(drv) }, Features(f)).0
    }

    unsafe extern "C" fn select_queue(drv: *const c_void, hash: u32, queues: u16) -> u16 {
        // SAFETY: the callback contract above.
        T::select_queue(unsafe { Self::this(drv) }, hash, queues)
    }

    unsafe extern "C" fn set_features(drv: *const c_void, nd: *mut c_void, f: u32) -> c_int {
        let Some(net) = Self::net(nd) else {
            return EINVAL.to_errno();
        };
        // SAFETY: the callback contract above.
        match T::set_features(unsafe { Self::this(drv) }, &net, Features(f)) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    unsafe extern "C" fn ethtool_stats(drv: *const c_void, vals: *mut u64, n: u32) {
        if vals.is_null() {
            return;
        }
        // SAFETY: C passes its `n`-entry buffer of the ethtool request, zeroed and ours for the
        // call.
        let vals = unsafe { core::slice::from_raw_parts_mut(vals, n as usize) };
        // SAFETY: the callback contract above.
        T::ethtool_stats(unsafe { Self::this(drv) }, vals)
    }

    const OPS: RawOps = RawOps {
        open: Self::open,
        stop: Self::stop,
        xmit: Self::xmit,
        poll: Self::poll,
        stats: Self::stats,
        change_mtu: Self::change_mtu,
        fix_features: Self::fix_features,
        ethtool_stats: Self::ethtool_stats,
        select_queue: Self::select_queue,
        set_features: Self::set_features,
    };
}

/// Most `ethtool -S` counters a device has.
pub const MAX_STATS: usize = 64;

/// An Ethernet device served by the driver `T`.
///
/// # Invariants
///
/// `nd` was allocated by `xpvrs_net_alloc` with `drv`, the foreign form of an `Arc<T>`, and
/// is freed (after unregistering, if `registered`) only by `Drop`, which then reclaims `drv`.
/// `names` holds the C pointers of the stat names the device refers to.
pub struct NetDevice<T: Operations> {
    nd: NonNull<c_void>,
    drv: *const c_void,
    registered: bool,
    _names: KBox<[*const c_char; MAX_STATS]>,
    _p: PhantomData<T>,
}

// SAFETY: the device may be registered, used and freed from any thread; `drv` is an `Arc<T>`
// with `T: Send + Sync`.
unsafe impl<T: Operations> Send for NetDevice<T> {}
// SAFETY: `&NetDevice` only gives out `NetRef`s, which are `Sync`.
unsafe impl<T: Operations> Sync for NetDevice<T> {}

impl<T: Operations> NetDevice<T> {
    /// Allocates a device (carrier off, not registered) whose callbacks get `data`, as a child
    /// of `parent` in sysfs.
    pub fn new(p: &NetParams<'_>, data: Arc<T>, parent: &kernel::device::Device) -> Result<Self> {
        if p.nr_queues == 0 || p.stat_names.len() > MAX_STATS {
            return Err(EINVAL);
        }
        let mut names = KBox::new([core::ptr::null::<c_char>(); MAX_STATS], GFP_KERNEL)?;
        for (dst, src) in names.iter_mut().zip(p.stat_names) {
            *dst = src.as_char_ptr();
        }
        let raw = RawParams {
            nr_queues: u32::from(p.nr_queues),
            mac: p.mac,
            mtu: p.mtu,
            min_mtu: p.min_mtu,
            max_mtu: p.max_mtu,
            hw_features: p.hw_features.0,
            features: p.features.0,
            driver: p.driver.as_char_ptr(),
            bus_info: p.bus_info.as_char_ptr(),
            stat_names: names.as_ptr(),
            nr_stats: p.stat_names.len() as u32,
        };
        let ops: *const RawOps = &VTable::<T>::OPS;
        // `kernel::device::Device` is a transparent wrapper of `struct device` (its own
        // `as_raw` is crate-private): its address is the C struct's.
        let parent: *const kernel::device::Device = parent;
        let drv = data.into_foreign();
        // SAFETY: `ops` is a static table of valid callbacks; `raw` is a valid parameter block
        // whose strings outlive the device (`driver` and the stat names are static and their
        // pointer array is kept in `_names`; C copies `bus_info`); `drv` stays valid until
        // `Drop`; `parent` is a live device.
        let nd = unsafe { xpvrs_net_alloc(ops, drv, &raw, parent.cast_mut().cast()) };
        let Some(nd) = NonNull::new(nd) else {
            // SAFETY: from `into_foreign` above; C never saw it. Reclaimed once.
            drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(drv) });
            return Err(ENOMEM);
        };
        // INVARIANT: allocated just above with `drv`; not registered yet.
        Ok(NetDevice {
            nd,
            drv,
            registered: false,
            _names: names,
            _p: PhantomData,
        })
    }

    /// The device, borrowed.
    pub fn net(&self) -> NetRef<'_> {
        // INVARIANT: live while `self` is borrowed.
        NetRef {
            nd: self.nd,
            _p: PhantomData,
        }
    }

    /// A handle that schedules NAPI polls, not tied to a borrow of `self`, for an interrupt
    /// handler.
    ///
    /// # Safety
    ///
    /// The caller must stop using the returned value (e.g. unbind its interrupt handler)
    /// before `self` is dropped.
    pub unsafe fn napi_scheduler(&self) -> NapiScheduler {
        // INVARIANT: the caller's promise.
        NapiScheduler { nd: self.nd }
    }

    /// Registers the device (it appears as `eth<N>`); the callbacks may run from here on.
    pub fn register(&mut self) -> Result {
        if self.registered {
            return Ok(());
        }
        // SAFETY: allocated and not registered (type invariant); process context.
        let r = unsafe { xpvrs_net_register(self.nd.as_ptr()) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        self.registered = true;
        Ok(())
    }
}

impl<T: Operations> Drop for NetDevice<T> {
    fn drop(&mut self) {
        if self.registered {
            // SAFETY: registered (type invariant); this stops the device and waits for its
            // callbacks.
            unsafe { xpvrs_net_unregister(self.nd.as_ptr()) };
        }
        // SAFETY: no callback can run any more; freed once.
        unsafe { xpvrs_net_free(self.nd.as_ptr()) };
        // SAFETY: from `into_foreign` in `new`; reclaimed once, after the last callback.
        drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign(self.drv) });
    }
}

extern "C" {
    fn xpvrs_local_bh_disable();
    fn xpvrs_local_bh_enable();
}

/// Bottom halves off on this CPU while the value lives (`local_bh_disable`): process context
/// must hold one to take a spinlock that a NAPI poll or `start_xmit` also takes, or the poll
/// could interrupt the lock's holder on its own CPU and spin forever.
pub struct BhOff(PhantomData<*mut ()>);

impl BhOff {
    /// Disables bottom halves until the value is dropped (not `Send`: enabled on this CPU).
    pub fn new() -> BhOff {
        // SAFETY: no preconditions; paired with the enable in `drop`.
        unsafe { xpvrs_local_bh_disable() };
        BhOff(PhantomData)
    }
}

impl Default for BhOff {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BhOff {
    fn drop(&mut self) {
        // SAFETY: paired with `new` on this CPU (the value is not `Send`).
        unsafe { xpvrs_local_bh_enable() };
    }
}
