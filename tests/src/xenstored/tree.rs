//! The XenStore tree: nodes with values, permissions and versions, and the access rules.
//!
//! Permissions follow xenstored: the first entry of a node's list names its owner (who may do
//! anything) and the access everybody else gets; later entries grant access to named domains.
//! Dom0 may do anything. A new node inherits its parent's list, with the creating domain as
//! owner unless it is dom0. Every modification gives the node a fresh version from a global
//! counter, and adding or removing a child gives the parent one too, which is what
//! transactions compare to detect conflicts.

use std::collections::{BTreeSet, HashMap};
use xen_core::xs::{Access, Errno, Perm};
use xen_sys::DomId;

/// Largest value an unprivileged domain may store (`quota-max-entry-size`).
pub const VALUE_MAX: usize = 2048;

/// Nodes an unprivileged domain may own (`quota-max-entries`).
pub const NODES_PER_DOMAIN: usize = 1000;

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) value: Vec<u8>,
    pub(crate) perms: Vec<Perm>,
    pub(crate) version: u64,
    pub(crate) children: BTreeSet<String>,
}

/// What a modification did, for watches.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// The node written, created or removed.
    pub(crate) path: String,
    /// Its permissions (before removal, for a removal): who may see the event.
    pub(crate) perms: Vec<Perm>,
    /// Whether the node and its subtree were removed.
    pub(crate) removed: bool,
}

/// The parent of an absolute path other than `/`.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn leaf(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

/// Whether `path` is `base` or below it.
pub(crate) fn is_under(path: &str, base: &str) -> bool {
    if base == "/" {
        return path.starts_with('/');
    }
    path == base
        || (path.len() > base.len()
            && path.starts_with(base)
            && path.as_bytes()[base.len()] == b'/')
}

/// The access `dom` has under `perms`.
pub(crate) fn access(dom: DomId, perms: &[Perm]) -> Access {
    if dom == DomId::DOM0 {
        return Access::Both;
    }
    let Some(owner) = perms.first() else {
        return Access::None;
    };
    if owner.domid == dom {
        return Access::Both;
    }
    perms
        .iter()
        .skip(1)
        .find(|p| p.domid == dom)
        .map_or(owner.access, |p| p.access)
}

pub(crate) fn can_read(dom: DomId, perms: &[Perm]) -> bool {
    matches!(access(dom, perms), Access::Read | Access::Both)
}

fn can_write(dom: DomId, perms: &[Perm]) -> bool {
    matches!(access(dom, perms), Access::Write | Access::Both)
}

/// The whole store. Cloned whole for a transaction's snapshot.
#[derive(Clone, Debug)]
pub(crate) struct Tree {
    nodes: HashMap<String, Node>,
}

