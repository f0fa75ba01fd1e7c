//! `xs-interop SOCKET`: runs `xen_core::xs::Client` against a real xenstored and checks every reply.
//!
//! Run in dom0 by the `xenstore-interop` QEMU scenario against Debian's C xenstored. Each step
//! prints `XS-INTEROP <step> ok` or `XS-INTEROP <step> FAIL: <why>`; the exit status is 1 if
//! any step failed. Nodes are created under `/xs-interop`, and a few are left in place (with
//! their expected values printed as `XS-INTEROP-VALUE <path> <value>`) so the scenario can
//! cross-check them with the C `xenstore-read` and `xenstore-ls` tools.
//!
//! The steps are generic over the transport: `tests/tests/xs_interop_sim.rs` runs them against
//! the simulated xenstored too, so the simulator cannot drift from the real daemon unnoticed.
//! `XS-INTEROP-PROBE` lines record what the daemon answered where that is the daemon's choice
//! (error names); dom0's connection is privileged, so `EACCES` cannot be provoked from here.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use xen_core::xs::unix::{UnixTransport, DEFAULT_SOCKET};
use xen_core::xs::wire::PAYLOAD_MAX;
use xen_core::xs::{
    with_transaction, Access, Client, Errno, Error, Header, MsgType, Path, Perm, Reply, ReqId,
    Request, TxId, WatchEvent, XenStore, XsTransport,
};
use xen_sys::DomId;

/// How long a reply may take before the step fails instead of hanging the scenario.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The transport with a count of bytes sent, to show a refused request never left the client.
struct Counting<T> {
    inner: T,
    sent: usize,
}

impl<T: XsTransport> XsTransport for Counting<T> {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.sent = self.sent.wrapping_add(msg.len());
        self.inner.send(msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.inner.recv(buf)
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.inner.try_recv(buf)
    }
}

type Xs<T> = Client<Counting<T>>;
type StepResult = Result<(), String>;

fn connect(socket: &str) -> Result<UnixTransport, String> {
    let t = UnixTransport::connect(socket).map_err(|e| format!("connect {socket}: {e}"))?;
    t.set_timeout(Some(TIMEOUT))
        .map_err(|e| format!("timeout: {e}"))?;
    Ok(t)
}

fn path(s: &str) -> Result<Path<'_>, String> {
    Path::new(s).map_err(|e| format!("path {s}: {e}"))
}

/// `Result` context: "`what`: error".
fn ctx<T>(what: &str, r: Result<T, Error>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e} ({e:?})"))
}

fn want<T: PartialEq + std::fmt::Debug>(what: &str, want: T, got: T) -> StepResult {
    if want == got {
        Ok(())
    } else {
        Err(format!("{what}: want {want:?}, got {got:?}"))
    }
}

fn read_vec<T: XsTransport>(xs: &mut Xs<T>, tx: TxId, p: &str) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; PAYLOAD_MAX];
    let n = xs.read(tx, Path::new(p)?, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn list<T: XsTransport>(xs: &mut Xs<T>, p: &str) -> Result<Vec<String>, String> {
    // Room for more than one payload: long lists arrive in `XS_DIRECTORY_PART` pieces.
    let mut buf = vec![0u8; 4 * PAYLOAD_MAX];
    let names = ctx("directory", xs.directory(TxId::NONE, path(p)?, &mut buf))?;
    let mut v: Vec<String> = names
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// A value the scenario reads back with `xenstore-read`.
fn keep<T: XsTransport>(xs: &mut Xs<T>, p: &str, value: &str) -> StepResult {
    ctx("write", xs.write(TxId::NONE, path(p)?, value.as_bytes()))?;
    println!("XS-INTEROP-VALUE {p} {value}");
    Ok(())
}

fn write_read<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    keep(xs, "/xs-interop/hello", "world")?;
    want(
        "read back",
        b"world".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?,
    )?;
    ctx(
        "overwrite",
        xs.write(TxId::NONE, path("/xs-interop/hello")?, b"again"),
    )?;
    want(
        "read overwritten",
        b"again".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?,
    )?;
    keep(xs, "/xs-interop/hello", "world")
}

fn empty_value<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    ctx(
        "write",
        xs.write(TxId::NONE, path("/xs-interop/empty")?, b""),
    )?;
    want(
        "read back",
        Vec::new(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/empty"))?,
    )
}

/// The pattern of the large values: printable, so `xenstore-read` can show it.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The largest value a single `XS_WRITE` can carry: the payload is `path NUL value`.
fn largest_value<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let p = "/xs-interop/big";
    let len = PAYLOAD_MAX - p.len() - 1;
    let value = pattern(len);
    ctx("write", xs.write(TxId::NONE, path(p)?, &value))?;
    let got = ctx("read", read_vec(xs, TxId::NONE, p))?;
    want("length", len, got.len())?;
    want("bytes", true, got == value)?;
    println!("XS-INTEROP-LENGTH {p} {len}");
    Ok(())
}

