// SPDX-License-Identifier: GPL-2.0

//! XenBus drivers: registration for a device type, and probe, otherend_changed, remove, suspend
//! and resume as safe methods.
//!
//! A driver implements [`Driver`]; its module keeps a [`Registration`] alive for as long as it
//! is loaded. For each device of its type the XenBus core calls [`Driver::probe`], which
//! returns the driver's owned per-device object (`Arc<Driver::Data>`); the layer stores it in
//! the device's drvdata and gives it back, by reference to [`Driver::otherend_changed`] and by
//! value to [`Driver::remove`], which must tear down everything that refers to the device
//! (watches, event channels, work items) before it returns.
//!
//! The kernel names the devices it announces `xen:<type>` (frontends) and `xen-backend:<type>`
//! (backends) in `MODALIAS`; a module declares the matching `alias` in `module!` to be loaded
//! automatically.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use kernel::error::to_result;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::{ForeignOwnable, Opaque};
use xen_core::feature::FeatureError;
use xen_core::xs::{self, PathBuf};
use xen_kbindings as b;
use xen_sys::{DomId, XenbusState};

/// A device's own or its peer's XenStore directory, with room for any key below it.
pub type DevPath = PathBuf<{ xen_core::feature::KEY_PATH_MAX }>;

/// Why a step of a device's XenBus handshake failed (for the driver's log line).
#[derive(Debug)]
pub enum HandshakeError {
    /// A kernel call failed.
    Kernel(Error),
    /// A key was missing, malformed or out of range.
    Feature(FeatureError),
    /// XenStore failed.
    Store(xs::Error),
    /// Something else the driver found wrong.
    Bad(&'static str),
}

impl HandshakeError {
    /// The errno to report (`xenbus_dev_error`): the kernel's, or EINVAL for a bad key or
    /// value, EIO for a XenStore failure.
    pub fn errno(&self) -> Error {
        match self {
            HandshakeError::Kernel(e) => *e,
            HandshakeError::Feature(_) | HandshakeError::Bad(_) => EINVAL,
            HandshakeError::Store(_) => EIO,
        }
    }
}

impl From<Error> for HandshakeError {
    fn from(e: Error) -> Self {
        HandshakeError::Kernel(e)
    }
}

impl From<kernel::alloc::AllocError> for HandshakeError {
    fn from(_: kernel::alloc::AllocError) -> Self {
        HandshakeError::Kernel(ENOMEM)
    }
}

impl From<FeatureError> for HandshakeError {
    fn from(e: FeatureError) -> Self {
        HandshakeError::Feature(e)
    }
}

impl From<xs::Error> for HandshakeError {
    fn from(e: xs::Error) -> Self {
        HandshakeError::Store(e)
    }
}

impl core::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandshakeError::Kernel(e) => write!(f, "kernel error {:?}", e),
            HandshakeError::Feature(e) => write!(f, "{}", e),
            HandshakeError::Store(e) => write!(f, "xenstore error {:?}", e),
            HandshakeError::Bad(what) => write!(f, "{}", what),
        }
    }
}

/// A XenBus device (`struct xenbus_device`).
///
/// # Invariants
///
/// The wrapped device is live for the lifetime of the reference.
#[repr(transparent)]
pub struct Device(Opaque<b::xenbus_device>);

