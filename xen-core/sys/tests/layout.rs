//! Checks xen-sys against the C compiler: every size, field offset and constant we rely on.
//!
//! The test writes a C program that includes the same Xen headers as the bindings
//! (`wrapper.h`, same `__XEN_INTERFACE_VERSION__`) and prints one C expression per check
//! (`sizeof`, `_Alignof`, `offsetof`, a macro's value). It compiles it with `$CC` (default
//! `cc`), runs it, and compares each printed value with the Rust value of the same thing: the
//! bindgen type's, our wire struct's, our enum's. Every mismatch is reported; a failed
//! compile or run, or a missing line, fails the test.

use core::mem::{align_of, offset_of, size_of, size_of_val};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use xen_sys::bindings as b;
use xen_sys::wire::{blkif, grant, netif, ring, vscsiif, xenstore};
use xen_sys::{DomId, GrantRef, XenbusState};

/// One comparison: a C expression and the value Rust believes it has.
struct Check {
    what: String,
    c_expr: String,
    rust: i128,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        what: impl Into<String>,
        c_expr: impl Into<String>,
        rust: impl TryInto<i128>,
    ) {
        let rust = rust
            .try_into()
            .unwrap_or_else(|_| panic!("value out of i128 range"));
        self.0.push(Check {
            what: what.into(),
            c_expr: c_expr.into(),
            rust,
        });
    }
}

/// The size of a field of a bindgen struct, named by a projection.
fn field_size<C, F>(_project: fn(&C) -> &F) -> usize {
    size_of::<F>()
}

/// Size, alignment, and each field's offset and size, of a bindgen type against C.
macro_rules! bindgen_struct {
    ($v:expr, $c:literal, $bind:ty, [$($bf:ident = $cf:literal),* $(,)?]) => {{
        $v.add(concat!("size of bindings::", stringify!($bind)), concat!("sizeof(", $c, ")"), size_of::<$bind>());
        $v.add(concat!("align of bindings::", stringify!($bind)), concat!("_Alignof(", $c, ")"), align_of::<$bind>());
        $(
            $v.add(
                concat!("offset of bindings::", stringify!($bind), ".", stringify!($bf)),
                concat!("offsetof(", $c, ", ", $cf, ")"),
                offset_of!($bind, $bf),
            );
            $v.add(
                concat!("size of bindings::", stringify!($bind), ".", stringify!($bf)),
                concat!("sizeof(((", $c, " *)0)->", $cf, ")"),
                field_size(|s: &$bind| &s.$bf),
            );
        )*
    }};
}

/// Size and alignment of a bindgen union, and the size of each member (offsets are 0).
macro_rules! bindgen_union {
    ($v:expr, $c:literal, $bind:ty, [$($cf:literal: $fty:ty),* $(,)?]) => {{
        $v.add(concat!("size of bindings::", stringify!($bind)), concat!("sizeof(", $c, ")"), size_of::<$bind>());
        $v.add(concat!("align of bindings::", stringify!($bind)), concat!("_Alignof(", $c, ")"), align_of::<$bind>());
        $(
            $v.add(
                concat!("size of bindings::", stringify!($bind), ".", $cf),
                concat!("sizeof(((", $c, " *)0)->", $cf, ")"),
                size_of::<$fty>(),
            );
            $v.add(
                concat!("offset of bindings::", stringify!($bind), ".", $cf),
                concat!("offsetof(", $c, ", ", $cf, ")"),
                0,
            );
        )*
    }};
}

/// The same for one of our wire structs, whose fields are named differently from C.
macro_rules! wire_struct {
    ($v:expr, $c:literal, $ours:ty, [$($of:ident = $cf:literal),* $(,)?]) => {{
        $v.add(concat!("size of ", stringify!($ours)), concat!("sizeof(", $c, ")"), size_of::<$ours>());
        $v.add(concat!("SIZE of ", stringify!($ours)), concat!("sizeof(", $c, ")"), <$ours>::SIZE);
        $(
            $v.add(
                concat!("offset of ", stringify!($ours), ".", stringify!($of)),
                concat!("offsetof(", $c, ", ", $cf, ")"),
                offset_of!($ours, $of),
            );
            $v.add(
                concat!("size of ", stringify!($ours), ".", stringify!($of)),
                concat!("sizeof(((", $c, " *)0)->", $cf, ")"),
                size_of_val(&<$ours>::ZERO.$of),
            );
        )*
    }};
}

/// Our values of C macros and enumerators.
macro_rules! consts {
    ($v:expr, [$($c:literal => $rust:expr),* $(,)?]) => {{
        $( $v.add(concat!("value of ", stringify!($rust)), $c, $rust); )*
    }};
}

