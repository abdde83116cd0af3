//! `rtt`: one connection's cached round trip at several spacings between
//! requests, and (`--tcp-echo`) a bare blocking TCP echo's at the same
//! spacings, as this machine's own baseline.
//!
//! Why: a server that was idle between two requests answers the second one
//! later than one that never went idle. Its threads have parked, the VM's
//! vCPU has halted (on a Firecracker VM an idle vCPU is a halted host thread
//! that must be woken), caches and branch predictors have gone cold; the
//! client's side, idle too, pays the same. None of this is the server's
//! code, and a do-nothing echo pays it as well. So a floor measured back to
//! back (the fastest the server can answer) is not what users arriving a few
//! milliseconds apart can get: the load tester's report therefore compares
//! the users' L1-served answers also with a floor taken at the users' own
//! pace (`run/setup.rs`, `paced_round_trip_floor`). This command shows the
//! dependence itself, so that anyone can reproduce it on their machine.
//!
//! How: one connection (tenant `lt-rtt`) runs a line the server answers from
//! its L1 cache, one request at a time, sent at fixed times `start + i ×
//! spacing` (back to back for 0). Only L1-served answers count. The client
//! runs on a thread of its own with a single-threaded runtime and waits for
//! a send time with `std::thread::sleep` (precise to the kernel's timer
//! slack, unlike tokio's millisecond timer), so it idles between requests as
//! a real client does and can keep sub-millisecond spacings. The TCP echo's
//! client does the same with a blocking `std::net::TcpStream`; its server is
//! a std thread accepting and one std thread per connection echoing.

