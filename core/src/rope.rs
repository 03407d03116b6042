//! Rotary position embeddings: the one builder of the cos/sin tables that the CPU reference,
//! the WGSL runtime (uploaded as a buffer) and the trainer all use, so the three cannot drift
//! apart in how they compute a frequency or an angle.

use crate::config::{Attention, ModelConfig};

/// Rotary tables for one rotary dimension `dim`: `cos`/`sin` `[T, dim/2]`, with frequency `i` =
/// `base^(-2i/dim)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub half: usize,
    pub positions: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Rope {
    pub fn new(dim: usize, base: f32, positions: usize) -> Rope {
        let half = dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for i in 0..half {
                // transformers computes the inverse frequency and the angle in f32.
                let inv = 1.0f32 / base.powf((2 * i) as f32 / dim as f32);
                let angle = p as f32 * inv;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Rope {
            half,
            positions,
            cos,
            sin,
        }
    }

    /// The tables a model's attention rotates with, for positions `0..positions`: over each
    /// head for standard attention, over the `qk_rope_head_dim` part for MLA.
    pub fn for_model(cfg: &ModelConfig, positions: usize) -> Rope {
        let dim = match &cfg.attention {
            Attention::Standard { .. } => cfg.head_dim,
            Attention::Mla(m) => m.qk_rope_head_dim,
        };
        Rope::new(dim, cfg.rope_theta, positions)
    }

    /// `cos` then `sin`, as one buffer (what the GPU kernel binds).
    pub fn packed(&self) -> Vec<f32> {
        let mut v = self.cos.clone();
        v.extend_from_slice(&self.sin);
        v
    }

    /// Rotate one head vector at position `pos`. `interleaved`: pairs `(2i, 2i+1)` (DeepSeek);
    /// otherwise `(i, i + d/2)` (Llama-style `rotate_half`).
    pub fn apply(&self, v: &mut [f32], pos: usize, interleaved: bool) {
        let h = self.half;
        let (c, s) = (
            &self.cos[pos * h..(pos + 1) * h],
            &self.sin[pos * h..(pos + 1) * h],
        );
        for i in 0..h {
            let (a, b) = if interleaved {
                (2 * i, 2 * i + 1)
            } else {
                (i, i + h)
            };
            let (x, y) = (v[a], v[b]);
            v[a] = x * c[i] - y * s[i];
            v[b] = y * c[i] + x * s[i];
        }
    }
}