fn wire_checks(v: &mut Checks) {
    // Ours, with their alignment (the ring copies slots as these types).
    v.add(
        "align of blkif::Request",
        "_Alignof(struct blkif_request)",
        align_of::<blkif::Request>(),
    );
    v.add(
        "align of netif::ExtraInfo",
        "_Alignof(struct netif_extra_info)",
        align_of::<netif::ExtraInfo>(),
    );
    v.add(
        "align of vscsiif::Request",
        "_Alignof(struct vscsiif_request)",
        align_of::<vscsiif::Request>(),
    );

    wire_struct!(
        v,
        "struct blkif_request_segment",
        blkif::Segment,
        [
            gref = "gref",
            first_sect = "first_sect",
            last_sect = "last_sect"
        ]
    );
    wire_struct!(
        v,
        "struct blkif_request",
        blkif::Request,
        [
            operation = "operation",
            nr_segments = "nr_segments",
            handle = "handle",
            id = "id",
            sector_number = "sector_number",
            seg = "seg",
        ]
    );
    wire_struct!(
        v,
        "struct blkif_request_discard",
        blkif::DiscardRequest,
        [
            operation = "operation",
            flag = "flag",
            handle = "handle",
            id = "id",
            sector_number = "sector_number",
            nr_sectors = "nr_sectors",
        ]
    );
    wire_struct!(
        v,
        "struct blkif_request_indirect",
        blkif::IndirectRequest,
        [
            operation = "operation",
            indirect_op = "indirect_op",
            nr_segments = "nr_segments",
            id = "id",
            sector_number = "sector_number",
            handle = "handle",
            indirect_grefs = "indirect_grefs",
        ]
    );
    wire_struct!(
        v,
        "struct blkif_response",
        blkif::Response,
        [id = "id", operation = "operation", status = "status"]
    );

    wire_struct!(
        v,
        "struct netif_tx_request",
        netif::TxRequest,
        [
            gref = "gref",
            offset = "offset",
            flags = "flags",
            id = "id",
            size = "size",
        ]
    );
    wire_struct!(
        v,
        "struct netif_tx_response",
        netif::TxResponse,
        [id = "id", status = "status"]
    );
    wire_struct!(
        v,
        "struct netif_rx_request",
        netif::RxRequest,
        [id = "id", gref = "gref"]
    );
    wire_struct!(
        v,
        "struct netif_rx_response",
        netif::RxResponse,
        [
            id = "id",
            offset = "offset",
            flags = "flags",
            status = "status",
        ]
    );
    wire_struct!(
        v,
        "struct netif_extra_info",
        netif::ExtraInfo,
        [ty = "type", flags = "flags", u = "u"]
    );
    wire_struct!(
        v,
        "struct xen_netif_ctrl_request",
        netif::CtrlRequest,
        [id = "id", ty = "type", data = "data"]
    );
    wire_struct!(
        v,
        "struct xen_netif_ctrl_response",
        netif::CtrlResponse,
        [id = "id", ty = "type", status = "status", data = "data"]
    );
    v.add(
        "align of netif::CtrlRequest",
        "_Alignof(struct xen_netif_ctrl_request)",
        align_of::<netif::CtrlRequest>(),
    );
    v.add(
        "align of netif::CtrlResponse",
        "_Alignof(struct xen_netif_ctrl_response)",
        align_of::<netif::CtrlResponse>(),
    );
    // The union members, through our accessors: a slot whose byte i is i shows at which
    // offset each accessor reads.
    let e = netif::ExtraInfo::from_bytes(&[0, 1, 2, 3, 4, 5, 6, 7]);
    consts!(v, [
        "offsetof(struct netif_extra_info, u.gso.size)" => e.gso_size().to_ne_bytes()[0],
        "offsetof(struct netif_extra_info, u.gso.type)" => e.gso_type(),
        "offsetof(struct netif_extra_info, u.gso.features)" => e.gso_features().to_ne_bytes()[0],
        "offsetof(struct netif_extra_info, u.mcast.addr)" => e.mcast_addr()[0],
        "offsetof(struct netif_extra_info, u.hash.type)" => e.hash_type(),
        "offsetof(struct netif_extra_info, u.hash.algorithm)" => e.hash_algorithm(),
        "offsetof(struct netif_extra_info, u.hash.value)" => e.hash_value()[0],
        "sizeof(((struct netif_extra_info *)0)->u.hash.value)" => e.hash_value().len(),
    ]);
    let g = netif::ExtraInfo::gso(
        0x1234,
        netif::GsoType::Tcpv4,
        0x5678,
        netif::ExtraFlags::MORE,
    );
    let gb = g.to_bytes();
    consts!(v, [
        "offsetof(struct netif_extra_info, u.gso.size)" => find(&gb, &0x1234u16.to_ne_bytes()),
        "offsetof(struct netif_extra_info, u.gso.features)" => find(&gb, &0x5678u16.to_ne_bytes()),
    ]);

    wire_struct!(
        v,
        "struct scsiif_request_segment",
        vscsiif::Segment,
        [gref = "gref", offset = "offset", length = "length"]
    );
    wire_struct!(
        v,
        "struct vscsiif_request",
        vscsiif::Request,
        [
            rqid = "rqid",
            act = "act",
            cmd_len = "cmd_len",
            cmnd = "cmnd",
            timeout_per_command = "timeout_per_command",
            channel = "channel",
            id = "id",
            lun = "lun",
            ref_rqid = "ref_rqid",
            sc_data_direction = "sc_data_direction",
            nr_segments = "nr_segments",
            seg = "seg",
        ]
    );
    wire_struct!(
        v,
        "struct vscsiif_response",
        vscsiif::Response,
        [
            rqid = "rqid",
            act = "act",
            sense_len = "sense_len",
            sense_buffer = "sense_buffer",
            rslt = "rslt",
            residual_len = "residual_len",
        ]
    );

    wire_struct!(
        v,
        "struct xsd_sockmsg",
        xenstore::MsgHeader,
        [ty = "type", req_id = "req_id", tx_id = "tx_id", len = "len"]
    );
    wire_struct!(
        v,
        "struct grant_entry_v1",
        grant::EntryV1,
        [flags = "flags", domid = "domid", frame = "frame"]
    );

    // The ring header, for every ring we speak.
    for sring in [
        "struct blkif_sring",
        "struct netif_tx_sring",
        "struct netif_rx_sring",
        "struct xen_netif_ctrl_sring",
        "struct vscsiif_sring",
    ] {
        v.add(
            format!("HEADER_SIZE for {sring}"),
            format!("offsetof({sring}, ring)"),
            ring::HEADER_SIZE,
        );
        for (field, ours) in [
            ("req_prod", offset_of!(ring::Header, req_prod)),
            ("req_event", offset_of!(ring::Header, req_event)),
            ("rsp_prod", offset_of!(ring::Header, rsp_prod)),
            ("rsp_event", offset_of!(ring::Header, rsp_event)),
            ("pvt", offset_of!(ring::Header, pvt)),
        ] {
            v.add(
                format!("ring::Header.{field} in {sring}"),
                format!("offsetof({sring}, {field})"),
                ours,
            );
        }
    }
    // One slot holds a request or a response: the slot size is the larger.
    consts!(v, [
        "sizeof(union blkif_sring_entry)" => blkif::Request::SIZE.max(blkif::Response::SIZE),
        "sizeof(union netif_tx_sring_entry)" => netif::TxRequest::SIZE.max(netif::TxResponse::SIZE),
        "sizeof(union netif_rx_sring_entry)" => netif::RxRequest::SIZE.max(netif::RxResponse::SIZE),
        "sizeof(union xen_netif_ctrl_sring_entry)" => netif::CtrlRequest::SIZE.max(netif::CtrlResponse::SIZE),
        "sizeof(union vscsiif_sring_entry)" => vscsiif::Request::SIZE.max(vscsiif::Response::SIZE),
        // REFERENCE.md's geometry: slots per one-page ring.
        "__CONST_RING_SIZE(blkif, 4096)" => 32,
        "__CONST_RING_SIZE(netif_tx, 4096)" => 256,
        "__CONST_RING_SIZE(netif_rx, 4096)" => 256,
        "__CONST_RING_SIZE(xen_netif_ctrl, 4096)" => 128,
        "__CONST_RING_SIZE(vscsiif, 4096)" => 16,
    ]);

    // The XenStore shared page.
    consts!(v, [
        "offsetof(struct xenstore_domain_interface, req)" => xenstore::interface::REQ,
        "offsetof(struct xenstore_domain_interface, rsp)" => xenstore::interface::RSP,
        "offsetof(struct xenstore_domain_interface, req_cons)" => xenstore::interface::REQ_CONS,
        "offsetof(struct xenstore_domain_interface, req_prod)" => xenstore::interface::REQ_PROD,
        "offsetof(struct xenstore_domain_interface, rsp_cons)" => xenstore::interface::RSP_CONS,
        "offsetof(struct xenstore_domain_interface, rsp_prod)" => xenstore::interface::RSP_PROD,
        "offsetof(struct xenstore_domain_interface, server_features)" => xenstore::interface::SERVER_FEATURES,
        "offsetof(struct xenstore_domain_interface, connection)" => xenstore::interface::CONNECTION,
        "offsetof(struct xenstore_domain_interface, error)" => xenstore::interface::ERROR,
        "sizeof(struct xenstore_domain_interface)" => xenstore::interface::SIZE,
    ]);
}

