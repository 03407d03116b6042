//! Rotary position embeddings: the one builder of the cos/sin tables that the CPU reference,
//! the WGSL runtime (uploaded as a buffer) and the trainer all use, so the three cannot drift
//! apart in how they compute a frequency or an angle — and the scalings transformers implements
//! (`linear`, `dynamic`, `yarn` with DeepSeek's `mscale`/`mscale_all_dim`, `llama3`), computed
//! as transformers 5 computes them (`modeling_rope_utils.py`): inverse frequencies and angles
//! in f32, cos and sin multiplied by the scaling's attention factor.

use crate::config::{Attention, ModelConfig, RawConfig};
use crate::error::{Error, Result};
use serde_json::Value;

/// How the rotary frequencies are scaled (`rope_parameters` / `rope_scaling`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f32 },
    /// Dynamic NTK: the base grows with the sequence once it passes `max_positions`.
    Dynamic { factor: f32, max_positions: usize },
    /// YaRN: high frequencies kept, low ones interpolated by `factor`, a ramp in between; cos
    /// and sin scaled by the attention factor.
    Yarn {
        factor: f32,
        original_max_positions: usize,
        beta_fast: f64,
        beta_slow: f64,
        mscale: Option<f64>,
        mscale_all_dim: Option<f64>,
        attention_factor: Option<f64>,
        /// Round the correction range to whole dimensions (transformers' default; gpt-oss
        /// turns it off).
        truncate: bool,
    },
    /// Llama 3.1's piecewise scaling by wavelength.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_positions: usize,
    },
    /// A type moegrow does not compute (the commands that compute refuse it by name).
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f32,
    pub scaling: RopeScaling,
}

/// YaRN's attention scale: `0.1 · m · ln(s) + 1` for `s > 1`.
pub fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

