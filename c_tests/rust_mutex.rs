//! Threads contending on one `std::sync::Mutex`: each holds it for 2 ms (sleeping inside),
//! so the others wait in std's futex-based lock (`lock_contended`), never in pthread.
//! Runs SECONDS (argv[1], default 3); prints waits=N, the lock calls that waited 1 ms or
//! more, and waited_ms=N, their time.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Takes the lock, holds it 2 ms; returns how long taking it took.
#[inline(never)]
fn hold_a_while(m: &Mutex<u64>) -> Duration {
    let start = std::time::Instant::now();
    let mut g = m.lock().unwrap();
    let waited = start.elapsed();
    *g += 1;
    std::thread::sleep(Duration::from_millis(2));
    waited
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let m = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let waits = Arc::new(AtomicU64::new(0));
    let waited_ms = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (m, stop, waits, waited_ms) =
                (m.clone(), stop.clone(), waits.clone(), waited_ms.clone());
            std::thread::Builder::new()
                .name(format!("worker{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let waited = hold_a_while(&m);
                        if waited >= Duration::from_millis(1) {
                            waits.fetch_add(1, Ordering::Relaxed);
                            waited_ms.fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    eprintln!("waits={}", waits.load(Ordering::Relaxed));
    eprintln!("waited_ms={}", waited_ms.load(Ordering::Relaxed));
}
