//! `xudp`: UDP datagrams of every size class, each echoed back and compared byte for byte.
//!
//! The network scenarios run the server on one side of a vif and the client on the other, so
//! every datagram crosses the interface twice (once each way) and is checked on its return.
//! A datagram's bytes depend on its size, its sequence number and a seed, so a truncated,
//! reordered, stale or corrupted datagram is caught. A lost datagram (UDP may lose one) is
//! sent again, at most three times, and every resend is counted and printed: the scenario
//! decides what to accept.
//!
//! ```text
//! xudp server PORT                          echo every datagram back to its sender, forever
//! xudp client HOST PORT SEED MAXSIZE        each size class up to MAXSIZE; exit 0 if all came
//!                                           back intact, 1 otherwise
//! ```

use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::Duration;

/// The largest UDP payload over IPv4.
const MAX: usize = 65507;

/// The sizes tried: small, around the 1500 and 9000 MTU boundaries, around page sizes, and up
/// to the largest.
const SIZES: &[usize] = &[
    1, 2, 17, 64, 100, 255, 256, 257, 512, 1000, 1471, 1472, 1473, 1500, 2048, 4095, 4096, 4097,
    8000, 8191, 8192, 8193, 8971, 8972, 8973, 9000, 12000, 16384, 32768, 40000, 65000, 65506, MAX,
];

fn fill(seed: u64, seq: u64, buf: &mut [u8]) {
    let mut z = seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (buf.len() as u64) << 32;
    for b in buf.iter_mut() {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *b = (x ^ (x >> 31)) as u8;
    }
}

fn server(port: &str) -> Result<(), String> {
    let sock = UdpSocket::bind(format!("0.0.0.0:{port}")).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX + 1];
    loop {
        let (n, from) = sock.recv_from(&mut buf).map_err(|e| e.to_string())?;
        sock.send_to(&buf[..n], from).map_err(|e| e.to_string())?;
    }
}

fn client(host: &str, port: &str, seed: u64, max: usize) -> Result<bool, String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.connect(format!("{host}:{port}"))
        .map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; MAX];
    let mut back = vec![0u8; MAX + 1];
    let mut all_ok = true;
    let mut resends = 0u32;
    for (seq, &size) in SIZES.iter().enumerate().filter(|(_, &s)| s <= max) {
        let seq = seq as u64;
        let msg = &mut out[..size];
        fill(seed, seq, msg);
        let mut verdict = "lost";
        for attempt in 0..3 {
            if attempt > 0 {
                resends += 1;
            }
            sock.send(msg).map_err(|e| format!("send {size}: {e}"))?;
            // Skip stale echoes of earlier attempts or sizes (compared below, never trusted).
            let got = loop {
                match sock.recv(&mut back) {
                    Ok(n) if n == size && back[..n] == *msg => break Some(true),
                    Ok(n) if n == size => break Some(false),
                    Ok(_) => continue,
                    Err(_) => break None,
                }
            };
            match got {
                Some(true) => {
                    verdict = "ok";
                    break;
                }
                Some(false) => {
                    verdict = "CORRUPT";
                    break;
                }
                None => {}
            }
        }
        println!("xudp size={size} {verdict}");
        all_ok &= verdict == "ok";
    }
    println!("xudp resends={resends}");
    Ok(all_ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["server", port] => server(port).map(|()| true),
        ["client", host, port, seed, max] => match (seed.parse(), max.parse::<usize>()) {
            (Ok(seed), Ok(max)) => client(host, port, seed, max.min(MAX)),
            _ => Err("bad SEED or MAXSIZE".into()),
        },
        _ => Err("usage: xudp server PORT | xudp client HOST PORT SEED MAXSIZE".into()),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xudp: {e}");
            ExitCode::FAILURE
        }
    }
}
