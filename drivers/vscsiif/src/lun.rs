//! LUN translation: the table of `vscsi-devs/dev-N` entries a request's address is looked up
//! in, and what each side does when an entry's `state` changes (LUN hotplug).
//!
//! Entries come from XenStore, so from the toolstack or a peer: the table is bounded
//! ([`LunTable`] holds at most `N`), an index or a `v-dev` seen twice is refused, and only
//! entries the backend has added ([`LunEntry::active`]) answer requests.
//!
//! Hotplug follows `io/vscsiif.h` and Linux's two drivers. The toolstack sets the backend
//! Reconfiguring and writes or changes entries; per entry state:
//!
//! | entry `state` | backend ([`back_action`]) | frontend ([`front_action`]) |
//! |---|---|---|
//! | Initialising | add the LUN, write Initialised (Closed if it fails) | — |
//! | Initialised | after Reconfigured: write Connected | add the SCSI device |
//! | Connected | re-add after a reconnect, if not present | re-add after resume |
//! | Closing | remove the LUN, write Closed | remove the SCSI device |

use crate::parse::{Luns, VAddr};
use xen_core::feature::vscsiif::{Hctl, PDev};
use xen_core::xenbus::XenbusState;

/// One LUN of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LunEntry {
    /// N of `vscsi-devs/dev-N`.
    pub index: u32,
    /// The address the frontend sees.
    pub v_dev: Hctl,
    /// The backend device (`None` on the frontend, which never reads it).
    pub p_dev: Option<PDev>,
    /// Whether requests to it are served (backend: added; frontend: its device exists).
    pub active: bool,
}

impl LunEntry {
    /// The address a request names for this LUN, if `v-dev` fits the request's 16-bit fields.
    pub fn vaddr(&self) -> Option<VAddr> {
        Some(VAddr {
            channel: u16::try_from(self.v_dev.channel).ok()?,
            id: u16::try_from(self.v_dev.target).ok()?,
            lun: u16::try_from(self.v_dev.lun).ok()?,
        })
    }
}

/// Why an entry was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LunError {
    /// The table is full.
    Full,
    /// Another entry has this index.
    DuplicateIndex(u32),
    /// Another entry has this `v-dev` (channel, target and LUN; the host number names the
    /// virtual host, which is this whole table).
    DuplicateAddress(Hctl),
    /// `v-dev` does not fit a request's 16-bit channel, target or LUN.
    AddressTooLarge(Hctl),
}

/// At most `N` LUNs of one virtual host.
#[derive(Clone, Debug)]
pub struct LunTable<const N: usize> {
    entries: [Option<LunEntry>; N],
}

impl<const N: usize> Default for LunTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LunTable<N> {
    /// An empty table.
    pub fn new() -> Self {
        LunTable { entries: [None; N] }
    }

    /// Adds an entry (inactive until [`activate`](Self::activate)); refused if the index or
    /// the address is taken or the table is full.
    pub fn insert(&mut self, index: u32, v_dev: Hctl, p_dev: Option<PDev>) -> Result<(), LunError> {
        let entry = LunEntry {
            index,
            v_dev,
            p_dev,
            active: false,
        };
        let addr = entry.vaddr().ok_or(LunError::AddressTooLarge(v_dev))?;
        for e in self.entries.iter().flatten() {
            if e.index == index {
                return Err(LunError::DuplicateIndex(index));
            }
            if e.vaddr() == Some(addr) {
                return Err(LunError::DuplicateAddress(v_dev));
            }
        }
        let free = self
            .entries
            .iter_mut()
            .find(|e| e.is_none())
            .ok_or(LunError::Full)?;
        *free = Some(entry);
        Ok(())
    }

    /// Marks entry `index` served (`true`) or not; `false` if there is no such entry.
    pub fn activate(&mut self, index: u32, active: bool) -> bool {
        match self.get_mut(index) {
            Some(e) => {
                e.active = active;
                true
            }
            None => false,
        }
    }

    /// Removes entry `index`.
    pub fn remove(&mut self, index: u32) -> Option<LunEntry> {
        self.entries
            .iter_mut()
            .find(|e| e.is_some_and(|e| e.index == index))
            .and_then(Option::take)
    }