use crate::args::RttArgs;
use crate::hist::{self, Hist};
use anyhow::{bail, ensure, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voxterm::client::{Client, ClientOptions};
use voxterm_protocol::ServedFrom;

/// The line timed: answered from the L1 cache once it has run.
const LINE: &str = "echo voxterm-loadtest-rtt";
/// What it prints.
const LINE_OUTPUT: &[u8] = b"voxterm-loadtest-rtt\n";
/// The connection's tenant.
const TENANT: &str = "lt-rtt";
/// Warm-up round trips before the first timed one, at least (more until one
/// is served from L1, up to [`WARM_UP_MAX`]).
const WARM_UP_MIN: usize = 5;
/// Warm-up round trips at most.
const WARM_UP_MAX: usize = 50;
/// Longest wait for the connection or one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// What the TCP echo's client sends each time.
const PING: &[u8; 16] = b"voxterm-rtt-ping";

pub(crate) async fn rtt(a: RttArgs) -> anyhow::Result<ExitCode> {
    match measure(a).await {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => {
            eprintln!("loadtest: rtt: a spacing had no answer served from L1");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("loadtest: rtt: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Measures and prints; false when a spacing had no L1-served answer.
async fn measure(a: RttArgs) -> anyhow::Result<bool> {
    let url = a.url.clone();
    let gaps = a.gaps.clone();
    let samples = a.samples;
    let all_l1 = tokio::task::spawn_blocking(move || voxterm_client(&url, &gaps, samples))
        .await
        .context("the measuring thread failed")??;
    if a.tcp_echo {
        println!("bare blocking TCP echo on 127.0.0.1 (std threads, no tokio), same spacings:");
        let gaps = a.gaps.clone();
        tokio::task::spawn_blocking(move || tcp_echo(&gaps, samples))
            .await
            .context("the TCP echo's thread failed")??;
    }
    Ok(all_l1)
}

/// The voxterm side, on this (blocking) thread with a runtime of its own.
fn voxterm_client(url: &str, gaps: &[Duration], samples: u32) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")?;
    rt.block_on(async {
        let mut c = connect(url).await?;
        warm_up(&mut c, url).await?;
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!(
            "voxterm at {url}, one connection, `{LINE}` served from L1, {samples} per spacing ({cores} cores):"
        );
        let mut all_l1 = true;
        for &gap in gaps {
            let mut h = hist::new_hist();
            let start = Instant::now();
            for i in 1..=samples {
                sleep_until_send(start, gap, i)?;
                let sent = Instant::now();
                let done = answer(&mut c, url).await?;
                let us = sent.elapsed().as_micros() as u64;
                if done.exit.map(|e| e.served_from) == Some(ServedFrom::L1) {
                    hist::record(&mut h, us);
                }
            }
            all_l1 &= !h.is_empty();
            println!("{}", line("", gap, &h, samples));
        }
        let _ = c.close().await;
        Ok(all_l1)
    })
}

/// Connects as tenant `lt-rtt`.
pub(crate) async fn connect(url: &str) -> anyhow::Result<Client> {
    let opts = ClientOptions {
        name: "voxterm-loadtest-rtt".into(),
        tenant: Some(TENANT.into()),
        ..ClientOptions::default()
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, Client::connect(url, opts)).await {
        Ok(c) => c.with_context(|| format!("no voxterm server answers at {url}")),
        Err(_) => {
            bail!("no voxterm server answers at {url} (no connection within {ANSWER_TIMEOUT:?})")
        }
    }
}

/// One run of [`LINE`], within [`ANSWER_TIMEOUT`].
pub(crate) async fn answer(
    c: &mut Client,
    url: &str,
) -> anyhow::Result<voxterm::client::Completed> {
    match tokio::time::timeout(ANSWER_TIMEOUT, c.run(0, LINE, 0)).await {
        Ok(done) => done.with_context(|| format!("`{LINE}` at {url}")),
        Err(_) => bail!("{url} did not answer `{LINE}` within {ANSWER_TIMEOUT:?}"),
    }
}

/// Runs [`LINE`] until it is served from L1 (and at least [`WARM_UP_MIN`]
/// times), checking that it runs at all.
pub(crate) async fn warm_up(c: &mut Client, url: &str) -> anyhow::Result<()> {
    let mut l1 = false;
    for i in 0..WARM_UP_MAX {
        let done = answer(c, url).await?;
        ensure!(
            done.exit.as_ref().and_then(|e| e.code) == Some(0) && done.stdout == LINE_OUTPUT,
            "{url} did not run `{LINE}`: exit {:?}, error {:?}, stdout {:?}",
            done.exit,
            done.error,
            String::from_utf8_lossy(&done.stdout)
        );
        l1 = done.exit.map(|e| e.served_from) == Some(ServedFrom::L1);
        if l1 && i + 1 >= WARM_UP_MIN {
            break;
        }
    }
    ensure!(
        l1,
        "{url} never served `{LINE}` from its L1 cache in {WARM_UP_MAX} tries (is its cache off?)"
    );
    Ok(())
}

/// Sleeps (the thread, not a timer task) until the `i`-th send time,
/// `start + i × gap`; at once if that time is past, or `gap` is 0.
pub(crate) fn sleep_until_send(start: Instant, gap: Duration, i: u32) -> anyhow::Result<()> {
    if gap.is_zero() {
        return Ok(());
    }
    let due = gap
        .checked_mul(i)
        .and_then(|d| start.checked_add(d))
        .with_context(|| format!("spacing {gap:?} × {i} is out of range"))?;
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
    Ok(())
}

/// A bare blocking TCP echo on 127.0.0.1 and one client connection to it,
/// timed at each spacing as [`voxterm_client`] does.
fn tcp_echo(gaps: &[Duration], samples: u32) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .context("cannot listen on 127.0.0.1 for the TCP echo")?;
    let addr = listener
        .local_addr()
        .context("the TCP echo's listening address")?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("rtt-echo-accept".into())
        .spawn(move || accept(listener, &stopped))
        .context("cannot start the TCP echo's thread")?;
    let result = tcp_client(addr, gaps, samples);
    // Wake the accepting thread so that it sees `stop` and ends.
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);
    result
}

/// The TCP echo's accepting thread: one echoing thread per connection,
/// until `stop`.
fn accept(listener: TcpListener, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(mut s) = stream else { continue };
        let _ = s.set_nodelay(true);
        let _ = std::thread::Builder::new()
            .name("rtt-echo".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
    }
}

/// The TCP echo's client: a warm-up, then each spacing.
fn tcp_client(addr: SocketAddr, gaps: &[Duration], samples: u32) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr).context("cannot connect to the TCP echo")?;
    s.set_nodelay(true).context("TCP_NODELAY on the TCP echo")?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))
        .context("a read timeout on the TCP echo")?;
    let mut buf = [0u8; PING.len()];
    let mut ping = |s: &mut TcpStream| -> anyhow::Result<()> {
        s.write_all(PING).context("writing to the TCP echo")?;
        s.read_exact(&mut buf).context("reading the TCP echo")?;
        ensure!(&buf == PING, "the TCP echo answered {buf:?}");
        Ok(())
    };
    for _ in 0..WARM_UP_MAX {
        ping(&mut s)?;
    }
    for &gap in gaps {
        let mut h = hist::new_hist();
        let start = Instant::now();
        for i in 1..=samples {
            sleep_until_send(start, gap, i)?;
            let sent = Instant::now();
            ping(&mut s)?;
            hist::record(&mut h, sent.elapsed().as_micros() as u64);
        }
        println!("{}", line("tcp echo ", gap, &h, samples));
    }
    Ok(())
}

