//! Disk names from `virtual-device`, as a Linux guest names its Xen disks (`xvda`, `xvdb`, ...,
//! `xvdz`, `xvdaa`, ...).
//!
//! The toolstack writes `virtual-device` as a number: `202 << 8 | index * 16` for `xvd` disks
//! 0-15 (major 202, 16 minors per disk), or `1 << 28 | index << 8` (the extended form, 256
//! minors per disk) beyond. The IDE (3, 22) and SCSI (8, 65-71) majors of emulated disks are
//! mapped to the same `xvd` indices as Linux does, so `hda` and `sda` both become `xvda`.

/// The extended-form flag.
const EXTENDED: u32 = 1 << 28;
/// Minors per disk in the classic `xvd` form.
const PARTS_PER_DISK: u32 = 16;
/// Minors per disk in the extended form.
const PARTS_PER_EXT_DISK: u32 = 256;

/// Why a `virtual-device` value names no disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VdevError {
    /// The number names a partition, not a whole disk.
    Partition(u32),
    /// A major we do not map.
    UnknownMajor(u32),
    /// The index is too large to name.
    TooLarge(u32),
}

/// The disk index (0 for `xvda`) of a `virtual-device` number.
pub fn disk_index(vdevice: u32) -> Result<u32, VdevError> {
    let (index, part) = if vdevice & EXTENDED != 0 {
        let minor = vdevice & !EXTENDED;
        (minor / PARTS_PER_EXT_DISK, minor % PARTS_PER_EXT_DISK)
    } else {
        let major = vdevice >> 8;
        let minor = vdevice & 0xff;
        match major {
            202 => (minor / PARTS_PER_DISK, minor % PARTS_PER_DISK),
            // IDE: hda/hdb on 3, hdc/hdd on 22, 64 minors each.
            3 => (minor / 64, minor % 64),
            22 => (2 + minor / 64, minor % 64),
            // SCSI: sda-sdp on 8, then 16 disks per major on 65-71.
            8 => (minor / 16, minor % 16),
            65..=71 => (16 * (major - 64) + minor / 16, minor % 16),
            m => return Err(VdevError::UnknownMajor(m)),
        }
    };
    if part != 0 {
        return Err(VdevError::Partition(vdevice));
    }
    if index >= 26 + 26 * 26 + 26 * 26 * 26 {
        return Err(VdevError::TooLarge(vdevice));
    }
    Ok(index)
}

/// A disk name: `xvd` and up to three letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskName {
    buf: [u8; 6],
    len: usize,
}

impl DiskName {
    /// The name for disk `index` (0 is `xvda`, 25 `xvdz`, 26 `xvdaa`), like `sd` names.
    pub fn new(index: u32) -> Result<DiskName, VdevError> {
        let mut letters = [0u8; 3];
        let mut n = 0usize;
        // Bijective base 26: a..z, aa..zz, aaa..zzz.
        let mut i = u64::from(index) + 1;
        while i > 0 {
            let slot = letters.get_mut(n).ok_or(VdevError::TooLarge(index))?;
            i -= 1;
            *slot = b'a' + (i % 26) as u8;
            i /= 26;
            n += 1;
        }
        let mut buf = [0u8; 6];
        buf[..3].copy_from_slice(b"xvd");
        for (k, l) in letters.iter().take(n).rev().enumerate() {
            if let Some(b) = buf.get_mut(3 + k) {
                *b = *l;
            }
        }
        Ok(DiskName { buf, len: 3 + n })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("xvd")
    }
}

/// Linux's major number for Xen virtual disks (`XENVBD_MAJOR`).
pub const XENVBD_MAJOR: u32 = 202;

/// The block device number Linux gives the disk: `(major, first minor, minors)`. Major 202;
/// 16 minors per disk (`first_minor = index * 16`) in the classic form, 256 in the extended
/// form (`first_minor = index * 256`), as Linux's frontend numbers them.
pub fn disk_devt(vdevice: u32) -> Result<(u32, u32, u32), VdevError> {
    let index = disk_index(vdevice)?;
    let per_disk = if vdevice & EXTENDED != 0 {
        PARTS_PER_EXT_DISK
    } else {
        PARTS_PER_DISK
    };
    let first = index
        .checked_mul(per_disk)
        .filter(|m| *m < 1 << 20)
        .ok_or(VdevError::TooLarge(vdevice))?;
    Ok((XENVBD_MAJOR, first, per_disk))
}

/// The name of the disk a `virtual-device` value describes.
pub fn disk_name(vdevice: u32) -> Result<DiskName, VdevError> {
    DiskName::new(disk_index(vdevice)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(v: u32) -> String {
        disk_name(v)
            .map(|n| n.as_str().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn xl_vdev_numbers_name_like_linux() {
        // What xl writes for vdev=xvda, xvdb, xvdp.
        assert_eq!(name(51712), "xvda");
        assert_eq!(name(51728), "xvdb");
        assert_eq!(name((202 << 8) | (15 * 16)), "xvdp");
        // xvdq and beyond use the extended form.
        assert_eq!(name(EXTENDED | (16 << 8)), "xvdq");
        assert_eq!(name(EXTENDED | (25 << 8)), "xvdz");
        assert_eq!(name(EXTENDED | (26 << 8)), "xvdaa");
        assert_eq!(name(EXTENDED | (701 << 8)), "xvdzz");
        assert_eq!(name(EXTENDED | (702 << 8)), "xvdaaa");
    }

    #[test]
    fn emulated_majors_map_to_xvd() {
        assert_eq!(name(3 << 8), "xvda"); // hda
        assert_eq!(name((3 << 8) | 64), "xvdb"); // hdb
        assert_eq!(name(22 << 8), "xvdc"); // hdc
        assert_eq!(name((8 << 8) | 16), "xvdb"); // sdb
        assert_eq!(name(65 << 8), "xvdq"); // sdq
    }

    #[test]
    fn device_numbers_are_linux_xvd_numbers() {
        assert_eq!(disk_devt(51712), Ok((202, 0, 16))); // xvda: 202:0
        assert_eq!(disk_devt(51728), Ok((202, 16, 16))); // xvdb: 202:16
        assert_eq!(disk_devt(EXTENDED | (16 << 8)), Ok((202, 16 * 256, 256))); // xvdq
        assert_eq!(disk_devt((8 << 8) | 16), Ok((202, 16, 16))); // sdb maps to xvdb
    }

    #[test]
    fn partitions_and_unknown_majors_are_refused() {
        assert_eq!(disk_index(51713), Err(VdevError::Partition(51713)));
        assert_eq!(disk_index(9 << 8), Err(VdevError::UnknownMajor(9)));
        assert!(disk_index(EXTENDED | 0x0fff_ff00).is_err());
    }
}