    /// Entry `index`.
    pub fn get(&self, index: u32) -> Option<&LunEntry> {
        self.entries.iter().flatten().find(|e| e.index == index)
    }

    fn get_mut(&mut self, index: u32) -> Option<&mut LunEntry> {
        self.entries.iter_mut().flatten().find(|e| e.index == index)
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = &LunEntry> {
        self.entries.iter().flatten()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<const N: usize> Luns for LunTable<N> {
    fn find(&self, addr: VAddr) -> Option<u32> {
        self.iter()
            .find(|e| e.active && e.vaddr() == Some(addr))
            .map(|e| e.index)
    }
}

/// What a side does about one entry whose `state` it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LunAction {
    /// Nothing.
    None,
    /// Add the LUN (backend: look `p-dev` up and insert it; frontend: add the SCSI device),
    /// then write `state` (backend: Initialised, or Closed on failure).
    Add,
    /// Add it unless present (after a reconnect or resume), then write Connected.
    Readd,
    /// Write Connected (backend, after Reconfigured).
    Connect,
    /// Remove the LUN, then (backend) write Closed.
    Remove,
}

/// The backend's action for an entry in `state`. `updating` is the second pass Linux makes
/// when the frontend says Reconfigured (or connects): entries it added are moved to
/// Connected.
pub fn back_action(state: XenbusState, updating: bool) -> LunAction {
    match (state, updating) {
        (XenbusState::Initialising, false) => LunAction::Add,
        (XenbusState::Connected, false) => LunAction::Readd,
        (XenbusState::Closing, false) => LunAction::Remove,
        (XenbusState::Initialised, true) => LunAction::Connect,
        _ => LunAction::None,
    }
}

/// The frontend's action for an entry whose backend `state` it read; `resumed`: after a
/// save/restore the devices exist already and only their state is written again.
pub fn front_action(state: XenbusState, resumed: bool) -> LunAction {
    match (state, resumed) {
        (XenbusState::Initialised, false) => LunAction::Add,
        (XenbusState::Closing, false) => LunAction::Remove,
        (XenbusState::Connected, true) => LunAction::Readd,
        _ => LunAction::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: u32, t: u32, l: u32) -> Hctl {
        Hctl {
            host: 0,
            channel: c,
            target: t,
            lun: l,
        }
    }

    #[test]
    fn duplicates_and_bounds_are_refused() {
        let mut t = LunTable::<2>::new();
        t.insert(0, h(0, 0, 0), None).unwrap();
        assert_eq!(
            t.insert(0, h(0, 1, 0), None),
            Err(LunError::DuplicateIndex(0))
        );
        assert_eq!(
            t.insert(1, h(0, 0, 0), None),
            Err(LunError::DuplicateAddress(h(0, 0, 0)))
        );
        assert_eq!(
            t.insert(1, h(0, 70000, 0), None),
            Err(LunError::AddressTooLarge(h(0, 70000, 0)))
        );
        t.insert(1, h(0, 1, 0), None).unwrap();
        assert_eq!(t.insert(2, h(0, 2, 0), None), Err(LunError::Full));
        let a = VAddr {
            channel: 0,
            id: 1,
            lun: 0,
        };
        assert_eq!(t.find(a), None, "inactive entries serve nothing");
        assert!(t.activate(1, true));
        assert_eq!(t.find(a), Some(1));
        assert_eq!(t.remove(1).map(|e| e.index), Some(1));
        assert_eq!(t.find(a), None);
    }

    #[test]
    fn hotplug_actions_follow_the_header() {
        assert_eq!(
            back_action(XenbusState::Initialising, false),
            LunAction::Add
        );
        assert_eq!(back_action(XenbusState::Closing, false), LunAction::Remove);
        assert_eq!(
            back_action(XenbusState::Initialised, true),
            LunAction::Connect
        );
        assert_eq!(
            back_action(XenbusState::Initialised, false),
            LunAction::None
        );
        assert_eq!(
            front_action(XenbusState::Initialised, false),
            LunAction::Add
        );
        assert_eq!(front_action(XenbusState::Closing, false), LunAction::Remove);
        assert_eq!(front_action(XenbusState::Connected, false), LunAction::None);
        assert_eq!(front_action(XenbusState::Connected, true), LunAction::Readd);
    }
}