/// A 4096-byte value cannot fit beside its path: the client must refuse it without sending.
fn oversized_refused<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let before = xs.transport_mut().sent;
    let value = pattern(PAYLOAD_MAX);
    want(
        "write 4096 bytes",
        Err(Error::PayloadTooLarge),
        xs.write(TxId::NONE, path("/xs-interop/too-big")?, &value),
    )?;
    want("bytes sent", before, xs.transport_mut().sent)?;
    // The connection is still in step: the next request gets its own reply.
    want(
        "read after refusal",
        b"world".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?,
    )?;
    want(
        "node not created",
        Err(Error::Daemon(Errno::Enoent)),
        read_vec(xs, TxId::NONE, "/xs-interop/too-big"),
    )
}

fn missing_node<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    want(
        "read",
        Err(Error::Daemon(Errno::Enoent)),
        read_vec(xs, TxId::NONE, "/xs-interop/missing"),
    )?;
    let mut buf = [0u8; 16];
    want(
        "read_optional",
        Ok(None),
        xs.read_optional(TxId::NONE, path("/xs-interop/missing")?, &mut buf),
    )
}

fn mkdir_directory<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    ctx("mkdir", xs.mkdir(TxId::NONE, path("/xs-interop/dir")?))?;
    want(
        "new dir value",
        Vec::new(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/dir"))?,
    )?;
    want(
        "empty listing",
        Vec::<String>::new(),
        list(xs, "/xs-interop/dir")?,
    )?;
    ctx(
        "mkdir existing",
        xs.mkdir(TxId::NONE, path("/xs-interop/dir")?),
    )?;
    for leaf in ["a", "b", "c-1_x"] {
        let p = format!("/xs-interop/dir/{leaf}");
        ctx(
            "write child",
            xs.write(TxId::NONE, path(&p)?, leaf.as_bytes()),
        )?;
    }
    want(
        "listing",
        vec!["a".to_string(), "b".into(), "c-1_x".into()],
        list(xs, "/xs-interop/dir")?,
    )
}

fn rm<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    ctx("rm", xs.rm(TxId::NONE, path("/xs-interop/dir/a")?))?;
    want(
        "listing after rm",
        vec!["b".to_string(), "c-1_x".into()],
        list(xs, "/xs-interop/dir")?,
    )?;
    ctx("rm subtree", xs.rm(TxId::NONE, path("/xs-interop/dir")?))?;
    want(
        "child of removed subtree",
        Err(Error::Daemon(Errno::Enoent)),
        read_vec(xs, TxId::NONE, "/xs-interop/dir/b"),
    )?;
    want(
        "rm missing leaf (parent exists)",
        Ok(()),
        xs.rm(TxId::NONE, path("/xs-interop/dir")?),
    )?;
    want(
        "rm below a missing parent",
        Err(Error::Daemon(Errno::Enoent)),
        xs.rm(TxId::NONE, path("/xs-interop/dir/x/y")?),
    )
}

fn perms<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let p = "/xs-interop/perm";
    ctx("write", xs.write(TxId::NONE, path(p)?, b"p"))?;
    let mut buf = [0u8; 64];
    let default: Vec<Perm> = ctx("get default", xs.get_perms(TxId::NONE, path(p)?, &mut buf))?
        .iter()
        .collect();
    // dom0 created it: dom0 owns it and nobody else has access.
    want(
        "default perms",
        vec![Perm {
            access: Access::None,
            domid: DomId::DOM0,
        }],
        default,
    )?;
    let set = [
        Perm {
            access: Access::Read,
            domid: DomId::DOM0,
        },
        Perm {
            access: Access::Both,
            domid: DomId::new(5),
        },
    ];
    ctx("set", xs.set_perms(TxId::NONE, path(p)?, &set))?;
    let got: Vec<Perm> = ctx("get", xs.get_perms(TxId::NONE, path(p)?, &mut buf))?
        .iter()
        .collect();
    want("perms", set.to_vec(), got)?;
    println!("XS-INTEROP-PERMS {p} r0,b5");
    Ok(())
}

fn domain_path<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let mut buf = [0u8; 64];
    let n = ctx("dom0", xs.get_domain_path(DomId::DOM0, &mut buf))?;
    want("dom0", &b"/local/domain/0"[..], buf.get(..n).unwrap_or(&[]))?;
    let n = ctx("dom7", xs.get_domain_path(DomId::new(7), &mut buf))?;
    want("dom7", &b"/local/domain/7"[..], buf.get(..n).unwrap_or(&[]))
}

