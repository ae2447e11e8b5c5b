//! A Rust program for the symbolizer's Rust demangling: CPU burns in a function inside a
//! module and in a generic function, whose mangled names carry a hash and type
//! parameters. Argument: units of 1M iterations (default 300).

mod burner {
    #[inline(never)]
    pub fn burn_rust(n: u64) -> u64 {
        let mut x = n;
        for _ in 0..n {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x = std::hint::black_box(x);
        }
        x
    }

    #[inline(never)]
    pub fn generic_burn<T: Into<u64>>(n: T) -> u64 {
        // Not a tail call, so this frame stays on the stack.
        burn_rust(n.into()) ^ 1
    }
}

fn main() {
    let units: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let mut sink = 0;
    for _ in 0..units {
        sink ^= burner::generic_burn(1_000_000u32);
    }
    println!("rust_burn done {}", sink & 1);
}