/// `spacing 5 ms: p50 212 µs · p90 301 µs · p99 410 µs (n=300)`, with the
/// count asked for when fewer answers counted.
fn line(prefix: &str, gap: Duration, h: &Hist, asked: u32) -> String {
    let spacing = spacing(gap);
    let n = h.len();
    if n == 0 {
        return format!("{prefix}spacing {spacing}: no answer served from L1 (of {asked})");
    }
    let q = |q: f64| h.value_at_quantile(q);
    let of = if n < u64::from(asked) {
        format!(" of {asked}")
    } else {
        String::new()
    };
    format!(
        "{prefix}spacing {spacing}: p50 {} µs · p90 {} µs · p99 {} µs (n={n}{of})",
        q(0.50),
        q(0.90),
        q(0.99)
    )
}

/// A spacing for people: `0 (back to back)`, `200 µs`, `5 ms`, else humantime's.
fn spacing(gap: Duration) -> String {
    if gap.is_zero() {
        "0 (back to back)".to_owned()
    } else if gap.as_nanos() % 1_000_000 == 0 {
        format!("{} ms", gap.as_millis())
    } else if gap < Duration::from_millis(1) && gap.as_nanos() % 1_000 == 0 {
        format!("{} µs", gap.as_micros())
    } else {
        humantime::format_duration(gap).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacings_read_as_people_write_them() {
        assert_eq!(spacing(Duration::ZERO), "0 (back to back)");
        assert_eq!(spacing(Duration::from_micros(200)), "200 µs");
        assert_eq!(spacing(Duration::from_millis(5)), "5 ms");
        assert_eq!(spacing(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(spacing(Duration::from_micros(1500)), "1ms 500us");
    }

    #[test]
    fn a_line_names_the_spacing_the_percentiles_and_the_count() {
        let mut h = hist::new_hist();
        for us in 1..=100 {
            hist::record(&mut h, us);
        }
        assert_eq!(
            line("", Duration::from_millis(5), &h, 100),
            "spacing 5 ms: p50 50 µs · p90 90 µs · p99 99 µs (n=100)"
        );
        assert_eq!(
            line("tcp echo ", Duration::ZERO, &h, 120),
            "tcp echo spacing 0 (back to back): p50 50 µs · p90 90 µs · p99 99 µs (n=100 of 120)"
        );
        assert_eq!(
            line("", Duration::from_millis(1), &hist::new_hist(), 3),
            "spacing 1 ms: no answer served from L1 (of 3)"
        );
    }

    #[test]
    fn no_sleep_back_to_back_and_past_send_times_are_not_waited_for() {
        let start = Instant::now();
        sleep_until_send(start, Duration::ZERO, 1000).unwrap();
        let past = start.checked_sub(Duration::from_secs(1)).unwrap_or(start);
        sleep_until_send(past, Duration::from_millis(1), 10).unwrap();
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}