/// The offset of `needle` in `haystack` (or the length if absent, which will not match C).
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or(haystack.len())
}

fn bindgen_checks(v: &mut Checks) {
    bindgen_struct!(
        v,
        "struct grant_entry_v1",
        b::grant_entry_v1,
        [flags = "flags", domid = "domid", frame = "frame"]
    );
    bindgen_struct!(
        v,
        "struct gnttab_map_grant_ref",
        b::gnttab_map_grant_ref,
        [
            host_addr = "host_addr",
            flags = "flags",
            ref_ = "ref",
            dom = "dom",
            status = "status",
            handle = "handle",
            dev_bus_addr = "dev_bus_addr",
        ]
    );
    bindgen_struct!(
        v,
        "struct gnttab_unmap_grant_ref",
        b::gnttab_unmap_grant_ref,
        [
            host_addr = "host_addr",
            dev_bus_addr = "dev_bus_addr",
            handle = "handle",
            status = "status",
        ]
    );
    bindgen_struct!(
        v,
        "struct gnttab_setup_table",
        b::gnttab_setup_table,
        [
            dom = "dom",
            nr_frames = "nr_frames",
            status = "status",
            frame_list = "frame_list",
        ]
    );
    bindgen_struct!(
        v,
        "struct gnttab_copy",
        b::gnttab_copy,
        [
            source = "source",
            dest = "dest",
            len = "len",
            flags = "flags",
            status = "status",
        ]
    );
    bindgen_struct!(
        v,
        "struct gnttab_copy_ptr",
        b::gnttab_copy_gnttab_copy_ptr,
        [u = "u", domid = "domid", offset = "offset"]
    );
    bindgen_struct!(
        v,
        "struct gnttab_query_size",
        b::gnttab_query_size,
        [
            dom = "dom",
            nr_frames = "nr_frames",
            max_nr_frames = "max_nr_frames",
            status = "status",
        ]
    );
    bindgen_struct!(
        v,
        "struct evtchn_alloc_unbound",
        b::evtchn_alloc_unbound,
        [dom = "dom", remote_dom = "remote_dom", port = "port"]
    );
    bindgen_struct!(
        v,
        "struct evtchn_bind_interdomain",
        b::evtchn_bind_interdomain,
        [
            remote_dom = "remote_dom",
            remote_port = "remote_port",
            local_port = "local_port"
        ]
    );
    bindgen_struct!(
        v,
        "struct evtchn_bind_virq",
        b::evtchn_bind_virq,
        [virq = "virq", vcpu = "vcpu", port = "port"]
    );
    bindgen_struct!(v, "struct evtchn_close", b::evtchn_close, [port = "port"]);
    bindgen_struct!(v, "struct evtchn_send", b::evtchn_send, [port = "port"]);
    bindgen_struct!(v, "struct evtchn_unmask", b::evtchn_unmask, [port = "port"]);
    bindgen_struct!(
        v,
        "struct evtchn_status",
        b::evtchn_status,
        [
            dom = "dom",
            port = "port",
            status = "status",
            vcpu = "vcpu",
            u = "u"
        ]
    );
    bindgen_struct!(
        v,
        "struct xen_memory_reservation",
        b::xen_memory_reservation,
        [
            extent_start = "extent_start",
            nr_extents = "nr_extents",
            extent_order = "extent_order",
            mem_flags = "mem_flags",
            domid = "domid",
        ]
    );
    bindgen_struct!(
        v,
        "struct xen_add_to_physmap",
        b::xen_add_to_physmap,
        [
            domid = "domid",
            size = "size",
            space = "space",
            idx = "idx",
            gpfn = "gpfn"
        ]
    );

    bindgen_struct!(
        v,
        "struct blkif_request_segment",
        b::blkif_request_segment,
        [
            gref = "gref",
            first_sect = "first_sect",
            last_sect = "last_sect"
        ]
    );
    bindgen_struct!(
        v,
        "struct blkif_request",
        b::blkif_request,
        [
            operation = "operation",
            nr_segments = "nr_segments",
            handle = "handle",
            id = "id",
            sector_number = "sector_number",
            seg = "seg",
        ]
    );
    bindgen_struct!(
        v,
        "struct blkif_request_discard",
        b::blkif_request_discard,
        [
            operation = "operation",
            flag = "flag",
            handle = "handle",
            id = "id",
            sector_number = "sector_number",
            nr_sectors = "nr_sectors",
        ]
    );
    bindgen_struct!(
        v,
        "struct blkif_request_indirect",
        b::blkif_request_indirect,
        [
            operation = "operation",
            indirect_op = "indirect_op",
            nr_segments = "nr_segments",
            id = "id",
            sector_number = "sector_number",
            handle = "handle",
            indirect_grefs = "indirect_grefs",
        ]
    );
    bindgen_struct!(
        v,
        "struct blkif_response",
        b::blkif_response,
        [id = "id", operation = "operation", status = "status"]
    );
    bindgen_union!(v, "union blkif_sring_entry", b::blkif_sring_entry,
        ["req": b::blkif_request, "rsp": b::blkif_response]);
    bindgen_struct!(
        v,
        "struct blkif_sring",
        b::blkif_sring,
        [
            req_prod = "req_prod",
            req_event = "req_event",
            rsp_prod = "rsp_prod",
            rsp_event = "rsp_event",
            pvt = "pvt",
            __pad = "__pad",
            ring = "ring",
        ]
    );

    bindgen_struct!(
        v,
        "struct netif_tx_request",
        b::netif_tx_request,
        [
            gref = "gref",
            offset = "offset",
            flags = "flags",
            id = "id",
            size = "size",
        ]
    );
    bindgen_struct!(
        v,
        "struct netif_tx_response",
        b::netif_tx_response,
        [id = "id", status = "status"]
    );
    bindgen_struct!(
        v,
        "struct netif_rx_request",
        b::netif_rx_request,
        [id = "id", pad = "pad", gref = "gref"]
    );
    bindgen_struct!(
        v,
        "struct netif_rx_response",
        b::netif_rx_response,
        [
            id = "id",
            offset = "offset",
            flags = "flags",
            status = "status",
        ]
    );
    bindgen_struct!(
        v,
        "struct netif_extra_info",
        b::netif_extra_info,
        [type_ = "type", flags = "flags", u = "u"]
    );
    bindgen_union!(v, "union netif_tx_sring_entry", b::netif_tx_sring_entry,
        ["req": b::netif_tx_request, "rsp": b::netif_tx_response]);
    bindgen_union!(v, "union netif_rx_sring_entry", b::netif_rx_sring_entry,
        ["req": b::netif_rx_request, "rsp": b::netif_rx_response]);
    bindgen_struct!(
        v,
        "struct netif_tx_sring",
        b::netif_tx_sring,
        [
            req_prod = "req_prod",
            rsp_event = "rsp_event",
            pvt = "pvt",
            ring = "ring"
        ]
    );
    bindgen_struct!(
        v,
        "struct netif_rx_sring",
        b::netif_rx_sring,
        [
            req_prod = "req_prod",
            rsp_event = "rsp_event",
            pvt = "pvt",
            ring = "ring"
        ]
    );
    bindgen_struct!(
        v,
        "struct xen_netif_ctrl_request",
        b::xen_netif_ctrl_request,
        [id = "id", type_ = "type", data = "data"]
    );
    bindgen_struct!(
        v,
        "struct xen_netif_ctrl_response",
        b::xen_netif_ctrl_response,
        [id = "id", type_ = "type", status = "status", data = "data"]
    );
    bindgen_union!(v, "union xen_netif_ctrl_sring_entry", b::xen_netif_ctrl_sring_entry,
        ["req": b::xen_netif_ctrl_request, "rsp": b::xen_netif_ctrl_response]);
    bindgen_struct!(
        v,
        "struct xen_netif_ctrl_sring",
        b::xen_netif_ctrl_sring,
        [
            req_prod = "req_prod",
            rsp_event = "rsp_event",
            pvt = "pvt",
            ring = "ring"
        ]
    );

    bindgen_struct!(
        v,
        "struct scsiif_request_segment",
        b::scsiif_request_segment,
        [gref = "gref", offset = "offset", length = "length"]
    );
    bindgen_struct!(
        v,
        "struct vscsiif_request",
        b::vscsiif_request,
        [
            rqid = "rqid",
            act = "act",
            cmd_len = "cmd_len",
            cmnd = "cmnd",
            timeout_per_command = "timeout_per_command",
            channel = "channel",
            id = "id",
            lun = "lun",
            ref_rqid = "ref_rqid",
            sc_data_direction = "sc_data_direction",
            nr_segments = "nr_segments",
            seg = "seg",
            reserved = "reserved",
        ]
    );
    bindgen_struct!(
        v,
        "struct vscsiif_response",
        b::vscsiif_response,
        [
            rqid = "rqid",
            act = "act",
            sense_len = "sense_len",
            sense_buffer = "sense_buffer",
            rslt = "rslt",
            residual_len = "residual_len",
            reserved = "reserved",
        ]
    );
    bindgen_union!(v, "union vscsiif_sring_entry", b::vscsiif_sring_entry,
        ["req": b::vscsiif_request, "rsp": b::vscsiif_response]);
    bindgen_struct!(
        v,
        "struct vscsiif_sring",
        b::vscsiif_sring,
        [
            req_prod = "req_prod",
            rsp_event = "rsp_event",
            pvt = "pvt",
            ring = "ring"
        ]
    );

    bindgen_struct!(
        v,
        "struct xsd_sockmsg",
        b::xsd_sockmsg,
        [
            type_ = "type",
            req_id = "req_id",
            tx_id = "tx_id",
            len = "len"
        ]
    );
    bindgen_struct!(
        v,
        "struct xenstore_domain_interface",
        b::xenstore_domain_interface,
        [
            req = "req",
            rsp = "rsp",
            req_cons = "req_cons",
            req_prod = "req_prod",
            rsp_cons = "rsp_cons",
            rsp_prod = "rsp_prod",
            server_features = "server_features",
            connection = "connection",
            error = "error",
        ]
    );
}

