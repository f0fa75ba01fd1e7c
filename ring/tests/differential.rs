//! Differential test: our rings against Xen's own `io/ring.h` macros, compiled from C.
//!
//! `tests/c/ring_ops.c` applies an operation sequence with the C macros and prints every
//! notify decision, every consumed id and finally the shared pages in hex. The same sequence
//! runs through [`FrontRing`]/[`BackRing`] here, producing the same transcript, and the two must
//! be identical byte for byte. Needs a C compiler and `/usr/include/xen/io/ring.h`
//! (Debian's `libxen-dev`); the test fails, rather than skips, without them.

use proptest::prelude::*;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use xen_ring::{impl_slot, BackRing, FrontRing, HostPages, RingError, RingIndex, Slot};

#[derive(Clone, Copy)]
#[repr(C)]
struct SmallReq {
    id: u64,
    op: u32,
    arg: u32,
}
impl_slot!(SmallReq { id, op, arg });

#[derive(Clone, Copy)]
#[repr(C)]
struct SmallRsp {
    id: u64,
    status: i32,
    pad: u32,
}
impl_slot!(SmallRsp { id, status, pad });

/// The size of a blkif request on x86_64.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlkReq {
    words: [u64; 14],
}
impl_slot!(BlkReq { words });

#[derive(Clone, Copy)]
#[repr(C)]
struct BlkRsp {
    id: u64,
    status: i64,
}
impl_slot!(BlkRsp { id, status });

/// A wire type built from an id the same way `ring_ops.c` builds it.
trait Payload: Slot {
    fn from_id(id: u64) -> Self;
    /// The first 8 bytes, which the C side prints.
    fn first_word(&self) -> u64;
}

impl Payload for SmallReq {
    fn from_id(id: u64) -> Self {
        SmallReq {
            id,
            op: (id * 3) as u32,
            arg: id as u32 ^ 0x5a5a,
        }
    }
    fn first_word(&self) -> u64 {
        self.id
    }
}

impl Payload for SmallRsp {
    fn from_id(id: u64) -> Self {
        SmallRsp {
            id,
            status: (id as i32).wrapping_neg(),
            pad: 0,
        }
    }
    fn first_word(&self) -> u64 {
        self.id
    }
}

impl Payload for BlkReq {
    fn from_id(id: u64) -> Self {
        let mut words = [0; 14];
        for (k, w) in words.iter_mut().enumerate() {
            *w = id
                .wrapping_mul(0x0101_0101_0101_0101)
                .wrapping_add(k as u64);
        }
        BlkReq { words }
    }
    fn first_word(&self) -> u64 {
        self.words[0]
    }
}

impl Payload for BlkRsp {
    fn from_id(id: u64) -> Self {
        BlkRsp {
            id,
            status: (id as i64).wrapping_neg(),
        }
    }
    fn first_word(&self) -> u64 {
        self.id
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Queue(u64),
    Push,
    Response,
    FinalResponses,
    Request,
    Answer(u64),
    PushResponses,
    FinalRequests,
}

impl Op {
    fn c_text(self) -> String {
        match self {
            Op::Queue(id) => format!("q {id}"),
            Op::Push => "p".into(),
            Op::Response => "g".into(),
            Op::FinalResponses => "h".into(),
            Op::Request => "c".into(),
            Op::Answer(id) => format!("r {id}"),
            Op::PushResponses => "s".into(),
            Op::FinalRequests => "f".into(),
        }
    }
}

/// Runs `ops` through our rings and prints the transcript `ring_ops.c` prints.
fn run_ours<Req: Payload, Rsp: Payload>(pages: usize, start: u32, ops: &[Op]) -> String {
    let mem = HostPages::shared(pages);
    let mut front = FrontRing::<_, Req, Rsp>::init_at(mem.clone(), RingIndex::new(start)).unwrap();
    let mut back = BackRing::<_, Req, Rsp>::attach(mem.clone()).unwrap();
    let mut out = format!("entries {}\n", front.entries());
    for &op in ops {
        match op {
            Op::Queue(id) => match front.queue_request(&Req::from_id(id)) {
                Ok(()) => {}
                Err(RingError::Full) => out.push_str("full\n"),
                Err(e) => panic!("queue: {e}"),
            },
            Op::Push => {
                let n = front.push_requests().unwrap();
                writeln!(out, "notify {}", u8::from(n.is_required())).unwrap();
            }
            Op::Response => match front.next_response().unwrap() {
                Some(rsp) => writeln!(out, "rsp {}", rsp.first_word()).unwrap(),
                None => out.push_str("none\n"),
            },
            Op::FinalResponses => {
                let work = front.final_check_for_responses().unwrap();
                writeln!(out, "work {}", u8::from(work)).unwrap();
            }
            Op::Request => match back.next_request().unwrap() {
                Some(req) => writeln!(out, "req {}", req.first_word()).unwrap(),
                None => out.push_str("none\n"),
            },
            Op::Answer(id) => match back.queue_response(&Rsp::from_id(id)) {
                Ok(()) => {}
                Err(RingError::NoRequestToAnswer) => out.push_str("noreq\n"),
                Err(e) => panic!("answer: {e}"),
            },
            Op::PushResponses => {
                let n = back.push_responses().unwrap();
                writeln!(out, "notify {}", u8::from(n.is_required())).unwrap();
            }
            Op::FinalRequests => {
                let work = back.final_check_for_requests().unwrap();
                writeln!(out, "work {}", u8::from(work)).unwrap();
            }
        }
    }
    out.push_str("page ");
    for byte in mem.to_vec() {
        write!(out, "{byte:02x}").unwrap();
    }
    out.push('\n');
    out
}

/// Compiles `ring_ops.c` once per test process, with the `cc` crate's idea of the C compiler.
fn c_harness() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let header = "/usr/include/xen/io/ring.h";
        assert!(
            std::path::Path::new(header).exists(),
            "{header} is missing: install Debian's libxen-dev (cargo xtask setup does)"
        );
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/ring_ops.c");
        let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ring_ops");
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let compiler = cc::Build::new()
            .target(&triple)
            .host(&triple)
            .opt_level(2)
            .cargo_metadata(false)
            .cargo_warnings(false)
            .get_compiler();
        let status = compiler
            .to_command()
            .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .expect("cannot run the C compiler");
        assert!(status.success(), "compiling {} failed", src.display());
        exe
    })
}

