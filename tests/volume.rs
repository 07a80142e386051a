//! Volume through the real binary: exact totals for a million lines, and garbage at volume.

mod common;

use common::start;
use std::time::Duration;

/// Sends `datagrams` while keeping at most `window` of them ahead of what the gateway has
/// received, so the test measures correctness, not the kernel's buffer.
fn send_paced(gw: &common::Gateway, datagrams: impl Iterator<Item = Vec<u8>>, window: u64) -> u64 {
    let sender = gw.sender();
    let baseline = gw.counter("statsgate_datagrams_received_total", "");
    let mut sent = 0u64;
    let mut received = 0u64;
    for d in datagrams {
        while sent - received >= window {
            received = gw.counter("statsgate_datagrams_received_total", "") - baseline;
            if sent - received >= window {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        sender.send(&d).expect("send");
        sent += 1;
    }
    sent
}

#[test]
fn a_million_counter_lines_over_1000_series_add_up_exactly() {
    const LINES: u64 = 1_000_000;
    const SERIES: u64 = 1_000;
    const PER_DATAGRAM: u64 = 20;
    let gw = start("flush:\n  interval: 1s\n");
    let datagrams = (0..LINES / PER_DATAGRAM).map(|i| {
        let mut d = String::new();
        for j in 0..PER_DATAGRAM {
            let series = (i * PER_DATAGRAM + j) % SERIES;
            d.push_str(&format!("load.counter.{series}:1|c\n"));
        }
        d.into_bytes()
    });
    let sent = send_paced(&gw, datagrams, 2_000);
    assert_eq!(sent, LINES / PER_DATAGRAM);
    gw.wait_for("every line accepted", Duration::from_secs(120), |g| {
        g.counter("statsgate_lines_accepted_total", "type=\"counter\"") == LINES
    });
    assert_eq!(gw.counter("statsgate_kernel_receive_drops_total", ""), 0);
    let (flushes, status) = gw.stop();
    assert!(status.success());

    let mut total = 0.0;
    let mut per_series = std::collections::HashMap::new();
    for m in flushes.iter().flatten() {
        let v = m["value"].as_f64().expect("value");
        total += v;
        *per_series
            .entry(m["name"].as_str().unwrap().to_owned())
            .or_insert(0.0) += v;
    }
    assert_eq!(
        total, LINES as f64,
        "printed totals add up to exactly a million"
    );
    assert_eq!(per_series.len() as u64, SERIES);
    assert!(per_series.values().all(|v| *v == (LINES / SERIES) as f64));
}

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn garbage(noise: &mut Noise, i: u64) -> Vec<u8> {
    const SHAPES: &[&[u8]] = &[
        b"page.views:1|c|@0.5|#a:b,c",
        b"cpu:3|g|#{'service': 'nova'}",
        b"lat:1:2:3|ms|T1700000000",
        b"_sc|db.up|2|h:x",
        b"u:alice|s\nbad\r\n",
    ];
    let len = (noise.next() % 1500) as usize;
    match i % 3 {
        // Random bytes.
        0 => (0..len).map(|_| noise.next() as u8).collect(),
        // A valid-looking datagram truncated anywhere.
        1 => {
            let shape = SHAPES[(noise.next() % SHAPES.len() as u64) as usize];
            shape[..(noise.next() as usize % (shape.len() + 1))].to_vec()
        }
        // Statsd punctuation soup.
        _ => {
            const SOUP: &[u8] = b":|#@,;={}'\"\n\rTc0123456789ab._-+ ";
            (0..len % 200)
                .map(|_| SOUP[(noise.next() % SOUP.len() as u64) as usize])
                .collect()
        }
    }
}

#[test]
fn a_hundred_thousand_garbage_datagrams_are_all_counted_and_memory_stays_flat() {
    const DATAGRAMS: u64 = 100_000;
    let gw = start("flush:\n  interval: 1s\n");
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut want_lines = 0u64;
    let mut want_heartbeats = 0u64;
    let mut all = Vec::with_capacity(DATAGRAMS as usize);
    for i in 0..DATAGRAMS {
        let d = garbage(&mut noise, i);
        if statsgate::parse::is_heartbeat(&d) {
            want_heartbeats += 1;
        } else {
            want_lines += statsgate::parse::lines(&d).count() as u64;
        }
        all.push(d);
    }
    let (first_half, second_half) = all.split_at(all.len() / 2);
    send_paced(&gw, first_half.iter().cloned(), 1_000);
    gw.wait_for("first half received", Duration::from_secs(60), |g| {
        g.counter("statsgate_datagrams_received_total", "") == first_half.len() as u64
    });
    let rss_half = gw.rss_kib();
    send_paced(&gw, second_half.iter().cloned(), 1_000);
    gw.wait_for("every line counted", Duration::from_secs(60), |g| {
        g.lines_counted() == want_lines
    });

    assert_eq!(
        gw.counter("statsgate_datagrams_received_total", ""),
        DATAGRAMS
    );
    assert_eq!(
        gw.counter("statsgate_heartbeats_received_total", ""),
        want_heartbeats
    );
    assert_eq!(gw.counter("statsgate_kernel_receive_drops_total", ""), 0);
    let rss_end = gw.rss_kib();
    // Twice the volume must not mean twice the memory: state is per interval and bounded.
    assert!(
        rss_end < rss_half + 16 * 1024,
        "RSS grew from {rss_half} KiB to {rss_end} KiB"
    );
    let (_, status) = gw.stop();
    assert!(status.success(), "no crash: {status:?}");
}
