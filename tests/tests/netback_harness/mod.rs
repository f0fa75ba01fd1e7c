//! The xen-netif backend engine (`NetBack`) in dom0 of the simulator, and the pieces of a
//! glue the tests need: a packet type for its RX queue (`SimPacket`, pieces of dom0 pages)
//! and a frontend that is either our `NetFront` engine (`netback_e2e.rs`) or raw rings the
//! test writes (`netback_attacks.rs`).
// Each test that includes this uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use xen_core::platform::RingMemory;
use xen_netif::{
    BackConfig, BackTxPacket, Gso, NetBack, RxQueued, RxSource, TxChecksum, TxEvent, TxPending,
    TxToken,
};
use xen_ring::FrontRing;
use xen_sim::{Domain, Mapping, Pages, Sim};
use xen_sys::wire::netif::{RxRequest, TxRequest};
use xen_sys::{DomId, GrantRef, Port};

pub const D0: DomId = DomId::DOM0;
pub const D1: DomId = DomId::new(1);

/// A packet the glue queues for the frontend: pieces of dom0 pages.
pub struct SimPacket {
    pub pieces: Vec<(Pages, u16, u16)>,
    pub csum: TxChecksum,
    pub gso: Option<Gso>,
    /// Counts the packets the engine let go of (sent, dropped or expired).
    pub freed: Option<Arc<AtomicUsize>>,
}

impl SimPacket {
    /// `data` in pieces of at most `piece` bytes, each starting at `offset` of its own page
    /// (clipped to the page).
    pub fn new(be: &Domain, data: &[u8], piece: usize, offset: u16) -> SimPacket {
        let mut pieces = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let off = usize::from(offset);
            let n = rest.len().min(piece).min(4096 - off);
            let p = be.alloc_pages(1);
            p.write(off, &rest[..n]);
            pieces.push((p, offset, n as u16));
            rest = &rest[n..];
        }
        SimPacket {
            pieces,
            csum: TxChecksum::None,
            gso: None,
            freed: None,
        }
    }

    pub fn with(mut self, csum: TxChecksum, gso: Option<Gso>) -> SimPacket {
        self.csum = csum;
        self.gso = gso;
        self
    }

    pub fn counted(mut self, c: &Arc<AtomicUsize>) -> SimPacket {
        self.freed = Some(c.clone());
        self
    }
}

impl std::fmt::Debug for SimPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimPacket({} pieces)", self.pieces.len())
    }
}

impl Drop for SimPacket {
    fn drop(&mut self) {
        if let Some(c) = &self.freed {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl RxSource<Pages> for SimPacket {
    fn piece(&self, i: usize) -> Option<(&Pages, u16, u16)> {
        self.pieces.get(i).map(|(p, o, l)| (p, *o, *l))
    }
    fn csum(&self) -> TxChecksum {
        self.csum
    }
    fn gso(&self) -> Option<Gso> {
        self.gso
    }
}

pub type Table = Vec<TxPending<Mapping>>;
pub type Queue = Vec<Option<RxQueued<SimPacket>>>;
pub type Back = NetBack<Domain, Mapping, Table, SimPacket, Queue>;

pub fn table(n: usize) -> Table {
    (0..n).map(|_| TxPending::FREE).collect()
}

pub fn queue(n: usize) -> Queue {
    (0..n).map(|_| None).collect()
}

/// A TX packet as the glue saw it.
#[derive(Clone, Debug)]
pub struct Got {
    pub data: Vec<u8>,
    pub head: usize,
    pub frags: usize,
    pub csum: TxChecksum,
    pub gso: Option<Gso>,
    pub token: Option<TxToken>,
}

/// Copies a delivered packet out (the glue's skb build, for checking).
pub fn got(p: &BackTxPacket<'_, Mapping, Pages>) -> Got {
    let mut data = vec![0u8; p.len as usize];
    assert_eq!(
        p.copy_to(&mut data),
        Some(data.len()),
        "frags add up to len"
    );
    for i in 0..p.frag_count() {
        match p.frag(i).unwrap() {
            xen_netif::TxFragRef::Mapped { len, offset, .. }
            | xen_netif::TxFragRef::Copied { len, offset, .. } => {
                assert!(len > 0, "no zero-length frag is handed over");
                assert!(usize::from(offset) + usize::from(len) <= 4096);
            }
        }
    }
    Got {
        data,
        head: p.head().len(),
        frags: p.frag_count(),
        csum: p.csum,
        gso: p.gso,
        token: p.token(),
    }
}

/// Records every TX event into `out` (multicast requests into `mcast`).
pub fn collect<'a>(
    out: &'a mut Vec<Got>,
    mcast: &'a mut Vec<xen_netif::Mcast>,
) -> impl FnMut(TxEvent<'_, '_, Mapping, Pages>) + 'a {
    move |ev| match ev {
        TxEvent::Packet(p) => out.push(got(p)),
        TxEvent::Mcast(m) => mcast.push(m),
    }
}

pub type RawTx = FrontRing<Arc<Pages>, [u8; 12], [u8; 4]>;
pub type RawRx = FrontRing<Arc<Pages>, [u8; 8], [u8; 8]>;

/// A hostile frontend (raw rings the test writes) and our backend in dom0.
pub struct Raw {
    pub sim: Sim,
    pub fe: Domain,
    pub be: Domain,
    pub tx_pages: Arc<Pages>,
    pub tx: RawTx,
    pub rx: RawRx,
    pub back: Back,
    pub fport: Port,
    /// Data pages the frontend granted (kept alive).
    pub pages: Vec<(Pages, GrantRef)>,
}

impl Raw {
    pub fn new(config: BackConfig) -> Raw {
        Raw::with(config, 256, 64)
    }