fn transaction_commits<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let tx = ctx("start", xs.transaction_start())?;
    ctx("write a", xs.write(tx, path("/xs-interop/tx/a")?, b"1"))?;
    ctx("write b", xs.write(tx, path("/xs-interop/tx/b")?, b"2"))?;
    want(
        "read inside",
        b"1".to_vec(),
        ctx("read", read_vec(xs, tx, "/xs-interop/tx/a"))?,
    )?;
    want(
        "invisible outside before commit",
        Err(Error::Daemon(Errno::Enoent)),
        read_vec(xs, TxId::NONE, "/xs-interop/tx/a"),
    )?;
    ctx("commit", xs.transaction_end(tx, true))?;
    want(
        "a after commit",
        b"1".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/tx/a"))?,
    )?;
    want(
        "b after commit",
        b"2".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/tx/b"))?,
    )?;
    println!("XS-INTEROP-VALUE /xs-interop/tx/a 1");
    println!("XS-INTEROP-VALUE /xs-interop/tx/b 2");
    let tx = ctx("start abort", xs.transaction_start())?;
    ctx(
        "write aborted",
        xs.write(tx, path("/xs-interop/tx/a")?, b"x"),
    )?;
    ctx("abort", xs.transaction_end(tx, false))?;
    want(
        "a after abort",
        b"1".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/tx/a"))?,
    )
}

fn transaction_conflict<T: XsTransport>(xs: &mut Xs<T>, other: &mut Xs<T>) -> StepResult {
    let p = "/xs-interop/counter";
    ctx("init", xs.write(TxId::NONE, path(p)?, b"0"))?;
    // Two transactions read and write the same node; the second to commit loses.
    let t1 = ctx("start t1", xs.transaction_start())?;
    let t2 = ctx("start t2", other.transaction_start())?;
    ctx("t1 read", read_vec(xs, t1, p))?;
    ctx("t2 read", read_vec(other, t2, p))?;
    ctx("t1 write", xs.write(t1, path(p)?, b"1"))?;
    ctx("t2 write", other.write(t2, path(p)?, b"2"))?;
    ctx("t1 commit", xs.transaction_end(t1, true))?;
    want(
        "t2 commit",
        Err(Error::Daemon(Errno::Eagain)),
        other.transaction_end(t2, true),
    )?;
    want(
        "value after conflict",
        b"1".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, p))?,
    )?;

    // with_transaction: the first attempt is disturbed by the other connection, the retry wins.
    let mut attempts = 0u32;
    let r = with_transaction(xs, 8, |xs, tx| -> Result<(), Error> {
        attempts += 1;
        let v = read_vec(xs, tx, p)?;
        if attempts == 1 {
            other.write(TxId::NONE, Path::new(p)?, b"10")?;
        }
        let n: u32 = std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Error::Malformed)?;
        xs.write_decimal(tx, Path::new(p)?, u64::from(n) + 1)
    });
    ctx("with_transaction", r)?;
    want("attempts", 2, attempts)?;
    want(
        "value after retry",
        b"11".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, p))?,
    )?;
    println!("XS-INTEROP-VALUE {p} 11");
    Ok(())
}

/// Blocks for the next event of any watch and pops it from watch `id`'s queue.
fn next_event<T: XsTransport>(xs: &mut Xs<T>, id: xen_core::xs::WatchId) -> Result<String, String> {
    let got = ctx("wait_event", xs.wait_event())?;
    want("watch", id, got)?;
    let mut buf = [0u8; 256];
    match ctx("poll_watch", xs.poll_watch(id, &mut buf))? {
        Some(WatchEvent::Changed { len }) => Ok(String::from_utf8_lossy(
            buf.get(..len).ok_or("event length beyond buffer")?,
        )
        .into_owned()),
        other => Err(format!("want a changed path, got {other:?}")),
    }
}