fn run_c(kind: &str, pages: usize, start: u32, ops: &[Op]) -> String {
    let mut input = format!("{kind} {pages} {start}\n");
    for op in ops {
        input.push_str(&op.c_text());
        input.push('\n');
    }
    let mut child = Command::new(c_harness())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run ring_ops");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "ring_ops failed: {}",
        output.status
    );
    String::from_utf8(output.stdout).unwrap()
}

fn compare<Req: Payload, Rsp: Payload>(kind: &str, pages: usize, start: u32, ops: &[Op]) {
    let ours = run_ours::<Req, Rsp>(pages, start, ops);
    let theirs = run_c(kind, pages, start, ops);
    if ours != theirs {
        let first = ours
            .lines()
            .zip(theirs.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let show = |s: &str| {
            s.lines()
                .nth(first)
                .unwrap_or("<end>")
                .chars()
                .take(200)
                .collect::<String>()
        };
        panic!(
            "transcripts differ at line {first}:\n  ours:   {}\n  ring.h: {}",
            show(&ours),
            show(&theirs)
        );
    }
}

/// Operation sequences biased towards bursts, so that rings of 512 slots fill and wrap.
fn ops(max_burst: u64) -> impl Strategy<Value = Vec<Op>> {
    // Small bursts matter as much as big ones: a push of exactly one entry right after the
    // peer re-armed is where an off-by-one in the hold-off rule shows.
    let burst = move || prop_oneof![1..=2u64, 1..=max_burst];
    let step = prop_oneof![
        4 => burst().prop_map(|n| vec![Op::Queue(0); n as usize]),
        2 => Just(vec![Op::Push]),
        3 => burst().prop_map(|n| vec![Op::Request; n as usize]),
        3 => burst().prop_map(|n| vec![Op::Answer(0); n as usize]),
        2 => Just(vec![Op::PushResponses]),
        3 => burst().prop_map(|n| vec![Op::Response; n as usize]),
        1 => Just(vec![Op::FinalRequests]),
        1 => Just(vec![Op::FinalResponses]),
    ];
    prop::collection::vec(step, 1..60).prop_map(|steps| {
        // Number the payloads so every consumed id shows which slot it came from.
        let mut id = 0u64;
        steps
            .into_iter()
            .flatten()
            .map(|op| {
                id += 1;
                match op {
                    Op::Queue(_) => Op::Queue(id),
                    Op::Answer(_) => Op::Answer(id),
                    other => other,
                }
            })
            .collect()
    })
}

fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), (u32::MAX - 600..=u32::MAX), any::<u32>(),]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matches_ring_h_one_page(start in start_index(), ops in ops(40)) {
        compare::<SmallReq, SmallRsp>("small", 1, start, &ops);
    }

    #[test]
    fn matches_ring_h_blkif_4_pages(start in start_index(), ops in ops(60)) {
        compare::<BlkReq, BlkRsp>("blk", 4, start, &ops);
    }

    #[test]
    fn matches_ring_h_blkif_16_pages(start in start_index(), ops in ops(200)) {
        compare::<BlkReq, BlkRsp>("blk", 16, start, &ops);
    }
}

#[test]
fn matches_ring_h_geometry() {
    for (pages, entries) in [(1, 32), (2, 64), (4, 128), (8, 256), (16, 512)] {
        let c = run_c("blk", pages, 0, &[]);
        assert!(
            c.starts_with(&format!("entries {entries}\n")),
            "{pages} pages: {c:.20}"
        );
        let ours = run_ours::<BlkReq, BlkRsp>(pages, 0, &[]);
        assert_eq!(ours, c);
    }
    assert!(run_c("small", 1, 0, &[]).starts_with("entries 128\n"));
}

#[test]
fn matches_ring_h_full_ring_and_wrap() {
    // A fixed, long sequence: fill the ring, drain it, many times over the 2^32 wrap.
    let mut ops = Vec::new();
    let mut id = 0;
    for round in 0..6 {
        for _ in 0..(33 + round) {
            id += 1;
            ops.push(Op::Queue(id));
        }
        ops.extend([Op::Push, Op::FinalRequests]);
        for _ in 0..33 {
            ops.push(Op::Request);
            id += 1;
            ops.push(Op::Answer(id));
        }
        ops.extend([Op::PushResponses, Op::FinalResponses]);
        ops.extend(std::iter::repeat(Op::Response).take(34));
        ops.extend([Op::FinalResponses, Op::FinalRequests, Op::Push]);
    }
    compare::<BlkReq, BlkRsp>("blk", 1, u32::MAX - 40, &ops);
}