fn const_checks(v: &mut Checks) {
    use blkif::{DiscardFlags, Op, Status, VdiskInfo};
    use grant::GrantFlags;
    use netif::{
        CtrlStatus, CtrlType, ExtraFlags, ExtraType, GsoType, HashAlgorithm, HashFlags, NetRxFlags,
        NetTxFlags,
    };
    use vscsiif::Act;
    use xenstore::MsgType;

    consts!(v, [
        "DOMID_FIRST_RESERVED" => DomId::FIRST_RESERVED,
        "DOMID_SELF" => DomId::SELF.raw(),
        "DOMID_IO" => DomId::IO.raw(),
        "DOMID_XEN" => DomId::XEN.raw(),
        "DOMID_COW" => DomId::COW.raw(),
        "DOMID_INVALID" => DomId::INVALID.raw(),
        "DOMID_IDLE" => DomId::IDLE.raw(),
        "sizeof(domid_t)" => size_of::<DomId>(),
        "sizeof(grant_ref_t)" => size_of::<GrantRef>(),
        "sizeof(evtchn_port_t)" => size_of::<xen_sys::Port>(),
        "GNTTAB_NR_RESERVED_ENTRIES" => GrantRef::NR_RESERVED,
        "GNTTAB_RESERVED_CONSOLE" => GrantRef::CONSOLE.raw(),
        "GNTTAB_RESERVED_XENSTORE" => GrantRef::XENSTORE.raw(),

        "GTF_permit_access" => GrantFlags::PERMIT_ACCESS.bits(),
        "GTF_accept_transfer" => GrantFlags::ACCEPT_TRANSFER.bits(),
        "GTF_transitive" => GrantFlags::TRANSITIVE.bits(),
        "GTF_type_mask" => GrantFlags::TYPE_MASK.bits(),
        "GTF_readonly" => GrantFlags::READONLY.bits(),
        "GTF_reading" => GrantFlags::READING.bits(),
        "GTF_writing" => GrantFlags::WRITING.bits(),
        "GTF_PWT" => GrantFlags::PWT.bits(),
        "GTF_PCD" => GrantFlags::PCD.bits(),
        "GTF_PAT" => GrantFlags::PAT.bits(),
        "GTF_sub_page" => GrantFlags::SUB_PAGE.bits(),

        "BLKIF_OP_READ" => u8::from(Op::Read),
        "BLKIF_OP_WRITE" => u8::from(Op::Write),
        "BLKIF_OP_WRITE_BARRIER" => u8::from(Op::WriteBarrier),
        "BLKIF_OP_FLUSH_DISKCACHE" => u8::from(Op::FlushDiskcache),
        "BLKIF_OP_RESERVED_1" => u8::from(Op::Reserved1),
        "BLKIF_OP_DISCARD" => u8::from(Op::Discard),
        "BLKIF_OP_INDIRECT" => u8::from(Op::Indirect),
        "BLKIF_RSP_OKAY" => i16::from(Status::Okay),
        "BLKIF_RSP_ERROR" => i16::from(Status::Error),
        "BLKIF_RSP_EOPNOTSUPP" => i16::from(Status::Eopnotsupp),
        "BLKIF_DISCARD_SECURE" => DiscardFlags::SECURE.bits(),
        "BLKIF_MAX_SEGMENTS_PER_REQUEST" => blkif::MAX_SEGMENTS_PER_REQUEST,
        "BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST" => blkif::MAX_INDIRECT_PAGES_PER_REQUEST,
        "4096 / sizeof(struct blkif_request_segment)" => blkif::SEGMENTS_PER_INDIRECT_FRAME,
        "VDISK_CDROM" => VdiskInfo::CDROM.bits(),
        "VDISK_REMOVABLE" => VdiskInfo::REMOVABLE.bits(),
        "VDISK_READONLY" => VdiskInfo::READONLY.bits(),

        "NETTXF_csum_blank" => NetTxFlags::CSUM_BLANK.bits(),
        "NETTXF_data_validated" => NetTxFlags::DATA_VALIDATED.bits(),
        "NETTXF_more_data" => NetTxFlags::MORE_DATA.bits(),
        "NETTXF_extra_info" => NetTxFlags::EXTRA_INFO.bits(),
        "NETRXF_data_validated" => NetRxFlags::DATA_VALIDATED.bits(),
        "NETRXF_csum_blank" => NetRxFlags::CSUM_BLANK.bits(),
        "NETRXF_more_data" => NetRxFlags::MORE_DATA.bits(),
        "NETRXF_extra_info" => NetRxFlags::EXTRA_INFO.bits(),
        "NETRXF_gso_prefix" => NetRxFlags::GSO_PREFIX.bits(),
        "XEN_NETIF_EXTRA_FLAG_MORE" => ExtraFlags::MORE.bits(),
        "XEN_NETIF_EXTRA_TYPE_GSO" => u8::from(ExtraType::Gso),
        "XEN_NETIF_EXTRA_TYPE_MCAST_ADD" => u8::from(ExtraType::McastAdd),
        "XEN_NETIF_EXTRA_TYPE_MCAST_DEL" => u8::from(ExtraType::McastDel),
        "XEN_NETIF_EXTRA_TYPE_HASH" => u8::from(ExtraType::Hash),
        "XEN_NETIF_GSO_TYPE_NONE" => u8::from(GsoType::None),
        "XEN_NETIF_GSO_TYPE_TCPV4" => u8::from(GsoType::Tcpv4),
        "XEN_NETIF_GSO_TYPE_TCPV6" => u8::from(GsoType::Tcpv6),
        "XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS" => u16::from(CtrlType::GetHashFlags),
        "XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS" => u16::from(CtrlType::SetHashFlags),
        "XEN_NETIF_CTRL_TYPE_SET_HASH_KEY" => u16::from(CtrlType::SetHashKey),
        "XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE" => u16::from(CtrlType::GetHashMappingSize),
        "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE" => u16::from(CtrlType::SetHashMappingSize),
        "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING" => u16::from(CtrlType::SetHashMapping),
        "XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM" => u16::from(CtrlType::SetHashAlgorithm),
        "XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE" => u16::from(CtrlType::GetGrefMappingSize),
        "XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING" => u16::from(CtrlType::AddGrefMapping),
        "XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING" => u16::from(CtrlType::DelGrefMapping),
        "XEN_NETIF_CTRL_STATUS_SUCCESS" => u32::from(CtrlStatus::Success),
        "XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED" => u32::from(CtrlStatus::NotSupported),
        "XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER" => u32::from(CtrlStatus::InvalidParameter),
        "XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW" => u32::from(CtrlStatus::BufferOverflow),
        "XEN_NETIF_CTRL_HASH_ALGORITHM_NONE" => u32::from(HashAlgorithm::None),
        "XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ" => u32::from(HashAlgorithm::Toeplitz),
        "XEN_NETIF_CTRL_HASH_TYPE_IPV4" => HashFlags::IPV4.bits(),
        "XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP" => HashFlags::IPV4_TCP.bits(),
        "XEN_NETIF_CTRL_HASH_TYPE_IPV6" => HashFlags::IPV6.bits(),
        "XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP" => HashFlags::IPV6_TCP.bits(),
        "NETIF_RSP_DROPPED" => netif::RSP_DROPPED,
        "NETIF_RSP_ERROR" => netif::RSP_ERROR,
        "NETIF_RSP_OKAY" => netif::RSP_OKAY,
        "NETIF_RSP_NULL" => netif::RSP_NULL,
        "XEN_NETIF_NR_SLOTS_MIN" => netif::NR_SLOTS_MIN,
        "XEN_NETIF_MAX_TX_SIZE" => netif::MAX_TX_SIZE,

        "VSCSIIF_ACT_SCSI_CDB" => u8::from(Act::ScsiCdb),
        "VSCSIIF_ACT_SCSI_ABORT" => u8::from(Act::ScsiAbort),
        "VSCSIIF_ACT_SCSI_RESET" => u8::from(Act::ScsiReset),
        "VSCSIIF_ACT_SCSI_SG_PRESET" => u8::from(Act::ScsiSgPreset),
        "VSCSIIF_SG_TABLESIZE" => vscsiif::SG_TABLESIZE,
        "VSCSIIF_MAX_COMMAND_SIZE" => vscsiif::MAX_COMMAND_SIZE,
        "VSCSIIF_SENSE_BUFFERSIZE" => vscsiif::SENSE_BUFFERSIZE,
        "VSCSIIF_SG_GRANT" => vscsiif::SG_GRANT,
        "VSCSIIF_SG_PER_PAGE" => vscsiif::SG_PER_PAGE,
        "XEN_VSCSIIF_RSLT_HOST_OK" => vscsiif::RSLT_HOST_OK,
        "XEN_VSCSIIF_RSLT_HOST_NO_CONNECT" => vscsiif::RSLT_HOST_NO_CONNECT,
        "XEN_VSCSIIF_RSLT_HOST_BAD_TARGET" => vscsiif::RSLT_HOST_BAD_TARGET,
        "XEN_VSCSIIF_RSLT_HOST_ABORT" => vscsiif::RSLT_HOST_ABORT,
        "XEN_VSCSIIF_RSLT_HOST_ERROR" => vscsiif::RSLT_HOST_ERROR,
        "XEN_VSCSIIF_RSLT_HOST_RESET" => vscsiif::RSLT_HOST_RESET,
        "XEN_VSCSIIF_RSLT_RESET_SUCCESS" => vscsiif::RSLT_RESET_SUCCESS,
        "XEN_VSCSIIF_RSLT_RESET_FAILED" => vscsiif::RSLT_RESET_FAILED,
        "XEN_VSCSIIF_RSLT_STATUS(0x00070002)" => vscsiif::rslt_status(0x0007_0002),
        "XEN_VSCSIIF_RSLT_HOST(0x00070002)" => vscsiif::rslt_host(0x0007_0002),
        "XEN_VSCSIIF_RSLT_STATUS(-1)" => vscsiif::rslt_status(-1),
        "XEN_VSCSIIF_RSLT_HOST(-1)" => vscsiif::rslt_host(-1),

        "XenbusStateUnknown" => u32::from(XenbusState::Unknown),
        "XenbusStateInitialising" => u32::from(XenbusState::Initialising),
        "XenbusStateInitWait" => u32::from(XenbusState::InitWait),
        "XenbusStateInitialised" => u32::from(XenbusState::Initialised),
        "XenbusStateConnected" => u32::from(XenbusState::Connected),
        "XenbusStateClosing" => u32::from(XenbusState::Closing),
        "XenbusStateClosed" => u32::from(XenbusState::Closed),
        "XenbusStateReconfiguring" => u32::from(XenbusState::Reconfiguring),
        "XenbusStateReconfigured" => u32::from(XenbusState::Reconfigured),

        "XS_CONTROL" => u32::from(MsgType::Control),
        "XS_DEBUG" => u32::from(MsgType::Control),
        "XS_DIRECTORY" => u32::from(MsgType::Directory),
        "XS_READ" => u32::from(MsgType::Read),
        "XS_GET_PERMS" => u32::from(MsgType::GetPerms),
        "XS_WATCH" => u32::from(MsgType::Watch),
        "XS_UNWATCH" => u32::from(MsgType::Unwatch),
        "XS_TRANSACTION_START" => u32::from(MsgType::TransactionStart),
        "XS_TRANSACTION_END" => u32::from(MsgType::TransactionEnd),
        "XS_INTRODUCE" => u32::from(MsgType::Introduce),
        "XS_RELEASE" => u32::from(MsgType::Release),
        "XS_GET_DOMAIN_PATH" => u32::from(MsgType::GetDomainPath),
        "XS_WRITE" => u32::from(MsgType::Write),
        "XS_MKDIR" => u32::from(MsgType::Mkdir),
        "XS_RM" => u32::from(MsgType::Rm),
        "XS_SET_PERMS" => u32::from(MsgType::SetPerms),
        "XS_WATCH_EVENT" => u32::from(MsgType::WatchEvent),
        "XS_ERROR" => u32::from(MsgType::Error),
        "XS_IS_DOMAIN_INTRODUCED" => u32::from(MsgType::IsDomainIntroduced),
        "XS_RESUME" => u32::from(MsgType::Resume),
        "XS_SET_TARGET" => u32::from(MsgType::SetTarget),
        "XS_RESET_WATCHES" => u32::from(MsgType::ResetWatches),
        "XS_DIRECTORY_PART" => u32::from(MsgType::DirectoryPart),
        "XS_INVALID" => u32::from(MsgType::Invalid),
        "XS_WATCH_PATH" => xenstore::watch_event::PATH,
        "XS_WATCH_TOKEN" => xenstore::watch_event::TOKEN,
        "XENSTORE_RING_SIZE" => xenstore::RING_SIZE,
        "XENSTORE_PAYLOAD_MAX" => xenstore::PAYLOAD_MAX,
        "XENSTORE_ABS_PATH_MAX" => xenstore::ABS_PATH_MAX,
        "XENSTORE_REL_PATH_MAX" => xenstore::REL_PATH_MAX,
        "XENSTORE_SERVER_FEATURE_RECONNECTION" => xenstore::SERVER_FEATURE_RECONNECTION,
        "XENSTORE_SERVER_FEATURE_ERROR" => xenstore::SERVER_FEATURE_ERROR,
        "XENSTORE_CONNECTED" => xenstore::CONNECTED,
        "XENSTORE_RECONNECT" => xenstore::RECONNECT,
        "XENSTORE_ERROR_NONE" => xenstore::ERROR_NONE,
        "XENSTORE_ERROR_COMM" => xenstore::ERROR_COMM,
        "XENSTORE_ERROR_RINGIDX" => xenstore::ERROR_RINGIDX,
        "XENSTORE_ERROR_PROTO" => xenstore::ERROR_PROTO,
    ]);
}