fn watch<T: XsTransport>(xs: &mut Xs<T>, other: &mut Xs<T>) -> StepResult {
    let p = "/xs-interop/w";
    let id = ctx("watch", xs.watch(path(p)?))?;
    want("fires on register", p.to_string(), next_event(xs, id)?)?;
    // Written by this connection: the event can arrive before the write's own reply.
    ctx(
        "write child",
        xs.write(TxId::NONE, path("/xs-interop/w/c1")?, b"x"),
    )?;
    want(
        "own write below",
        "/xs-interop/w/c1".to_string(),
        next_event(xs, id)?,
    )?;
    // Written by another connection: the event arrives with no request outstanding.
    ctx(
        "other write",
        other.write(TxId::NONE, path("/xs-interop/w/c2/d")?, b"y"),
    )?;
    want(
        "other write below",
        "/xs-interop/w/c2/d".to_string(),
        next_event(xs, id)?,
    )?;
    // Outside the watched path: nothing.
    ctx(
        "write outside",
        xs.write(TxId::NONE, path("/xs-interop/wx")?, b"z"),
    )?;
    let mut buf = [0u8; 256];
    want("no event outside", Ok(None), xs.poll_watch(id, &mut buf))?;
    want(
        "watch queue drops",
        0,
        ctx("stats", xs.watch_stats(id))?.dropped,
    )?;

    // Unwatch: later writes below the path reach nobody, and the handle is dead.
    let unmatched = xs.stats().unmatched_events;
    ctx("unwatch", xs.unwatch(id))?;
    ctx(
        "write after unwatch",
        other.write(TxId::NONE, path("/xs-interop/w/c3")?, b"w"),
    )?;
    // A round trip after the write: any event the daemon still sent would be in by now.
    ctx("sync", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?;
    ctx("drain", xs.process_pending())?;
    want(
        "events after unwatch",
        unmatched,
        xs.stats().unmatched_events,
    )?;
    want(
        "stale handle",
        Err(Error::NoSuchWatch),
        xs.poll_watch(id, &mut buf),
    )?;
    want("unwatch twice", Err(Error::NoSuchWatch), xs.unwatch(id))
}

/// A child list longer than one payload: xenstored answers `XS_DIRECTORY` with `E2BIG` and the
/// client must fall back to `XS_DIRECTORY_PART`.
fn directory_part<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    const CHILDREN: usize = 200;
    let name = |i: usize| format!("child-with-a-long-name-{i:04}");
    let tx = ctx("start", xs.transaction_start())?;
    for i in 0..CHILDREN {
        let p = format!("/xs-interop/many/{}", name(i));
        ctx("write child", xs.write(tx, path(&p)?, b""))?;
    }
    ctx("commit", xs.transaction_end(tx, true))?;
    let whole = xs.call(
        TxId::NONE,
        &Request::Directory {
            path: path("/xs-interop/many")?,
        },
        |_| Ok(()),
    );
    want(
        "plain XS_DIRECTORY",
        Err(Error::Daemon(Errno::E2big)),
        whole,
    )?;
    let got = list(xs, "/xs-interop/many")?;
    let mut expected: Vec<String> = (0..CHILDREN).map(name).collect();
    expected.sort();
    want("children", expected, got)?;
    let mut small = [0u8; 1024];
    want(
        "too small a buffer",
        Err(Error::NoSpace),
        xs.directory(TxId::NONE, path("/xs-interop/many")?, &mut small)
            .map(|_| ()),
    )?;
    println!("XS-INTEROP-COUNT /xs-interop/many {CHILDREN}");
    Ok(())
}

/// A relative watch gets relative event paths; a special path fires once on registration.
fn watch_relative_and_special<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let id = ctx("watch relative", xs.watch(path("xs-interop-rel")?))?;
    want(
        "fires on register",
        "xs-interop-rel".to_string(),
        next_event(xs, id)?,
    )?;
    ctx(
        "write relative",
        xs.write(TxId::NONE, path("xs-interop-rel/x")?, b"rel"),
    )?;
    want(
        "relative event",
        "xs-interop-rel/x".to_string(),
        next_event(xs, id)?,
    )?;
    want(
        "absolute read of the relative write",
        b"rel".to_vec(),
        ctx(
            "read",
            read_vec(xs, TxId::NONE, "/local/domain/0/xs-interop-rel/x"),
        )?,
    )?;
    println!("XS-INTEROP-VALUE /local/domain/0/xs-interop-rel/x rel");
    ctx("unwatch relative", xs.unwatch(id))?;
    let id = ctx("watch special", xs.watch(path("@releaseDomain")?))?;
    want(
        "special fires",
        "@releaseDomain".to_string(),
        next_event(xs, id)?,
    )?;
    ctx("unwatch special", xs.unwatch(id))
}