impl Device {
    /// Turns the XenBus core's pointer into a reference.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a live `xenbus_device` for the whole of `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut b::xenbus_device) -> &'a Device {
        // SAFETY: `Device` is a transparent wrapper of the C struct, and the caller guarantees
        // the pointee lives for `'a`.
        unsafe { &*ptr.cast::<Device>() }
    }

    pub(crate) fn as_raw(&self) -> *mut b::xenbus_device {
        self.0.get()
    }

    /// The C `struct xenbus_device`, for a driver's own C helper (e.g. one that adds sysfs
    /// files to it). Valid while this `Device` is.
    pub fn as_ptr(&self) -> *mut kernel::ffi::c_void {
        self.as_raw().cast()
    }

    /// The device as the driver core sees it (a parent for a `net_device`, say).
    pub fn as_device(&self) -> &kernel::device::Device {
        // SAFETY: `dev` is the embedded `struct device` of the live XenBus device, which lives
        // as long as `self` (type invariant).
        unsafe { kernel::device::Device::as_ref(ptr::addr_of_mut!((*self.as_raw()).dev).cast()) }
    }

    /// Our XenStore directory, e.g. `device/echo/0` (frontends) or `backend/echo/1/0`.
    pub fn nodename(&self) -> &CStr {
        // SAFETY: the XenBus core sets `nodename` to a NUL-terminated string before probe and
        // frees it only with the device, which outlives `self` (type invariant).
        unsafe { CStr::from_char_ptr((*self.as_raw()).nodename) }
    }

    /// The other end's XenStore directory, read by the core before probe.
    pub fn otherend(&self) -> Option<&CStr> {
        // SAFETY: `self` is live (type invariant); the field is a pointer the core owns.
        let p = unsafe { (*self.as_raw()).otherend };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null `otherend` is a NUL-terminated string the core keeps until the
        // device is removed, which is after any borrow of `self` ends.
        Some(unsafe { CStr::from_char_ptr(p) })
    }

    /// [`nodename`](Self::nodename) as a XenStore path, with room for a key below it.
    pub fn nodename_path(&self) -> Result<DevPath, HandshakeError> {
        let s = self.nodename().to_str().map_err(|_| EINVAL)?;
        Ok(PathBuf::try_from_str(s)?)
    }

    /// [`otherend`](Self::otherend) as a XenStore path, with room for a key below it.
    pub fn otherend_path(&self) -> Result<DevPath, HandshakeError> {
        let s = self.otherend().ok_or(EINVAL)?;
        let s = s.to_str().map_err(|_| EINVAL)?;
        Ok(PathBuf::try_from_str(s)?)
    }

    /// The other end's domain.
    pub fn otherend_id(&self) -> DomId {
        // SAFETY: `self` is live (type invariant); reading an int field.
        let id = unsafe { (*self.as_raw()).otherend_id };
        u16::try_from(id).map_or(DomId::INVALID, DomId::new)
    }

    /// Writes our `state` node through the core (which also keeps its own copy), as
    /// `xenbus_switch_state` does.
    pub fn switch_state(&self, state: XenbusState) -> Result {
        let state: b::xenbus_state = u32::from(state);
        // SAFETY: `self` is a live device (type invariant).
        to_result(unsafe { b::xenbus_switch_state(self.as_raw(), state) })
    }

    /// Reports an error to the toolstack (`xenbus_dev_error`): the message goes to
    /// `error/<nodename>/error` in XenStore, where `xl` finds it instead of timing out. Unlike
    /// `xenbus_dev_fatal` it leaves the state alone: the driver's XenBus state machine says
    /// what state comes next (after unmapping, for a backend).
    pub fn error(&self, err: Error, msg: &CStr) {
        // SAFETY: `self` is a live device (type invariant); the format is a literal "%s" and
        // its one argument a NUL-terminated string.
        unsafe {
            b::xenbus_dev_error(
                self.as_raw(),
                err.to_errno(),
                kernel::c_str!("%s").as_char_ptr(),
                msg.as_char_ptr(),
            )
        };
    }

    /// Reports a failed handshake to the toolstack: [`Self::error`] with `e`'s text (and a
    /// shorter message if that one cannot be allocated).
    pub fn handshake_error(&self, e: &HandshakeError) {
        match kernel::str::CString::try_from_fmt(kernel::fmt!("handshake failed: {e}")) {
            Ok(msg) => self.error(e.errno(), &msg),
            Err(_) => self.error(e.errno(), kernel::c_str!("handshake failed")),
        }
    }

    /// A counted reference, for work that outlives the current callback.
    pub fn handle(&self) -> DeviceHandle {
        // SAFETY: `self` is live; `get_device` takes a reference on its embedded `struct
        // device`, released in `DeviceHandle::drop`.
        unsafe { b::get_device(ptr::addr_of_mut!((*self.as_raw()).dev).cast()) };
        // INVARIANT: we just took a reference.
        DeviceHandle(NonNull::from(self))
    }
}