impl Tree {
    pub(crate) fn new() -> Tree {
        let mut nodes = HashMap::new();
        nodes.insert(
            "/".to_string(),
            Node {
                value: Vec::new(),
                perms: vec![Perm {
                    access: Access::None,
                    domid: DomId::DOM0,
                }],
                version: 0,
                children: BTreeSet::new(),
            },
        );
        Tree { nodes }
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub(crate) fn version(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.version)
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    fn owned_by(&self, dom: DomId) -> usize {
        self.nodes
            .values()
            .filter(|n| n.perms.first().is_some_and(|p| p.domid == dom))
            .count()
    }

    /// The paths a write or mkdir of `path` touches: the path, the missing ancestors, and the
    /// nearest existing ancestor (whose child list changes).
    pub(crate) fn create_footprint(&self, path: &str) -> Vec<String> {
        let mut out = vec![path.to_string()];
        let mut p = path;
        while !self.nodes.contains_key(p) {
            match parent(p) {
                Some(up) => {
                    out.push(up.to_string());
                    p = up;
                }
                None => break,
            }
        }
        out
    }

    fn node(&self, dom: DomId, path: &str, check: bool) -> Result<&Node, Errno> {
        let node = self.nodes.get(path).ok_or(Errno::Enoent)?;
        if check && !can_read(dom, &node.perms) {
            return Err(Errno::Eacces);
        }
        Ok(node)
    }

    pub(crate) fn read(&self, dom: DomId, path: &str) -> Result<&[u8], Errno> {
        Ok(&self.node(dom, path, true)?.value)
    }

    pub(crate) fn directory(
        &self,
        dom: DomId,
        path: &str,
    ) -> Result<(&BTreeSet<String>, u64), Errno> {
        let node = self.node(dom, path, true)?;
        Ok((&node.children, node.version))
    }

    pub(crate) fn get_perms(&self, dom: DomId, path: &str) -> Result<&[Perm], Errno> {
        Ok(&self.node(dom, path, true)?.perms)
    }

    /// Creates `path` and missing ancestors; `Ok(false)` if it already existed.
    fn create(
        &mut self,
        dom: DomId,
        path: &str,
        check: bool,
        gen: &mut u64,
    ) -> Result<bool, Errno> {
        if self.nodes.contains_key(path) {
            return Ok(false);
        }
        let mut missing = vec![path.to_string()];
        let mut existing = parent(path).ok_or(Errno::Einval)?;
        while !self.nodes.contains_key(existing) {
            missing.push(existing.to_string());
            existing = parent(existing).ok_or(Errno::Einval)?;
        }
        let base = self.nodes.get(existing).ok_or(Errno::Enoent)?;
        if check && !can_write(dom, &base.perms) {
            return Err(Errno::Eacces);
        }
        if check && dom != DomId::DOM0 && self.owned_by(dom) + missing.len() > NODES_PER_DOMAIN {
            return Err(Errno::Enospc);
        }
        for m in missing.iter().rev() {
            let up = parent(m).ok_or(Errno::Einval)?;
            *gen += 1;
            let version = *gen;
            let parent_node = self.nodes.get_mut(up).ok_or(Errno::Enoent)?;
            let mut perms = parent_node.perms.clone();
            if dom != DomId::DOM0 {
                if let Some(owner) = perms.first_mut() {
                    owner.domid = dom;
                }
            }
            parent_node.children.insert(leaf(m).to_string());
            parent_node.version = version;
            self.nodes.insert(
                m.clone(),
                Node {
                    value: Vec::new(),
                    perms,
                    version,
                    children: BTreeSet::new(),
                },
            );
        }
        Ok(true)
    }

    pub(crate) fn write(
        &mut self,
        dom: DomId,
        path: &str,
        value: &[u8],
        check: bool,
        gen: &mut u64,
    ) -> Result<Change, Errno> {
        if check && dom != DomId::DOM0 && value.len() > VALUE_MAX {
            return Err(Errno::Enospc);
        }
        if let Some(node) = self.nodes.get(path) {
            if check && !can_write(dom, &node.perms) {
                return Err(Errno::Eacces);
            }
        } else {
            self.create(dom, path, check, gen)?;
        }
        *gen += 1;
        let node = self.nodes.get_mut(path).ok_or(Errno::Enoent)?;
        node.value = value.to_vec();
        node.version = *gen;
        Ok(Change {
            path: path.to_string(),
            perms: node.perms.clone(),
            removed: false,
        })
    }

    pub(crate) fn mkdir(
        &mut self,
        dom: DomId,
        path: &str,
        check: bool,
        gen: &mut u64,
    ) -> Result<Option<Change>, Errno> {
        if !self.create(dom, path, check, gen)? {
            return Ok(None);
        }
        let node = self.nodes.get(path).ok_or(Errno::Enoent)?;
        Ok(Some(Change {
            path: path.to_string(),
            perms: node.perms.clone(),
            removed: false,
        }))
    }

    pub(crate) fn rm(
        &mut self,
        dom: DomId,
        path: &str,
        check: bool,
        gen: &mut u64,
    ) -> Result<Option<Change>, Errno> {
        let up = parent(path).ok_or(Errno::Einval)?;
        let Some(node) = self.nodes.get(path) else {
            // Removing a missing node under an existing parent succeeds, as in xenstored.
            return if self.nodes.contains_key(up) {
                Ok(None)
            } else {
                Err(Errno::Enoent)
            };
        };
        if check && !can_write(dom, &node.perms) {
            return Err(Errno::Eacces);
        }
        let perms = node.perms.clone();
        let mut stack = vec![path.to_string()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.nodes.remove(&p) {
                for child in n.children {
                    stack.push(format!("{p}/{child}"));
                }
            }
        }
        *gen += 1;
        if let Some(parent_node) = self.nodes.get_mut(up) {
            parent_node.children.remove(leaf(path));
            parent_node.version = *gen;
        }
        Ok(Some(Change {
            path: path.to_string(),
            perms,
            removed: true,
        }))
    }

    pub(crate) fn set_perms(
        &mut self,
        dom: DomId,
        path: &str,
        perms: &[Perm],
        check: bool,
        gen: &mut u64,
    ) -> Result<Change, Errno> {
        let node = self.nodes.get_mut(path).ok_or(Errno::Enoent)?;
        let new_owner = perms.first().ok_or(Errno::Einval)?.domid;
        if check && dom != DomId::DOM0 {
            let owner = node.perms.first().map(|p| p.domid);
            if owner != Some(dom) {
                return Err(Errno::Eacces);
            }
            if new_owner != dom {
                return Err(Errno::Eperm);
            }
        }
        *gen += 1;
        node.perms = perms.to_vec();
        node.version = *gen;
        Ok(Change {
            path: path.to_string(),
            perms: node.perms.clone(),
            removed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(access: Access, dom: u16) -> Perm {
        Perm {
            access,
            domid: DomId::new(dom),
        }
    }

    #[test]
    fn unprivileged_domain_cannot_write_outside_its_home() {
        let mut t = Tree::new();
        let mut gen = 0;
        let home = "/local/domain/1";
        t.mkdir(DomId::DOM0, home, false, &mut gen).unwrap();
        t.set_perms(DomId::DOM0, home, &[perm(Access::None, 1)], false, &mut gen)
            .unwrap();
        let d1 = DomId::new(1);
        assert!(t
            .write(d1, "/local/domain/1/x", b"v", true, &mut gen)
            .is_ok());
        assert_eq!(
            t.write(d1, "/local/domain/2/x", b"v", true, &mut gen)
                .unwrap_err(),
            Errno::Eacces
        );
        assert_eq!(
            t.write(d1, "/tool", b"v", true, &mut gen).unwrap_err(),
            Errno::Eacces
        );
        // The new node is owned by its creator, so domain 2 cannot read it.
        assert_eq!(
            t.read(DomId::new(2), "/local/domain/1/x").unwrap_err(),
            Errno::Eacces
        );
        assert_eq!(t.read(DomId::DOM0, "/local/domain/1/x").unwrap(), b"v");
    }

    #[test]
    fn creation_bumps_parent_version() {
        let mut t = Tree::new();
        let mut gen = 0;
        t.mkdir(DomId::DOM0, "/a", false, &mut gen).unwrap();
        let before = t.version("/a").unwrap();
        t.write(DomId::DOM0, "/a/b", b"1", false, &mut gen).unwrap();
        assert!(t.version("/a").unwrap() > before);
        let after = t.version("/a").unwrap();
        t.write(DomId::DOM0, "/a/b", b"2", false, &mut gen).unwrap();
        assert_eq!(
            t.version("/a").unwrap(),
            after,
            "rewriting a child is not a list change"
        );
        t.rm(DomId::DOM0, "/a", false, &mut gen).unwrap();
        assert!(t.get("/a/b").is_none());
    }

    #[test]
    fn is_under_respects_component_boundaries() {
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/x", "/"));
    }
}