/// More events than the client queues: the oldest are dropped and the caller is told.
fn watch_overflow<T: XsTransport>(xs: &mut Xs<T>, other: &mut Xs<T>) -> StepResult {
    let id = ctx("watch", xs.watch(path("/xs-interop/flood")?))?;
    want(
        "fires on register",
        "/xs-interop/flood".to_string(),
        next_event(xs, id)?,
    )?;
    for i in 0..20 {
        let p = format!("/xs-interop/flood/n{i}");
        ctx("flood write", other.write(TxId::NONE, path(&p)?, b"f"))?;
    }
    // The other connection's writes were acknowledged, so their events precede this reply.
    ctx("sync", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?;
    let mut buf = [0u8; 256];
    want(
        "first poll",
        Ok(Some(WatchEvent::Overflow)),
        xs.poll_watch(id, &mut buf),
    )?;
    want("queue emptied", Ok(None), xs.poll_watch(id, &mut buf))?;
    let stats = ctx("stats", xs.watch_stats(id))?;
    // 20 events into a queue of 8.
    want("dropped", 12, stats.dropped)?;
    ctx("unwatch", xs.unwatch(id))
}

/// `XS_RESET_WATCHES` drops the daemon's watches: later writes send nothing.
fn reset_watches<T: XsTransport>(xs: &mut Xs<T>, other: &mut Xs<T>) -> StepResult {
    let id = ctx("watch", xs.watch(path("/xs-interop/reset")?))?;
    next_event(xs, id)?;
    let unmatched = xs.stats().unmatched_events;
    ctx("reset", xs.reset_watches())?;
    ctx(
        "write after reset",
        other.write(TxId::NONE, path("/xs-interop/reset/x")?, b"r"),
    )?;
    ctx("sync", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?;
    ctx("drain", xs.process_pending())?;
    want("events after reset", unmatched, xs.stats().unmatched_events)?;
    want("stale handle", Err(Error::NoSuchWatch), xs.unwatch(id))?;
    // The freed slot works again.
    let id = ctx("watch again", xs.watch(path("/xs-interop/reset")?))?;
    want(
        "fires on register",
        "/xs-interop/reset".to_string(),
        next_event(xs, id)?,
    )?;
    ctx("unwatch", xs.unwatch(id))
}

fn domain_introduced<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let mut ask = |domid| {
        xs.call(
            TxId::NONE,
            &Request::IsDomainIntroduced { domid },
            |r| match r {
                Reply::Introduced(yes) => Ok(yes),
                _ => Err(Error::UnexpectedReply),
            },
        )
    };
    want("dom0", Ok(true), ask(DomId::DOM0))?;
    want("dom999", Ok(false), ask(DomId::new(999)))
}

/// Values are bytes, not strings: every byte value, NUL included, survives the round trip.
fn binary_value<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let value: Vec<u8> = (0..=255u8).collect();
    ctx(
        "write",
        xs.write(TxId::NONE, path("/xs-interop/binary")?, &value),
    )?;
    want(
        "read back",
        value,
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/binary"))?,
    )
}

/// A path of `len` bytes: `prefix` then `/x...` components.
fn long_path(prefix: &str, len: usize) -> String {
    let mut p = prefix.to_string();
    while p.len() < len {
        p.push('/');
        let room = (len - p.len()).clamp(1, 100);
        p.extend(std::iter::repeat('x').take(room));
    }
    p
}

/// Path lengths: the client refuses what `xs_wire.h` forbids (absolute paths over
/// `XENSTORE_ABS_PATH_MAX`, relative ones over `XENSTORE_REL_PATH_MAX`); C xenstored is
/// stricter, limiting the part after `/local/domain/<id>/` (the whole path elsewhere) to its
/// `path-max` quota, `XENSTORE_REL_PATH_MAX` by default, and answers `EINVAL` beyond it.
fn path_limits<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    const QUOTA: usize = xen_core::xs::wire::REL_PATH_MAX;
    let abs = long_path("/xs-interop/long", QUOTA);
    ctx(
        "write quota-long absolute",
        xs.write(TxId::NONE, path(&abs)?, b"abs"),
    )?;
    want(
        "read quota-long absolute",
        b"abs".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, &abs))?,
    )?;
    let over = long_path("/xs-interop/long", QUOTA + 1);
    want(
        "one byte over the quota",
        Err(Error::Daemon(Errno::Einval)),
        xs.write(TxId::NONE, path(&over)?, b"x"),
    )?;
    let max = long_path("/xs-interop/long", xen_core::xs::wire::ABS_PATH_MAX);
    want(
        "XENSTORE_ABS_PATH_MAX",
        Err(Error::Daemon(Errno::Einval)),
        xs.write(TxId::NONE, path(&max)?, b"x"),
    )?;
    want(
        "one byte over XENSTORE_ABS_PATH_MAX, refused locally",
        Err(Error::PathTooLong),
        Path::new(&format!("{max}y")).map(|_| ()),
    )?;
    // Below a domain's home the prefix does not count.
    let home = "/local/domain/0/";
    let local = long_path("/local/domain/0/xs-interop-long", home.len() + QUOTA);
    ctx(
        "write quota-long local",
        xs.write(TxId::NONE, path(&local)?, b"loc"),
    )?;
    let over = long_path("/local/domain/0/xs-interop-long", home.len() + QUOTA + 1);
    want(
        "local one byte over",
        Err(Error::Daemon(Errno::Einval)),
        xs.write(TxId::NONE, path(&over)?, b"x"),
    )?;
    // The longest relative path the client accepts is exactly the quota.
    let rel = long_path("xs-interop-long", xen_core::xs::wire::REL_PATH_MAX);
    ctx(
        "write longest relative",
        xs.write(TxId::NONE, path(&rel)?, b"rel"),
    )?;
    want(
        "read longest relative",
        b"rel".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, &format!("{home}{rel}")))?,
    )?;
    want(
        "relative one byte over, refused locally",
        Err(Error::PathTooLong),
        Path::new(&format!("{rel}y")).map(|_| ()),
    )?;
    ctx("rm relative", xs.rm(TxId::NONE, path("xs-interop-long")?))?;
    // Every character the client allows, in one component.
    let odd = "/xs-interop/AZaz09-_@";
    ctx(
        "write odd characters",
        xs.write(TxId::NONE, path(odd)?, b"odd"),
    )?;
    want(
        "listed",
        true,
        list(xs, "/xs-interop")?.contains(&"AZaz09-_@".to_string()),
    )
}