/// A reference-counted handle on a XenBus device, so its memory stays valid even after the
/// driver is unbound (calls on an unbound device fail cleanly in the core).
///
/// # Invariants
///
/// Holds one reference on the device's `struct device` (taken by [`Device::handle`]).
pub struct DeviceHandle(NonNull<Device>);

// SAFETY: the XenBus functions called through the handle take the device pointer from any
// thread; the reference count is atomic.
unsafe impl Send for DeviceHandle {}
// SAFETY: as above; `&DeviceHandle` only gives `&Device`, whose methods are thread-safe.
unsafe impl Sync for DeviceHandle {}

impl core::ops::Deref for DeviceHandle {
    type Target = Device;
    fn deref(&self) -> &Device {
        // SAFETY: the reference we hold keeps the device alive (type invariant).
        unsafe { self.0.as_ref() }
    }
}

impl Clone for DeviceHandle {
    fn clone(&self) -> Self {
        self.handle()
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        // SAFETY: we own one reference (type invariant), given back here exactly once.
        unsafe { b::put_device(ptr::addr_of_mut!((*self.as_raw()).dev).cast()) };
    }
}

/// What a driver stores as "the peer's state" before `otherend_changed` has delivered one.
///
/// A peer whose state was never read is not a peer that vanished: the XenBus state machine
/// treats `Unknown` as the peer gone (it closes), so a driver that keeps the last state in an
/// atomic for its work item starts it at this value and feeds the machine only what
/// [`peer_state`] returns.
pub const PEER_NOT_SEEN: u32 = u32::MAX;

/// The peer's state as stored by `otherend_changed`, or `None` if none was delivered yet
/// ([`PEER_NOT_SEEN`]). A number outside the states reads as `Unknown`.
pub fn peer_state(stored: &core::sync::atomic::AtomicU32) -> Option<XenbusState> {
    match stored.load(core::sync::atomic::Ordering::Acquire) {
        PEER_NOT_SEEN => None,
        raw => Some(XenbusState::try_from(raw).unwrap_or(XenbusState::Unknown)),
    }
}

/// Which XenBus a driver registers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The frontend bus (`device/<type>/<id>` of our domain).
    Frontend,
    /// The backend bus (`backend/<type>/<domid>/<id>`; dom0 or a driver domain).
    Backend,
}

