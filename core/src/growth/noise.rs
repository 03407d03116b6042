//! Gaussian noise from a counter-based generator (Philox4x32-10).
//!
//! Growth adds `ε ~ N(0, (α·σ)²)` to copied experts. A counter-based generator makes element
//! `i` of a tensor a pure function of `(seed, stream, i)`: the output does not depend on the
//! order tensors are produced in or on the thread count, and the GPU runtime can produce the
//! very same numbers in WGSL (Philox needs only 32-bit integer multiplies).

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds: four random words for one 128-bit counter and 64-bit key.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
    }
    c
}

/// A uniform in (0, 1] from 32 random bits (never 0, so `ln` is finite).
fn uniform(x: u32) -> f32 {
    ((x >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0)
}

/// Natural log for `x` in (0, 1], branch-free (so the loop vectorises) and written out rather
/// than taken from libm, so that every platform — and the WGSL port — computes the same value.
/// `x = m·2^e` with `m` in [√½, √2), then `ln m = 2·atanh((m−1)/(m+1))` by its odd series;
/// relative error below 1e-7.
#[inline(always)]
fn ln_unit(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series =
        t * (2.0 + t2 * (2.0 / 3.0 + t2 * (2.0 / 5.0 + t2 * (2.0 / 7.0 + t2 * (2.0 / 9.0)))));
    e as f32 * std::f32::consts::LN_2 + series
}

/// `(sin 2πu, cos 2πu)` for `u` in (0, 1], branch-free: reduce to the nearest quarter turn,
/// evaluate Taylor polynomials on [−π/4, π/4] (error below 4e-7), rotate back by the quadrant
/// with sign and swap masks.
#[inline(always)]
fn sin_cos_turns(u: f32) -> (f32, f32) {
    let q = (u * 4.0 + 0.5) as i32; // u > 0: truncation is floor
    let a = (u - q as f32 * 0.25) * std::f32::consts::TAU;
    let a2 = a * a;
    let s = a * (1.0 - a2 / 6.0 * (1.0 - a2 / 20.0 * (1.0 - a2 / 42.0 * (1.0 - a2 / 72.0))));
    let c = 1.0 - a2 / 2.0 * (1.0 - a2 / 12.0 * (1.0 - a2 / 30.0 * (1.0 - a2 / 56.0)));
    let swap = q & 1 == 1;
    let (x, y) = (if swap { c } else { s }, if swap { s } else { c });
    let sin_sign = if q & 2 == 2 { -1.0 } else { 1.0 };
    let cos_sign = if (q + 1) & 2 == 2 { -1.0 } else { 1.0 };
    (x * sin_sign, y * cos_sign)
}

fn key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// Philox blocks per batch: the batch's arithmetic is written as loops over plain arrays so
/// that the compiler turns it into SIMD code.
const BATCH: usize = 16;

/// Standard normals for Philox blocks `first..first + BATCH` of a stream: block `j` gives four
/// words → two Box–Muller pairs → normals for elements `4j..4j+4`.
#[inline(always)]
fn normal_batch(key: [u32; 2], stream: u64, first: u64, out: &mut [f32; 4 * BATCH]) {
    let mut w = [[0u32; 4]; BATCH];
    for (b, w) in w.iter_mut().enumerate() {
        let j = first + b as u64;
        *w = philox4x32(
            [
                j as u32,
                (j >> 32) as u32,
                stream as u32,
                (stream >> 32) as u32,
            ],
            key,
        );
    }
    let mut radius = [0.0f32; 2 * BATCH];
    let mut turns = [0.0f32; 2 * BATCH];
    for i in 0..2 * BATCH {
        radius[i] = uniform(w[i / 2][2 * (i % 2)]);
        turns[i] = uniform(w[i / 2][2 * (i % 2) + 1]);
    }
    for r in radius.iter_mut() {
        *r = (-2.0 * ln_unit(*r)).sqrt();
    }
    for i in 0..2 * BATCH {
        let (sin, cos) = sin_cos_turns(turns[i]);
        out[2 * i] = radius[i] * cos;
        out[2 * i + 1] = radius[i] * sin;
    }
}

/// Standard normal values for elements `0..n` of stream `stream` under `seed`.
pub fn normals(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    add_scaled_normals(seed, stream, 1.0, &mut out);
    out
}

/// Add `scale · z_i` to `values[i]`, with `z_i` the standard normals of [`normals`] (same
/// numbers, no temporary vector). Element `i` depends only on `(seed, stream, i)`.
pub fn add_scaled_normals(seed: u64, stream: u64, scale: f32, values: &mut [f32]) {
    let key = key(seed);
    let mut z = [0.0f32; 4 * BATCH];
    for (b, chunk) in values.chunks_mut(4 * BATCH).enumerate() {
        normal_batch(key, stream, (b * BATCH) as u64, &mut z);
        chunk.iter_mut().zip(&z).for_each(|(v, z)| *v += scale * z);
    }
}

/// A stable 64-bit stream id for a tensor, from small integers that identify it.
pub fn stream_id(parts: &[u64]) -> u64 {
    // FNV-1a over the parts' bytes: stable across platforms and releases.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_published_known_answers() {
        // Random123's known-answer tests for philox4x32_10.
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32([0xffffffff; 4], [0xffffffff; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn the_portable_ln_and_sin_cos_match_libm() {
        for i in 1..=100_000u32 {
            let u = i as f32 / 100_000.0;
            let (l, want) = (ln_unit(u), u.ln());
            assert!(
                (l - want).abs() <= 2e-7 * want.abs().max(1.0),
                "ln({u}) = {l}, libm {want}"
            );
            let (s, c) = sin_cos_turns(u);
            let (ws, wc) = (std::f32::consts::TAU * u).sin_cos();
            assert!(
                (s - ws).abs() < 1e-6 && (c - wc).abs() < 1e-6,
                "sincos(2π·{u}) = ({s}, {c}), libm ({ws}, {wc})"
            );
        }
        assert_eq!(ln_unit(1.0), 0.0);
        assert!((ln_unit(uniform(0)) - (1.0f32 / 16_777_216.0).ln()).abs() < 1e-5);
    }

    #[test]
    fn normals_are_standard_and_prefix_stable() {
        let v = normals(42, 7, 100_001);
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        // Element i does not depend on how many elements were asked for.
        assert_eq!(&normals(42, 7, 13)[..], &v[..13]);
        assert_ne!(normals(42, 8, 4), normals(42, 7, 4));
        assert_ne!(normals(43, 7, 4), normals(42, 7, 4));
        let mut v = vec![1.0f32; 13];
        add_scaled_normals(42, 7, 0.5, &mut v);
        for (i, (a, z)) in v.iter().zip(normals(42, 7, 13)).enumerate() {
            assert_eq!(*a, 1.0 + 0.5 * z, "index {i}");
        }
    }
}