/// `XS_MKDIR` creates missing parents, like `XS_WRITE`.
fn mkdir_parents<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    ctx("mkdir", xs.mkdir(TxId::NONE, path("/xs-interop/p/q/r")?))?;
    want("p", vec!["q".to_string()], list(xs, "/xs-interop/p")?)?;
    want("q", vec!["r".to_string()], list(xs, "/xs-interop/p/q")?)
}

/// Every operation inside a transaction, and a watch that fires only at commit.
fn transaction_ops<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let base = "/xs-interop/txo";
    ctx("write base", xs.write(TxId::NONE, path(base)?, b""))?;
    let id = ctx("watch", xs.watch(path(base)?))?;
    next_event(xs, id)?;
    let tx = ctx("start", xs.transaction_start())?;
    ctx("mkdir", xs.mkdir(tx, path("/xs-interop/txo/d")?))?;
    ctx("write", xs.write(tx, path("/xs-interop/txo/v")?, b"tv"))?;
    ctx(
        "write gone",
        xs.write(tx, path("/xs-interop/txo/gone")?, b"g"),
    )?;
    ctx("rm", xs.rm(tx, path("/xs-interop/txo/gone")?))?;
    let perms = [
        Perm {
            access: Access::Read,
            domid: DomId::DOM0,
        },
        Perm {
            access: Access::Write,
            domid: DomId::new(3),
        },
    ];
    ctx(
        "set perms",
        xs.set_perms(tx, path("/xs-interop/txo/v")?, &perms),
    )?;
    let mut buf = [0u8; 64];
    let got: Vec<Perm> = ctx(
        "get perms",
        xs.get_perms(tx, path("/xs-interop/txo/v")?, &mut buf),
    )?
    .iter()
    .collect();
    want("perms inside", perms.to_vec(), got)?;
    let mut names = [0u8; 64];
    let inside: Vec<&[u8]> = ctx(
        "directory inside",
        xs.directory(tx, path(base)?, &mut names),
    )?
    .collect();
    want("listing inside", vec![&b"d"[..], &b"v"[..]], inside)?;
    want(
        "outside before commit",
        Vec::<String>::new(),
        list(xs, base)?,
    )?;
    want(
        "no event before commit",
        Ok(None),
        xs.poll_watch(id, &mut buf),
    )?;
    ctx("commit", xs.transaction_end(tx, true))?;
    want(
        "listing after commit",
        vec!["d".to_string(), "v".into()],
        list(xs, base)?,
    )?;
    let got: Vec<Perm> = ctx(
        "get perms after",
        xs.get_perms(TxId::NONE, path("/xs-interop/txo/v")?, &mut buf),
    )?
    .iter()
    .collect();
    want("perms after commit", perms.to_vec(), got)?;
    // The commit fires the watch (C xenstored: once per changed node).
    let first = next_event(xs, id)?;
    if !first.starts_with(base) {
        return Err(format!("event at commit: {first}"));
    }
    println!("XS-INTEROP-PROBE commit-event {first}");
    ctx("unwatch", xs.unwatch(id))
}