/// A XenBus driver.
pub trait Driver: 'static {
    /// The owned per-device object.
    type Data: Send + Sync;
    /// The bus.
    const SIDE: Side;
    /// The device type, e.g. `c_str!("echo")` (at most 31 bytes).
    const TYPE: &'static CStr;

    /// A device of our type appeared; set it up.
    fn probe(dev: &Device) -> Result<Arc<Self::Data>>;

    /// The other end's `state` changed (the core's own watch).
    fn otherend_changed(data: ArcBorrow<'_, Self::Data>, dev: &Device, state: XenbusState);

    /// The device goes away or the driver unloads: tear down everything referring to `dev`.
    fn remove(data: Arc<Self::Data>, dev: &Device);

    /// The domain is about to be saved or migrated (the PM `freeze` step, frontends only). The
    /// core ignores a failure beyond a warning. By default nothing is done.
    fn suspend(_data: ArcBorrow<'_, Self::Data>, _dev: &Device) -> Result {
        Ok(())
    }

    /// The domain was restored, possibly on another host (frontends only). The core has re-read
    /// the other end's keys and reset its copy of our state to Initialising; it watches the
    /// other end again after this returns. The backend is a new one: a frontend drops its old
    /// ring, grants and event channel without waiting for the old backend (it is gone) and
    /// starts the handshake again. By default nothing is done.
    fn resume(_data: ArcBorrow<'_, Self::Data>, _dev: &Device) -> Result {
        Ok(())
    }

    /// The kernel is short of memory (backends only: the XenBus backend core's shrinker asks
    /// every bound device). It runs inside memory reclaim, so it must be quick and must
    /// neither allocate nor take a lock that an allocating path holds: typically it records a
    /// deadline until which caches are kept empty. By default nothing is done.
    fn reclaim_memory(_data: ArcBorrow<'_, Self::Data>, _dev: &Device) {}
}

/// A registered XenBus driver; unregisters on drop. Keep it pinned in the module.
///
/// # Invariants
///
/// `drv` is registered with the XenBus core from construction until drop, and its `ids`
/// pointer refers to `self.ids`, which does not move (the registration is pinned).
#[pin_data(PinnedDrop)]
pub struct Registration<T: Driver> {
    #[pin]
    drv: Opaque<b::xenbus_driver>,
    #[pin]
    ids: Opaque<[b::xenbus_device_id; 2]>,
    _p: PhantomData<T>,
}

// SAFETY: after registration the core only reads `drv`/`ids`; nothing in them is tied to a
// thread.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: `&Registration` offers no access to the inner C structs.
unsafe impl<T: Driver> Sync for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// Registers `T` for devices of type `T::TYPE`, named `name` in sysfs.
    pub fn new(name: &'static CStr) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            ids <- Opaque::ffi_init(|slot: *mut [b::xenbus_device_id; 2]| {
                let mut ids = [b::xenbus_device_id::default(), b::xenbus_device_id::default()];
                let [first, _] = &mut ids;
                // Too long a type is refused in `pin_chain` below, before registering.
                for (d, s) in first.devicetype.iter_mut().zip(T::TYPE.as_bytes()) {
                    *d = *s as _;
                }
                // SAFETY: `slot` is valid for writes (pin-init contract).
                unsafe { slot.write(ids) };
            }),
            drv <- Opaque::ffi_init(|slot: *mut b::xenbus_driver| {
                let drv = b::xenbus_driver {
                    name: name.as_char_ptr(),
                    probe: Some(probe_callback::<T>),
                    otherend_changed: Some(otherend_changed_callback::<T>),
                    remove: Some(remove_callback::<T>),
                    suspend: Some(suspend_callback::<T>),
                    resume: Some(resume_callback::<T>),
                    reclaim_memory: Some(reclaim_memory_callback::<T>),
                    ..Default::default()
                };
                // SAFETY: `slot` is valid for writes (pin-init contract).
                unsafe { slot.write(drv) };
            }),
            _p: PhantomData,
        })
        .pin_chain(|this| {
            // The type and its NUL must fit `devicetype[32]`.
            if T::TYPE.len() >= 32 {
                return Err(EINVAL);
            }
            let drv = this.drv.get();
            // SAFETY: both fields are initialised and pinned; the core keeps `ids` until
            // unregistration, and `ids` lives as long as `drv` (same struct).
            unsafe { (*drv).ids = this.ids.get().cast() };
            // SAFETY: `drv` is fully initialised and pinned for as long as it is registered
            // (unregistered in drop).
            let ret = unsafe {
                match T::SIDE {
                    Side::Frontend => b::xpvrs_register_frontend(drv),
                    Side::Backend => b::xpvrs_register_backend(drv),
                }
            };
            // INVARIANT: registered from here on.
            to_result(ret)
        })
    }
}

#[pinned_drop]
impl<T: Driver> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: registered since construction (type invariant); this removes every device
        // (calling `remove`) before returning.
        unsafe { b::xenbus_unregister_driver(self.drv.get()) };
    }
}

/// The peer's state as the core read it: any number the peer wrote; unknown ones are `Unknown`.
fn state_from_raw(raw: b::xenbus_state) -> XenbusState {
    XenbusState::try_from(raw).unwrap_or(XenbusState::Unknown)
}