    pub fn with(config: BackConfig, table_len: usize, queue_len: usize) -> Raw {
        let sim = Sim::new();
        let fe = sim.create_domain(1);
        let be = sim.domain(0);
        let tx_pages = Arc::new(fe.alloc_pages(1));
        let rx_pages = Arc::new(fe.alloc_pages(1));
        let tg = fe.grant_ring_page(D0, &tx_pages, 0).unwrap();
        let rg = fe.grant_ring_page(D0, &rx_pages, 0).unwrap();
        let tx = FrontRing::init(tx_pages.clone()).unwrap();
        let rx = FrontRing::init(rx_pages).unwrap();
        let fport = fe.alloc_unbound(D0).unwrap();
        let bport = be.bind_interdomain(D1, fport).unwrap();
        let back = NetBack::new(
            be.clone(),
            RingMemory::map_ring(&be, D1, &[tg]).unwrap(),
            RingMemory::map_ring(&be, D1, &[rg]).unwrap(),
            D1,
            (bport, bport),
            config,
            table(table_len),
            queue(queue_len),
        )
        .unwrap();
        Raw {
            sim,
            fe,
            be,
            tx_pages,
            tx,
            rx,
            back,
            fport,
            pages: Vec::new(),
        }
    }

    /// A frontend page holding `data` at `offset`, granted read-only to dom0.
    pub fn page(&mut self, offset: usize, data: &[u8]) -> GrantRef {
        let p = self.fe.alloc_pages(1);
        p.write(offset, data);
        let g = self.fe.grant_access(D0, p.frame(0).unwrap(), true).unwrap();
        self.pages.push((p, g));
        g
    }

    /// Queues a TX request slot (not published).
    pub fn slot(&mut self, gref: GrantRef, offset: u16, size: u16, flags: u16, id: u16) {
        let mut r = TxRequest::ZERO;
        r.gref = gref.raw();
        r.offset = offset;
        r.size = size;
        r.flags = flags;
        r.id = id;
        self.tx.queue_request(&r.to_bytes()).unwrap();
    }

    /// Queues a raw TX slot (an extra-info slot).
    pub fn raw_slot(&mut self, bytes: [u8; 8]) {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&bytes);
        self.tx.queue_request(&b).unwrap();
    }

    pub fn publish(&mut self) {
        let _ = self.tx.push_requests().unwrap();
    }

    /// TX responses published, as (id, status).
    pub fn tx_responses(&mut self) -> Vec<(u16, i16)> {
        let mut out = Vec::new();
        while let Some(r) = self.tx.next_response().unwrap() {
            let r = xen_sys::wire::netif::TxResponse::from_bytes(&r);
            out.push((r.id, r.status));
        }
        out
    }

    /// Posts `n` RX buffers (fresh pages granted writable); returns them.
    pub fn post_rx(&mut self, n: usize) -> Vec<(u16, GrantRef)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let p = self.fe.alloc_pages(1);
            let g = self
                .fe
                .grant_access(D0, p.frame(0).unwrap(), false)
                .unwrap();
            let id = self.pages.len() as u16;
            self.pages.push((p, g));
            let mut r = RxRequest::ZERO;
            r.id = id;
            r.gref = g.raw();
            self.rx.queue_request(&r.to_bytes()).unwrap();
            out.push((id, g));
        }
        let _ = self.rx.push_requests().unwrap();
        out
    }

    /// RX responses published (raw slots).
    pub fn rx_responses(&mut self) -> Vec<[u8; 8]> {
        let mut out = Vec::new();
        while let Some(r) = self.rx.next_response().unwrap() {
            out.push(r);
        }
        out
    }

    /// Live grant mappings besides the two rings.
    pub fn data_maps(&self) -> u64 {
        self.sim.grant_stats().live_maps - 2
    }

    /// Runs the TX handler, collecting what it delivers.
    pub fn serve(
        &mut self,
    ) -> (
        Result<xen_netif::Progress, xen_netif::back::Error>,
        Vec<Got>,
    ) {
        let mut got = Vec::new();
        let mut mcast = Vec::new();
        let r = self.back.tx_event(collect(&mut got, &mut mcast));
        (r, got)
    }
}