/// An event path longer than the client stores is not truncated: it is reported as lost.
fn watch_long_path<T: XsTransport>(xs: &mut Xs<T>, other: &mut Xs<T>) -> StepResult {
    let id = ctx("watch", xs.watch(path("/xs-interop/lw")?))?;
    next_event(xs, id)?;
    let long = long_path("/xs-interop/lw", xen_core::xs::watch::EVENT_PATH_MAX + 1);
    ctx("long write", other.write(TxId::NONE, path(&long)?, b"l"))?;
    ctx("sync", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?;
    let mut buf = [0u8; 4096];
    want(
        "long event",
        Ok(Some(WatchEvent::Overflow)),
        xs.poll_watch(id, &mut buf),
    )?;
    ctx("unwatch", xs.unwatch(id))
}

/// The first permission entry names the owner, which must be a domain xenstored knows;
/// later entries may name any domain (see `perms`).
fn owner_must_exist<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let p = path("/xs-interop/owned")?;
    ctx("write", xs.write(TxId::NONE, p, b"o"))?;
    let foreign_owner = xs.set_perms(
        TxId::NONE,
        p,
        &[Perm {
            access: Access::None,
            domid: DomId::new(5),
        }],
    );
    println!("XS-INTEROP-PROBE owner-unknown-domain {foreign_owner:?}");
    want(
        "owner that is not a domain",
        Err(Error::Daemon(Errno::Enoent)),
        foreign_owner,
    )
}

/// A reply nobody waits for any more (an interrupted call) is skipped by the next call, and
/// discarded by `process_pending` when no call is outstanding.
fn stray_reply<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let mut msg = [0u8; 64];
    let read = Request::Read {
        path: path("/xs-interop/hello")?,
    };
    let n = ctx(
        "encode",
        read.encode(ReqId(0xdead_beef), TxId::NONE, &mut msg),
    )?;
    let raw = msg.get(..n).ok_or("encoded past the buffer")?;
    let before = xs.stats().stray_replies;
    ctx("raw send", xs.transport_mut().send(raw))?;
    want(
        "read past the stray",
        b"world".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?,
    )?;
    want("strays skipped", before + 1, xs.stats().stray_replies)?;
    ctx("raw send again", xs.transport_mut().send(raw))?;
    let deadline = Instant::now() + TIMEOUT;
    while xs.stats().stray_replies == before + 1 && Instant::now() < deadline {
        ctx("process_pending", xs.process_pending())?;
        std::thread::sleep(Duration::from_millis(10));
    }
    want("strays discarded", before + 2, xs.stats().stray_replies)
}

/// A connection announcing a payload over `XENSTORE_PAYLOAD_MAX` is dropped by the daemon;
/// the client sees a transport error at once, not a hang, and the daemon serves others on.
fn bad_client_dropped<T: XsTransport>(bad: T, xs: &mut Xs<T>) -> StepResult {
    let mut bad = Client::new(Counting {
        inner: bad,
        sent: 0,
    });
    let header = Header {
        msg_type: MsgType::Read,
        req_id: ReqId(1),
        tx_id: TxId::NONE,
        len: u32::try_from(PAYLOAD_MAX + 1).map_err(|e| e.to_string())?,
    };
    // The refusal may surface on the send already (the simulator) or on the next read.
    let start = Instant::now();
    let r = bad
        .transport_mut()
        .send(&header.to_bytes())
        .and_then(|()| read_vec(&mut bad, TxId::NONE, "/xs-interop/hello"));
    let waited = start.elapsed();
    println!("XS-INTEROP-PROBE oversized-header-then-read {r:?} after {waited:?}");
    want("read on the dropped connection", Err(Error::Transport), r)?;
    if waited >= TIMEOUT {
        return Err(format!("noticed only by the {TIMEOUT:?} timeout"));
    }
    want(
        "daemon still serves",
        b"world".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?,
    )
}