unsafe extern "C" fn probe_callback<T: Driver>(
    dev: *mut b::xenbus_device,
    _id: *const b::xenbus_device_id,
) -> kernel::ffi::c_int {
    // SAFETY: the core calls probe with a live device that stays live until remove.
    let device = unsafe { Device::from_raw(dev) };
    match T::probe(device) {
        Ok(data) => {
            // SAFETY: `dev` is live; drvdata is ours until `remove_callback` takes it back.
            unsafe { b::xpvrs_set_drvdata(dev, data.into_foreign() as *mut _) };
            0
        }
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn otherend_changed_callback<T: Driver>(
    dev: *mut b::xenbus_device,
    state: b::xenbus_state,
) {
    // SAFETY: the core only calls this between a successful probe and remove.
    let ptr = unsafe { b::xpvrs_get_drvdata(dev) };
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `into_foreign` in probe and is not reclaimed before remove,
    // which the core does not run concurrently with this callback (it removes the otherend
    // watch first).
    let data = unsafe { <Arc<T::Data> as ForeignOwnable>::borrow(ptr) };
    // SAFETY: `dev` is live during the callback.
    T::otherend_changed(
        data,
        unsafe { Device::from_raw(dev) },
        state_from_raw(state),
    );
}

unsafe extern "C" fn remove_callback<T: Driver>(dev: *mut b::xenbus_device) {
    // SAFETY: `dev` is live during remove.
    let ptr = unsafe { b::xpvrs_get_drvdata(dev) };
    // SAFETY: `dev` is live; clearing drvdata so nothing else can reclaim it.
    unsafe { b::xpvrs_set_drvdata(dev, ptr::null_mut()) };
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `into_foreign` in probe and is reclaimed exactly once, here.
    let data = unsafe { <Arc<T::Data> as ForeignOwnable>::from_foreign(ptr) };
    // SAFETY: `dev` is live during remove.
    T::remove(data, unsafe { Device::from_raw(dev) });
}

unsafe extern "C" fn suspend_callback<T: Driver>(dev: *mut b::xenbus_device) -> kernel::ffi::c_int {
    // SAFETY: the PM core calls this with a live, bound device, under the device lock, so not
    // concurrently with probe or remove.
    let ptr = unsafe { b::xpvrs_get_drvdata(dev) };
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: `ptr` came from `into_foreign` in probe; remove (the only reclaimer) cannot run
    // while the device lock is held.
    let data = unsafe { <Arc<T::Data> as ForeignOwnable>::borrow(ptr) };
    // SAFETY: `dev` is live during the callback.
    match T::suspend(data, unsafe { Device::from_raw(dev) }) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn resume_callback<T: Driver>(dev: *mut b::xenbus_device) -> kernel::ffi::c_int {
    // SAFETY: the PM `restore` step calls this with a live, bound device under its device
    // lock. (Only a domain that runs xenstored itself defers it to a work item without that
    // lock; such a domain is not saved while its devices are being unbound.)
    let ptr = unsafe { b::xpvrs_get_drvdata(dev) };
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: `ptr` came from `into_foreign` in probe and is not reclaimed before remove,
    // which does not run concurrently with a PM callback (see above).
    let data = unsafe { <Arc<T::Data> as ForeignOwnable>::borrow(ptr) };
    // SAFETY: `dev` is live during the callback.
    match T::resume(data, unsafe { Device::from_raw(dev) }) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn reclaim_memory_callback<T: Driver>(dev: *mut b::xenbus_device) {
    // SAFETY: the backend core's shrinker calls this with a bound device, holding the device's
    // `reclaim_sem`, which probe and remove also hold: drvdata is either null (probe not
    // finished) or the `Arc` probe stored, not reclaimed before remove.
    let ptr = unsafe { b::xpvrs_get_drvdata(dev) };
    if ptr.is_null() {
        return;
    }
    // SAFETY: as above, `ptr` came from `into_foreign` in probe and outlives this call.
    let data = unsafe { <Arc<T::Data> as ForeignOwnable>::borrow(ptr) };
    // SAFETY: `dev` is live during the callback.
    T::reclaim_memory(data, unsafe { Device::from_raw(dev) });
}
