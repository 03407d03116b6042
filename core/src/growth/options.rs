//! Growth options as a user gives them — `moegrow grow`'s flags, the browser's form, the
//! study's arms, the tests — and the one function that turns them into a [`GrowthPlan`], so
//! that every entry point validates alike and says the same thing when it refuses.

use super::{DepthMethod, DepthStep, GrowthPlan, GrowthStep, WidthStep};
use super::{AuxCoef, NewExperts, NoiseOn};
use crate::error::{Error, Result};

/// Every growth option, with the CLI's defaults. Field names are the flags' (`--depth-method`
/// is `depth_method`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrowthOptions {
    /// Depth factor K: each layer appears K times (absent or 1: no depth growth).
    pub depth: Option<usize>,
    pub depth_method: DepthMethod,
    /// Layers at the start that are not duplicated.
    pub keep_first: usize,
    /// Layers at the end that are not duplicated.
    pub keep_last: usize,
    /// Zero `o_proj` and the down projections of the repeated copies.
    pub zero_init_copies: bool,
    /// Any other layer order (replaces `depth`).
    pub layer_map: Option<Vec<usize>>,
    /// Width multiplier M for the routed experts and top-k (absent or 1: no width growth).
    pub experts: Option<usize>,
    /// New experts as `e0, e0', e1, e1', …` instead of appended.
    pub interleave_copies: bool,
    /// α: noise std relative to each copied tensor's std (0.01 is the paper's).
    pub noise: f32,
    pub noise_on: NoiseOn,
    /// Noise on the copied router rows and routing bias too.
    pub router_noise: bool,
    pub new_experts: NewExperts,
    pub aux_coef: AuxCoef,
    /// Widen before deepening (default: depth first).
    pub width_first: bool,
    pub seed: u64,
}

impl Default for GrowthOptions {
    fn default() -> Self {
        let w = WidthStep::default();
        GrowthOptions {
            depth: None,
            depth_method: DepthMethod::Interpose,
            keep_first: 0,
            keep_last: 0,
            zero_init_copies: false,
            layer_map: None,
            experts: None,
            interleave_copies: w.interleave,
            noise: w.noise,
            noise_on: w.noise_on,
            router_noise: w.router_noise,
            new_experts: w.new_experts,
            aux_coef: w.aux_coef,
            width_first: false,
            seed: 0,
        }
    }
}

impl GrowthOptions {
    /// Depth growth by `k` with `method` (the other options at their defaults).
    pub fn depth(k: usize, method: DepthMethod) -> GrowthOptions {
        GrowthOptions {
            depth: Some(k),
            depth_method: method,
            ..GrowthOptions::default()
        }
    }

    /// Width growth by `m` with noise α (the other options at their defaults).
    pub fn width(m: usize, alpha: f32) -> GrowthOptions {
        GrowthOptions {
            experts: Some(m),
            noise: alpha,
            ..GrowthOptions::default()
        }
    }

    /// The plan these options describe. Refuses options that make no sense together; what
    /// depends on the checkpoint (layer counts, routing) is checked when the plan is applied.
    pub fn plan(&self) -> Result<GrowthPlan> {
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(Error::Invalid(format!(
                "α must be a non-negative number, not {}",
                self.noise
            )));
        }
        let mut steps = Vec::new();
        if self.layer_map.is_some() || self.depth.is_some_and(|k| k != 1) {
            steps.push(GrowthStep::Depth(DepthStep {
                factor: self.depth.unwrap_or(1),
                method: self.depth_method,
                keep_first: self.keep_first,
                keep_last: self.keep_last,
                zero_init_copies: self.zero_init_copies,
                layer_map: self.layer_map.clone(),
            }));
        } else if self.depth.is_none()
            && (self.zero_init_copies || self.keep_first > 0 || self.keep_last > 0)
        {
            return Err(Error::Invalid(
                "--zero-init-copies, --keep-first and --keep-last need --depth".into(),
            ));
        }
        if let Some(m) = self.experts.filter(|&m| m != 1) {
            let w = GrowthStep::Width(WidthStep {
                factor: m,
                interleave: self.interleave_copies,
                noise: self.noise,
                noise_on: self.noise_on,
                router_noise: self.router_noise,
                new_experts: self.new_experts,
                aux_coef: self.aux_coef,
            });
            if self.width_first {
                steps.insert(0, w);
            } else {
                steps.push(w);
            }
        }
        if steps.is_empty() {
            return Err(Error::Invalid(
                "nothing to grow: give --depth and/or --experts".into(),
            ));
        }
        Ok(GrowthPlan {
            steps,
            seed: self.seed,
        })
    }
}

/// The options' words for the enum values (flags, the browser's form, TOML/JSON).
macro_rules! named {
    ($ty:ident, $what:literal, $($variant:ident = $name:literal),+) => {
        impl $ty {
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " `{}` ({})"),
                        other,
                        [$($name),+].join(" or ")
                    )),
                }
            }
        }
    };
}
named!(DepthMethod, "depth method", Interpose = "interpose", Stack = "stack");
named!(NewExperts, "new-expert kind", Copy = "copy", Random = "random");
named!(NoiseOn, "noise target", Copies = "copies", Both = "both");
named!(AuxCoef, "aux-coef rule", Keep = "keep", Scale = "scale");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_the_expected_steps_in_order() {
        let both = GrowthOptions {
            width_first: true,
            ..GrowthOptions {
                experts: Some(2),
                ..GrowthOptions::depth(2, DepthMethod::Stack)
            }
        };
        let plan = both.plan().unwrap();
        assert!(matches!(plan.steps[0], GrowthStep::Width(_)));
        assert!(matches!(&plan.steps[1], GrowthStep::Depth(d) if d.method == DepthMethod::Stack));
        let err = |o: GrowthOptions| o.plan().unwrap_err().to_string();
        assert!(err(GrowthOptions::default()).starts_with("nothing to grow"));
        assert!(err(GrowthOptions::width(2, -1.0)).contains("α must be a non-negative number"));
        assert!(err(GrowthOptions {
            keep_first: 1,
            ..GrowthOptions::width(2, 0.0)
        })
        .contains("need --depth"));
        assert_eq!(
            "zigzag".parse::<DepthMethod>().unwrap_err(),
            "unknown depth method `zigzag` (interpose or stack)"
        );
        assert_eq!("random".parse::<NewExperts>(), Ok(NewExperts::Random));
    }
}