/// The error names the daemon really sends, each mapped to its `Errno`.
fn errors<T: XsTransport>(xs: &mut Xs<T>) -> StepResult {
    let einval = xs.call(
        TxId::NONE,
        &Request::Control {
            args: b"xs-interop-no-such-command\0",
        },
        |_| Ok(()),
    );
    println!("XS-INTEROP-PROBE control-unknown-command {einval:?}");
    want(
        "unknown XS_CONTROL command",
        Err(Error::Daemon(Errno::Einval)),
        einval,
    )?;
    want(
        "display",
        "xenstored: EINVAL".to_string(),
        Error::Daemon(Errno::Einval).to_string(),
    )?;
    // A relative path starting with `@` is a special watch path, never a node.
    let special_write = xs.write(TxId::NONE, path("@xs-interop")?, b"x");
    println!("XS-INTEROP-PROBE write-special-path {special_write:?}");
    want(
        "write to an @ path",
        Err(Error::Daemon(Errno::Einval)),
        special_write,
    )?;
    let stale_tx = xs.transaction_end(TxId(0x7fff_0001), true);
    println!("XS-INTEROP-PROBE end-unknown-transaction {stale_tx:?}");
    want(
        "unknown transaction",
        Err(Error::Daemon(Errno::Enoent)),
        stale_tx,
    )?;
    let resume0 = xs.call(TxId::NONE, &Request::Resume { domid: DomId::DOM0 }, |_| {
        Ok(())
    });
    println!("XS-INTEROP-PROBE resume-dom0 {resume0:?}");
    want(
        "XS_RESUME of dom0",
        Err(Error::Daemon(Errno::Einval)),
        resume0,
    )?;
    let p = path("/xs-interop/owned")?;
    ctx("write owned", xs.write(TxId::NONE, p, b"o"))?;
    let stale_write = xs.write(TxId(0x7fff_0002), p, b"x");
    println!("XS-INTEROP-PROBE write-in-unknown-transaction {stale_write:?}");
    want(
        "write in an unknown transaction",
        Err(Error::Daemon(Errno::Enoent)),
        stale_write,
    )?;
    // EACCES: dom0's socket connection is privileged, so xenstored never enforces node
    // permissions on it; nothing this connection can send draws EACCES (recorded, not faked).
    // The client is still in step after every error.
    want(
        "read after errors",
        b"world".to_vec(),
        ctx("read", read_vec(xs, TxId::NONE, "/xs-interop/hello"))?,
    )
}

/// Runs every step over two connections to the same daemon, printing a line per step;
/// returns the names of the steps that failed.
pub fn run<T: XsTransport>(mut connect: impl FnMut() -> Result<T, String>) -> Vec<&'static str> {
    let mut failed = Vec::new();
    let (xs, other) = match (connect(), connect()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            println!("XS-INTEROP connect FAIL: {e}");
            failed.push("connect");
            return failed;
        }
    };
    println!("XS-INTEROP connect ok");
    let mut xs = Client::new(Counting { inner: xs, sent: 0 });
    let mut other = Client::new(Counting {
        inner: other,
        sent: 0,
    });
    let mut report = |name: &'static str, r: StepResult| match r {
        Ok(()) => println!("XS-INTEROP {name} ok"),
        Err(e) => {
            failed.push(name);
            println!("XS-INTEROP {name} FAIL: {e}");
        }
    };
    // Start clean, in case a previous run left nodes behind.
    let cleanup = path("/xs-interop").and_then(|p| ctx("rm", xs.rm(TxId::NONE, p)));
    report("cleanup", cleanup);
    report("write-read", write_read(&mut xs));
    report("empty-value", empty_value(&mut xs));
    report("largest-value", largest_value(&mut xs));
    report("oversized-refused", oversized_refused(&mut xs));
    report("missing-enoent", missing_node(&mut xs));
    report("mkdir-directory", mkdir_directory(&mut xs));
    report("rm", rm(&mut xs));
    report("perms", perms(&mut xs));
    report("domain-path", domain_path(&mut xs));
    report("transaction-commit", transaction_commits(&mut xs));
    report(
        "transaction-conflict",
        transaction_conflict(&mut xs, &mut other),
    );
    report("watch", watch(&mut xs, &mut other));
    report("directory-part", directory_part(&mut xs));
    report(
        "watch-relative-special",
        watch_relative_and_special(&mut xs),
    );
    report("watch-overflow", watch_overflow(&mut xs, &mut other));
    report("reset-watches", reset_watches(&mut xs, &mut other));
    report("domain-introduced", domain_introduced(&mut xs));
    report("binary-value", binary_value(&mut xs));
    report("path-limits", path_limits(&mut xs));
    report("mkdir-parents", mkdir_parents(&mut xs));
    report("transaction-ops", transaction_ops(&mut xs));
    report("watch-long-path", watch_long_path(&mut xs, &mut other));
    report("owner-must-exist", owner_must_exist(&mut xs));
    report("errors", errors(&mut xs));
    report("stray-reply", stray_reply(&mut xs));
    let dropped = connect().and_then(|bad| bad_client_dropped(bad, &mut xs));
    report("bad-client-dropped", dropped);
    let stats = xs.stats();
    println!("XS-INTEROP-STATS {stats:?}");
    failed
}

#[allow(dead_code)] // Not called when this file is included by the simulator test.
fn main() -> ExitCode {
    let socket = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    let failed = run(|| connect(&socket));
    if failed.is_empty() {
        println!("XS-INTEROP-RESULT PASS");
        ExitCode::SUCCESS
    } else {
        println!("XS-INTEROP-RESULT FAIL ({} steps)", failed.len());
        ExitCode::FAILURE
    }
}