fn all_checks() -> Checks {
    let mut v = Checks::default();
    wire_checks(&mut v);
    bindgen_checks(&mut v);
    const_checks(&mut v);
    v
}

/// The C program: one `printf` per check, in order.
fn c_source(checks: &Checks, wrapper: &Path) -> String {
    let mut src = String::new();
    writeln!(
        src,
        "#include <stddef.h>\n#include <stdio.h>\n#include \"{}\"",
        wrapper.display()
    )
    .unwrap();
    writeln!(
        src,
        "#if !defined(__x86_64__)\n#error \"xen-sys describes the x86_64 ABI\"\n#endif"
    )
    .unwrap();
    writeln!(src, "int main(void) {{").unwrap();
    for (i, c) in checks.0.iter().enumerate() {
        writeln!(
            src,
            "    printf(\"{i} %lld\\n\", (long long)({}));",
            c.c_expr
        )
        .unwrap();
    }
    writeln!(src, "    return 0;\n}}").unwrap();
    src
}

/// Compiles and runs the program; panics with the compiler's or program's output on failure.
fn run_c(src: &str) -> String {
    // One directory per call: the tests of this file run in parallel threads.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("xen-sys-layout-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c_file = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&c_file, src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args([
            "-std=gnu11",
            "-Wall",
            "-Werror",
            "-D__XEN_INTERFACE_VERSION__=0x00040e00",
            "-o",
        ])
        .arg(&exe)
        .arg(&c_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        out.status.success(),
        "C compile of {} failed ({}):\n{}",
        c_file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        run.status.success(),
        "{} failed: {}",
        exe.display(),
        run.status
    );
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(run.stdout).expect("C output is ASCII")
}