impl RopeConfig {
    /// From either spelling: the legacy `rope_scaling` (when set) or transformers 5's
    /// `rope_parameters`, each with `rope_type` or `type`; the base from the dict or the
    /// top-level `rope_theta` (10000 if neither).
    pub(crate) fn parse(raw: RawConfig) -> Result<RopeConfig> {
        let legacy = raw
            .get("rope_scaling")
            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
        let params = legacy.or_else(|| raw.get("rope_parameters"));
        let empty = serde_json::Map::new();
        let p = match params {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(other) => {
                return Err(Error::config(format!(
                    "`rope_parameters` must be an object, found {other}"
                )))
            }
        };
        let num = |key: &str| -> Result<Option<f64>> {
            match p.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    Error::config(format!("`rope_parameters.{key}` must be a number, found {v}"))
                }),
            }
        };
        let theta = match num("rope_theta")? {
            Some(t) => t as f32,
            None => raw.f32_or("rope_theta", 10000.0)?,
        };
        let ty = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let max_pos = raw.opt_usize("max_position_embeddings")?;
        let original = || -> Result<usize> {
            // A top-level `original_max_position_embeddings` wins, then the dict's, then
            // `max_position_embeddings` (transformers' `standardize_rope_params`).
            raw.opt_usize("original_max_position_embeddings")?
                .or(num("original_max_position_embeddings")?.map(|v| v as usize))
                .or(max_pos)
                .ok_or_else(|| {
                    Error::config(format!(
                        "rope type `{ty}` needs `original_max_position_embeddings` or `max_position_embeddings`"
                    ))
                })
        };
        let factor = || -> Result<f32> {
            num("factor")?.map(|f| f as f32).ok_or_else(|| {
                Error::config(format!("rope type `{ty}` needs `rope_parameters.factor`"))
            })
        };
        let scaling = match ty {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: factor()? },
            "dynamic" => RopeScaling::Dynamic {
                factor: factor()?,
                max_positions: max_pos.ok_or_else(|| {
                    Error::config("dynamic RoPE needs `max_position_embeddings`")
                })?,
            },
            "yarn" => {
                let original_max_positions = original()?;
                let factor = match num("factor")? {
                    Some(f) => f as f32,
                    None if p.contains_key("factor") => {
                        // transformers: a null factor is max / original.
                        max_pos.unwrap_or(original_max_positions) as f32
                            / original_max_positions as f32
                    }
                    None => return Err(Error::config("rope type `yarn` needs `rope_parameters.factor`")),
                };
                let nonzero = |v: Option<f64>| v.filter(|x| *x != 0.0);
                RopeScaling::Yarn {
                    factor,
                    original_max_positions,
                    beta_fast: nonzero(num("beta_fast")?).unwrap_or(32.0),
                    beta_slow: nonzero(num("beta_slow")?).unwrap_or(1.0),
                    mscale: nonzero(num("mscale")?),
                    mscale_all_dim: nonzero(num("mscale_all_dim")?),
                    attention_factor: num("attention_factor")?,
                    truncate: p.get("truncate").and_then(Value::as_bool).unwrap_or(true),
                }
            }
            "llama3" => RopeScaling::Llama3 {
                factor: factor()?,
                low_freq_factor: num("low_freq_factor")?.ok_or_else(|| {
                    Error::config("rope type `llama3` needs `low_freq_factor`")
                })? as f32,
                high_freq_factor: num("high_freq_factor")?.ok_or_else(|| {
                    Error::config("rope type `llama3` needs `high_freq_factor`")
                })? as f32,
                original_max_positions: original()?,
            },
            other => RopeScaling::Unsupported(other.to_string()),
        };
        Ok(RopeConfig { theta, scaling })
    }

    /// What cos and sin are multiplied by (YaRN's attention factor; 1 otherwise).
    pub fn attention_factor(&self) -> f32 {
        match &self.scaling {
            RopeScaling::Yarn {
                factor,
                mscale,
                mscale_all_dim,
                attention_factor,
                ..
            } => {
                let f = *factor as f64;
                (match (attention_factor, mscale, mscale_all_dim) {
                    (Some(a), _, _) => *a,
                    (None, Some(m), Some(a)) => yarn_mscale(f, *m) / yarn_mscale(f, *a),
                    _ => yarn_mscale(f, 1.0),
                }) as f32
            }
            _ => 1.0,
        }
    }

    /// DeepSeek's MLA multiplies its softmax scale by `mscale²` with `mscale =
    /// yarn_mscale(factor, mscale_all_dim)` whenever the RoPE is scaled and `mscale_all_dim`
    /// is set (transformers `DeepseekV3Attention`); 1 otherwise.
    pub fn mla_softmax_factor(&self) -> f64 {
        match &self.scaling {
            RopeScaling::Yarn {
                factor,
                mscale_all_dim: Some(m),
                ..
            } => {
                let s = yarn_mscale(*factor as f64, *m);
                s * s
            }
            _ => 1.0,
        }
    }

    /// The inverse frequencies of a rotary dimension `dim` for a pass over `positions`
    /// positions (dynamic NTK depends on it).
    pub fn inv_freq(&self, dim: usize, positions: usize) -> Vec<f32> {
        let plain = |base: f32| -> Vec<f32> {
            (0..dim.div_ceil(2))
                .map(|i| 1.0f32 / base.powf((2 * i) as f32 / dim as f32))
                .collect()
        };
        let base = self.theta;
        match &self.scaling {
            RopeScaling::Default | RopeScaling::Unsupported(_) => plain(base),
            RopeScaling::Linear { factor } => plain(base).iter().map(|f| f / factor).collect(),
            RopeScaling::Dynamic {
                factor,
                max_positions,
            } => {
                let (f, l) = (*factor as f64, *max_positions as f64);
                let seq = (positions as f64).max(l);
                let d = dim as f64;
                let b = base as f64 * (f * seq / l - (f - 1.0)).powf(d / (d - 2.0));
                plain(b as f32)
            }
            RopeScaling::Yarn {
                factor,
                original_max_positions,
                beta_fast,
                beta_slow,
                truncate,
                ..
            } => {
                let d = dim as f64;
                let l = *original_max_positions as f64;
                let b = base as f64;
                let correction =
                    |rot: f64| d * (l / (rot * 2.0 * std::f64::consts::PI)).ln() / (2.0 * b.ln());
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let high = high.min(d - 1.0);
                let high = if low == high { high + 0.001 } else { high };
                let (low, high) = (low as f32, high as f32);
                (0..dim / 2)
                    .map(|j| {
                        let pos_freq = base.powf((2 * j) as f32 / dim as f32);
                        let extra = 1.0 / pos_freq;
                        let inter = 1.0 / (factor * pos_freq);
                        let ramp = ((j as f32 - low) / (high - low)).clamp(0.0, 1.0);
                        let e = 1.0 - ramp;
                        inter * (1.0 - e) + extra * e
                    })
                    .collect()
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => {
                let old = *original_max_positions as f32;
                let (low_wl, high_wl) = (old / low_freq_factor, old / high_freq_factor);
                plain(base)
                    .into_iter()
                    .map(|inv| {
                        let wl = 2.0 * std::f32::consts::PI / inv;
                        if wl > low_wl {
                            inv / factor
                        } else if wl < high_wl {
                            inv
                        } else {
                            let s = (old / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - s) * inv / factor + s * inv
                        }
                    })
                    .collect()
            }
        }
    }
}

