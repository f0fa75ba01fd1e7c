//! What a toolstack (`xl`/libxl) writes to XenStore to create and remove a split device.
//!
//! The kernel harness of a later issue writes the same nodes itself; this module is the
//! reference for that layout:
//!
//! ```text
//! /local/domain/<be>/backend/<kind>/<fe>/<devid>/   owner <be>, <fe> may read
//!     frontend = /local/domain/<fe>/device/<kind>/<devid>
//!     frontend-id = <fe>
//!     online = 1
//!     state = 1
//! /local/domain/<fe>/device/<kind>/<devid>/          owner <fe>, <be> may read
//!     backend = /local/domain/<be>/backend/<kind>/<fe>/<devid>
//!     backend-id = <be>
//!     state = 1
//! ```

use crate::Sim;
use xen_core::xs::{Access, Errno, Perm};
use xen_sys::DomId;

/// The XenStore directories of one split device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePaths {
    /// `/local/domain/<fe>/device/<kind>/<devid>`.
    pub frontend: String,
    /// `/local/domain/<be>/backend/<kind>/<fe>/<devid>`.
    pub backend: String,
}

/// The paths of device `devid` of `kind` between `frontend` and `backend`.
pub fn device_paths(kind: &str, frontend: DomId, backend: DomId, devid: u32) -> DevicePaths {
    DevicePaths {
        frontend: format!("/local/domain/{}/device/{kind}/{devid}", frontend.raw()),
        backend: format!(
            "/local/domain/{}/backend/{kind}/{}/{devid}",
            backend.raw(),
            frontend.raw()
        ),
    }
}

/// Creates the nodes of a new device, both ends in state Initialising.
pub fn add_device(
    sim: &Sim,
    kind: &str,
    frontend: DomId,
    backend: DomId,
    devid: u32,
) -> Result<DevicePaths, Errno> {
    let paths = device_paths(kind, frontend, backend, devid);
    let perms = |owner: DomId, reader: DomId| {
        [
            Perm {
                access: Access::None,
                domid: owner,
            },
            Perm {
                access: Access::Read,
                domid: reader,
            },
        ]
    };
    sim.xs_write(&paths.backend, b"")?;
    sim.xs_set_perms(&paths.backend, &perms(backend, frontend))?;
    sim.xs_write(
        &format!("{}/frontend", paths.backend),
        paths.frontend.as_bytes(),
    )?;
    sim.xs_write(
        &format!("{}/frontend-id", paths.backend),
        frontend.raw().to_string().as_bytes(),
    )?;
    sim.xs_write(&format!("{}/online", paths.backend), b"1")?;
    sim.xs_write(&format!("{}/state", paths.backend), b"1")?;
    sim.xs_write(&paths.frontend, b"")?;
    sim.xs_set_perms(&paths.frontend, &perms(frontend, backend))?;
    sim.xs_write(
        &format!("{}/backend", paths.frontend),
        paths.backend.as_bytes(),
    )?;
    sim.xs_write(
        &format!("{}/backend-id", paths.frontend),
        backend.raw().to_string().as_bytes(),
    )?;
    sim.xs_write(&format!("{}/state", paths.frontend), b"1")?;
    Ok(paths)
}

/// Removes both directories of a device.
pub fn remove_device(sim: &Sim, paths: &DevicePaths) -> Result<(), Errno> {
    sim.xs_rm(&paths.frontend)?;
    sim.xs_rm(&paths.backend)
}