/// Every check whose C value is missing from `output` or differs from the Rust value.
fn failures(checks: &Checks, output: &str) -> Vec<String> {
    let mut c_values = vec![None; checks.0.len()];
    for line in output.lines() {
        let parsed = line
            .split_once(' ')
            .and_then(|(i, value)| Some((i.parse::<usize>().ok()?, value.parse::<i128>().ok()?)));
        match parsed.and_then(|(i, value)| Some((c_values.get_mut(i)?, value))) {
            Some((slot, value)) => *slot = Some(value),
            None => panic!("unexpected line in the C program's output: `{line}`"),
        }
    }
    let mut failures = Vec::new();
    for (check, c) in checks.0.iter().zip(&c_values) {
        match c {
            None => failures.push(format!("{}: no output for `{}`", check.what, check.c_expr)),
            Some(c) if *c != check.rust => failures.push(format!(
                "{}: Rust says {}, C says {} for `{}`",
                check.what, check.rust, c, check.c_expr
            )),
            Some(_) => {}
        }
    }
    failures
}

fn wrapper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wrapper.h")
}

#[test]
fn rust_layouts_and_constants_match_the_c_compiler() {
    let checks = all_checks();
    let output = run_c(&c_source(&checks, &wrapper()));
    let failures = failures(&checks, &output);
    assert!(
        failures.is_empty(),
        "{} of {} layout/constant checks failed:\n{}",
        failures.len(),
        checks.0.len(),
        failures.join("\n")
    );
    // Guard against a table that silently lost its entries.
    assert!(checks.0.len() > 400, "only {} checks", checks.0.len());
}

#[test]
fn harness_reports_a_wrong_value_and_a_missing_line() {
    // The harness itself must be able to fail.
    let mut checks = Checks::default();
    checks.add("deliberately wrong", "sizeof(struct blkif_request)", 111);
    checks.add("right", "offsetof(struct blkif_request, id)", 8);
    let output = run_c(&c_source(&checks, &wrapper()));
    let found = failures(&checks, &output);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("Rust says 111, C says 112"), "{found:?}");
    assert_eq!(failures(&checks, "1 8\n").len(), 1);
}

#[test]
#[should_panic(expected = "C compile")]
fn harness_fails_when_the_c_program_does_not_compile() {
    let mut checks = Checks::default();
    checks.add("no such type", "sizeof(struct no_such_xen_struct)", 0);
    run_c(&c_source(&checks, &wrapper()));
}
