//! Ping-pong latency and throughput of the shared-memory ring and of TCP
//! loopback, between two processes (this binary re-runs itself as the
//! echo peer).
//!
//! ```text
//! cargo run --release -p talaria-transport --example ring_latency [-- --quick]
//! ```
//!
//! Ping-pong: the parent sends a frame (copying the payload from its own
//! buffer), the child copies it into its reply, the parent reads it in
//! place. Stream: the parent sends N frames back to back, the child reads
//! every payload (a checksum) and answers one Pong at the end.

use std::hint::black_box;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use talaria_transport::{Connection, FrameHeader, FrameKind, ShmRing, TcpConnection, TcpWorkerListener};

/// `call_kind` marking frames the child must consume without answering.
const STREAM: u8 = 1;
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--child-shm") => {
            let mut ring = ShmRing::open(arg(&args, 2)?)?;
            if let Some(spin) = spin_override() {
                ring.set_spin(spin);
            }
            return echo(&mut ring);
        }
        Some("--child-tcp") => return echo(&mut TcpConnection::connect(arg(&args, 2)?, Duration::from_secs(10))?),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    println!(
        "two processes, {} CPUs; times are round trips (send + echo + receive)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let (mut ring, path) = ShmRing::create("talaria-bench", ShmRing::DEFAULT_CAPACITY)?;
    let mut child = spawn("--child-shm", &path.to_string_lossy())?;
    ring.expect_peer_pid(child.id());
    if let Some(spin) = spin_override() {
        ring.set_spin(spin);
    }
    bench("shm", &mut ring, quick)?;
    finish(&mut ring, &mut child)?;

    let listener = TcpWorkerListener::bind("127.0.0.1:0")?;
    let mut child = spawn("--child-tcp", &listener.local_addr()?.to_string())?;
    let mut tcp = listener.accept()?;
    bench("tcp", &mut tcp, quick)?;
    finish(&mut tcp, &mut child)?;
    Ok(())
}

/// `TALARIA_SPIN_US` sets the shm spin before sleeping (both processes).
fn spin_override() -> Option<Duration> {
    let us: u64 = std::env::var("TALARIA_SPIN_US").ok()?.parse().ok()?;
    Some(Duration::from_micros(us))
}

fn arg(args: &[String], i: usize) -> AnyResult<&str> {
    Ok(args.get(i).ok_or("missing argument")?.as_str())
}

fn spawn(flag: &str, target: &str) -> AnyResult<Child> {
    Ok(Command::new(std::env::current_exe()?).args([flag, target]).spawn()?)
}

fn finish(conn: &mut dyn Connection, child: &mut Child) -> AnyResult<()> {
    conn.send(&FrameHeader::new(FrameKind::Shutdown), &[])?;
    child.wait()?;
    Ok(())
}

/// The peer: echo calls, swallow stream frames, answer Ping with Pong.
fn echo(conn: &mut dyn Connection) -> AnyResult<()> {
    let mut checksum = 0u64;
    loop {
        let mut frame = conn.recv(None)?;
        match frame.kind {
            FrameKind::Shutdown => return Ok(()),
            FrameKind::Ping => frame.reply(&FrameHeader::new(FrameKind::Pong), &[])?,
            FrameKind::Call if frame.call_kind == STREAM => {
                checksum = checksum.wrapping_add(sum_words(frame.payload()));
                black_box(checksum);
            }
            _ => {
                let answer = FrameHeader { kind: FrameKind::Result, ..*frame.header() };
                frame.reply_with(answer, &mut |input, out| out.copy_from_slice(input))?;
            }
        }
    }
}

fn sum_words(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).fold(0u64, u64::wrapping_add)
}

fn bench(label: &str, conn: &mut dyn Connection, quick: bool) -> AnyResult<()> {
    let scale = if quick { 10 } else { 1 };
    for (size, iters) in [(0, 20_000), (4 * KIB, 10_000), (MIB, 1_000), (16 * MIB, 100)] {
        let iters = (iters / scale).max(10);
        let rtts = ping_pong(conn, size, iters)?;
        let p50 = percentile(&rtts, 0.50);
        let p99 = percentile(&rtts, 0.99);
        let gbps = if size > 0 { format!(", echo {:.2} GB/s", 2.0 * size as f64 / p50.as_secs_f64() / 1e9) } else { String::new() };
        println!("{label} ping-pong {:>9}: p50 {:>10.1?}  p99 {:>10.1?}{gbps}  ({iters} round trips)", human(size), p50, p99);
    }
    for (size, frames) in [(MIB, 2048), (16 * MIB, 128)] {
        let frames = (frames / scale).max(8);
        let secs = stream(conn, size, frames)?;
        println!(
            "{label} stream    {:>9}: {:.2} GB/s one way ({frames} frames, read by the peer)",
            human(size),
            (size * frames) as f64 / secs / 1e9
        );
    }
    println!();
    Ok(())
}

fn ping_pong(conn: &mut dyn Connection, size: usize, iters: usize) -> AnyResult<Vec<Duration>> {
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let header = FrameHeader::bytes(FrameKind::Call, size);
    let warmup = iters / 10 + 1;
    let mut rtts = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let start = Instant::now();
        conn.send(&header.with_call(i as u64, 0, 0, 0), &src)?;
        let answer = conn.recv(TIMEOUT)?;
        let elapsed = start.elapsed();
        if answer.call_id != i as u64 || answer.payload().len() != size {
            return Err(format!("bad echo for frame {i}").into());
        }
        black_box(answer.payload().last());
        if i >= warmup {
            rtts.push(elapsed);
        }
    }
    Ok(rtts)
}

/// Seconds to push `frames` frames of `size` bytes and get the final Pong.
fn stream(conn: &mut dyn Connection, size: usize, frames: usize) -> AnyResult<f64> {
    let src: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
    let header = FrameHeader::bytes(FrameKind::Call, size);
    // Warm-up lap (touches the ring pages and socket buffers).
    for i in 0..4 {
        conn.send(&header.with_call(i, 0, 0, STREAM), &src)?;
    }
    sync(conn)?;
    let start = Instant::now();
    for i in 0..frames {
        conn.send(&header.with_call(i as u64, 0, 0, STREAM), &src)?;
    }
    sync(conn)?;
    Ok(start.elapsed().as_secs_f64())
}

fn sync(conn: &mut dyn Connection) -> AnyResult<()> {
    conn.send(&FrameHeader::new(FrameKind::Ping), &[])?;
    let pong = conn.recv(TIMEOUT)?;
    if pong.kind != FrameKind::Pong {
        return Err(format!("expected Pong, got {:?}", pong.kind).into());
    }
    Ok(())
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn human(bytes: usize) -> String {
    match bytes {
        0 => "0 B".into(),
        b if b >= MIB => format!("{} MiB", b / MIB),
        b if b >= KIB => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}