/// Rotary tables for one rotary dimension: `cos`/`sin` `[T, dim/2]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub half: usize,
    pub positions: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Rope {
    /// Plain RoPE with base `base` (frequency `i` = `base^(-2i/dim)`).
    pub fn new(dim: usize, base: f32, positions: usize) -> Rope {
        let cfg = RopeConfig {
            theta: base,
            scaling: RopeScaling::Default,
        };
        Rope::from_config(&cfg, dim, positions)
    }

    /// The tables of a RoPE configuration for a rotary dimension `dim`.
    pub fn from_config(cfg: &RopeConfig, dim: usize, positions: usize) -> Rope {
        let inv = cfg.inv_freq(dim, positions);
        let scale = cfg.attention_factor();
        let half = inv.len();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for f in &inv {
                // transformers multiplies position and frequency in f32.
                let angle = p as f32 * f;
                cos.push(angle.cos() * scale);
                sin.push(angle.sin() * scale);
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
    /// head's rotary part for standard attention, over the `qk_rope_head_dim` part for MLA.
    pub fn for_model(cfg: &ModelConfig, positions: usize) -> Rope {
        Rope::from_config(&cfg.rope, rotary_dim(cfg), positions)
    }

    /// `cos` then `sin`, as one buffer (what the GPU kernel binds).
    pub fn packed(&self) -> Vec<f32> {
        let mut v = self.cos.clone();
        v.extend_from_slice(&self.sin);
        v
    }

    /// Rotate one head vector (its rotary part) at position `pos`. `interleaved`: pairs
    /// `(2i, 2i+1)` (DeepSeek); otherwise `(i, i + d/2)` (Llama-style `rotate_half`).
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

/// The number of dimensions RoPE rotates per head.
pub fn rotary_dim(cfg: &ModelConfig) -> usize {
    match &cfg.attention {
        Attention::Standard { .. } => cfg.rotary_dim,
        Attention::Mla(m) => m.qk_rope_head_dim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: serde_json::Value) -> RopeConfig {
        let Value::Object(m) = json else { panic!() };
        RopeConfig::parse(RawConfig(&m)).unwrap()
    }

    /// DeepSeek-V3's hub RoPE (yarn, factor 40, mscale = mscale_all_dim = 1): attention factor
    /// exactly 1, softmax scale × (0.1·ln 40 + 1)², and the correction range [10, 23] of a
    /// 64-dimensional rotary part — values worked out from transformers' formulas.
    #[test]
    fn deepseek_v3_yarn() {
        let r = cfg(serde_json::json!({
            "max_position_embeddings": 163840, "rope_theta": 10000,
            "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"}
        }));
        assert_eq!(r.attention_factor(), 1.0);
        let s = (192f64).powf(-0.5) * r.mla_softmax_factor();
        assert!((s - 0.1352337788608801).abs() < 1e-12, "{s}");
        let inv = r.inv_freq(64, 16);
        let plain = RopeConfig { theta: 10000.0, scaling: RopeScaling::Default }.inv_freq(64, 16);
        // Below the range: extrapolated (original); above: interpolated (÷ 40).
        assert_eq!(inv[..10], plain[..10]);
        for j in 23..32 {
            assert!((inv[j] - plain[j] / 40.0).abs() <= 1e-6 * plain[j], "dim {j}");
        }
        assert!(inv[15] < plain[15] && inv[15] > plain[15] / 40.0);
    }

    #[test]
    fn spellings_and_refusals() {
        // transformers 5 spelling, no scaling.
        let r = cfg(serde_json::json!({"rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}}));
        assert_eq!((r.theta, r.scaling.clone()), (5e5, RopeScaling::Default));
        // The legacy key wins when set; `type` works as `rope_type`.
        let r = cfg(serde_json::json!({"rope_theta": 1e4, "max_position_embeddings": 100,
            "rope_scaling": {"type": "linear", "factor": 4.0}}));
        assert_eq!(r.scaling, RopeScaling::Linear { factor: 4.0 });
        assert_eq!(r.inv_freq(8, 4)[1], 1.0 / 1e4f32.powf(0.25) / 4.0);
        let r = cfg(serde_json::json!({"rope_scaling": {"type": "longrope", "factor": 4.0}}));
        assert_eq!(r.scaling, RopeScaling::Unsupported("longrope".into()));
        // A yarn config without mscale keys scales cos/sin by 0.1·ln f + 1.
        let r = cfg(serde_json::json!({"max_position_embeddings": 4096,
            "rope_scaling": {"type": "yarn", "factor": 32.0}}));
        assert!((r.attention_factor() - (0.1 * 32f32.ln() + 1.0)).abs() < 1e-6);
        assert_eq!(r.mla_softmax_factor(), 1.0);
    }

    /// Dynamic NTK changes nothing up to `max_position_embeddings` and raises the base past it.
    #[test]
    fn dynamic_ntk_only_acts_past_the_trained_length() {
        let r = cfg(serde_json::json!({"max_position_embeddings": 8,
            "rope_scaling": {"type": "dynamic", "factor": 2.0}}));
        let plain = RopeConfig { theta: 10000.0, scaling: RopeScaling::Default };
        assert_eq!(r.inv_freq(16, 8), plain.inv_freq(16, 8));
        let long = r.inv_freq(16, 32);
        assert!(long[3] < plain.inv_freq(16, 32)[3]);
        assert_eq!(long[0], 1.0);
    }

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let r = cfg(serde_json::json!({"rope_theta": 500000.0, "max_position_embeddings": 131072,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}));
        let plain = RopeConfig { theta: 500000.0, scaling: RopeScaling::Default }.inv_freq(128, 1);
        let inv = r.inv_freq(128, 1);
        assert_eq!(inv[0], plain[0]);
        assert_eq!(inv[63], plain[63] / 8.0);
    }
}
