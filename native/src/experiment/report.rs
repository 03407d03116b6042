//! The study's outputs: `results.json` (every arm's curve and numbers, the invariants and the
//! claims), `report.md`, and plots (PNG and SVG).

use super::arms::ArmResult;
use super::presets::StudyPreset;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

pub struct Study<'a> {
    pub preset: &'a StudyPreset,
    pub seed: u64,
    pub n_a: f64,
    pub fc: f64,
    pub base_steps: usize,
    pub base_checkpoint_steps: &'a [usize],
    pub base_sunk: &'a [f64],
    pub base_curve: Vec<(f64, f64)>,
    pub base_profile: Vec<Option<f64>>,
    pub base_probe: Value,
    pub results: &'a [ArmResult],
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Claim {
    pub name: &'static str,
    pub reproduced: bool,
    pub evidence: String,
}

impl Study<'_> {
    fn arm(&self, name: &str) -> Option<&ArmResult> {
        self.results.iter().find(|r| r.arm.name == name)
    }
    fn loss(&self, name: &str) -> Option<f64> {
        self.arm(name).map(|r| r.final_eval_loss)
    }
    fn in_group<'s>(&'s self, g: &'s str) -> impl Iterator<Item = &'s ArmResult> + 's {
        self.results
            .iter()
            .filter(move |r| r.arm.groups.iter().any(|x| x == g))
    }
    fn last_ckpt(&self) -> String {
        format!("interpose-k2-ckpt{}", self.base_sunk.len() - 1)
    }
}

/// Least-squares fit y = a + b·x; returns (a, b, Pearson r).
pub fn fit(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let r = if sxx > 0.0 && syy > 0.0 {
        sxy / (sxx * syy).sqrt()
    } else {
        0.0
    };
    (my - b * mx, b, r)
}

/// Largest jump between neighbouring layers as a share of the profile's range (stacking's seam
/// is ≈ 1: the last layer's norm next to the first's).
pub fn seam(profile: &[Option<f64>]) -> f64 {
    let v: Vec<f64> = profile.iter().flatten().cloned().collect();
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let jump = v
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f64::max);
    if hi > lo {
        jump / (hi - lo)
    } else {
        0.0
    }
}

fn f4(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.4}"))
}

pub fn claims(s: &Study) -> Vec<Claim> {
    let mut out = Vec::new();
    let last = s.last_ckpt();
    // 1. Grown beats scratch at equal extra FLOPs.
    let scratch = s.loss("scratch");
    let beats: Vec<String> = s
        .in_group("sunk")
        .filter(|r| r.arm.name != "scratch")
        .map(|r| format!("{} {:.4}", r.arm.name, r.final_eval_loss))
        .collect();
    let best = s.loss(&last);
    out.push(Claim {
        name: "grown_beats_scratch",
        reproduced: matches!((best, scratch), (Some(g), Some(sc)) if g < sc),
        evidence: format!(
            "at equal extra FLOPs, held-out loss of the most-trained base grown by interposition ×2: {} vs scratch of the grown size: {} (all: {})",
            f4(best),
            f4(scratch),
            beats.join(", ")
        ),
    });
    // 2. Final loss falls with sunk FLOPs (log-linear).
    let pts: Vec<(f64, f64)> = s
        .in_group("sunk")
        .filter(|r| r.sunk_flops > 0.0)
        .map(|r| (r.sunk_flops.log10(), r.final_eval_loss))
        .collect();
    let (a, b, r) = if pts.len() >= 2 {
        fit(&pts)
    } else {
        (0.0, 0.0, 0.0)
    };
    out.push(Claim {
        name: "loss_falls_with_sunk_compute",
        reproduced: pts.len() >= 3 && b < 0.0 && r <= -0.7,
        evidence: format!(
            "final loss = {a:.4} {b:+.4}·log10(sunk FLOPs), r = {r:.3} over {} checkpoints (sunk {})",
            pts.len(),
            pts.iter().map(|p| format!("10^{:.2}: {:.4}", p.0, p.1)).collect::<Vec<_>>().join(", ")
        ),
    });
    // 3. Interposition at least as good as stacking from the most-trained base.
    let (i2, s2, i4, s4) = (
        s.loss(&last),
        s.loss("stack-k2"),
        s.loss("interpose-k4"),
        s.loss("stack-k4"),
    );
    let gap = |i: Option<f64>, st: Option<f64>| match (i, st) {
        (Some(i), Some(st)) => Some(st - i),
        _ => None,
    };
    out.push(Claim {
        name: "interposition_at_least_as_good_as_stacking",
        reproduced: matches!((i2, s2), (Some(i), Some(st)) if i <= st),
        evidence: format!(
            "from the most-trained base: k=2 interposition {} vs stacking {} (stacking − interposition {}); k=4 {} vs {} (gap {}) — the paper's gap grows with k",
            f4(i2), f4(s2), f4(gap(i2, s2)), f4(i4), f4(s4), f4(gap(i4, s4))
        ),
    });
    // 4. Noise: random new experts worst; α = 0.01 no worse than α = 0.1.
    let (n0, n1, n10, nr) = (
        s.loss("width-alpha0"),
        s.loss("width-alpha0.01"),
        s.loss("width-alpha0.1"),
        s.loss("width-random"),
    );
    let copies = [n0, n1, n10];
    let random_worst = nr.is_some_and(|r| copies.iter().flatten().all(|c| *c < r));
    out.push(Claim {
        name: "noise_order",
        reproduced: random_worst && matches!((n1, n10), (Some(a), Some(b)) if a <= b),
        evidence: format!(
            "width ×2 from the most-trained base: α=0 {}, α=0.01 {}, α=0.1 {}, random new experts {} (paper: α=0.01 best, α=0 similar in loss, random worst)",
            f4(n0), f4(n1), f4(n10), f4(nr)
        ),
    });
    // 5. Fixed total budget.
    let bs = s.loss("budget-scratch");
    let budget: Vec<(String, f64)> = s
        .in_group("budget")
        .filter(|r| r.arm.name != "budget-scratch")
        .map(|r| (r.arm.name.clone(), r.final_eval_loss))
        .collect();
    out.push(Claim {
        name: "fixed_total_budget_growth_beats_scratch",
        reproduced: bs.is_some_and(|b| budget.iter().any(|(_, l)| *l < b)),
        evidence: format!(
            "sunk + extra fixed: scratch {} vs growing at {}",
            f4(bs),
            budget
                .iter()
                .map(|(n, l)| format!("{n} {l:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    // 6. Order of depth and width growth does not matter much.
    let (dw, wd) = (s.loss("depth-then-width"), s.loss("width-then-depth"));
    out.push(Claim {
        name: "growth_order_does_not_matter",
        reproduced: matches!((dw, wd), (Some(a), Some(b)) if (a - b).abs() <= 0.01 * a.max(b)),
        evidence: format!(
            "depth-then-width {} vs width-then-depth {} (within 1%?)",
            f4(dw),
            f4(wd)
        ),
    });
    // 7. The norm-profile seam.
    let profile = |name: &str| -> Option<Vec<Option<f64>>> {
        s.arm(name)
            .and_then(|r| serde_json::from_value(r.probes["norm_profile_at_growth"].clone()).ok())
    };
    let (ps, pi) = (profile("stack-k2"), profile(&last));
    let (js, ji) = (ps.as_deref().map(seam), pi.as_deref().map(seam));
    out.push(Claim {
        name: "interposition_keeps_the_norm_profile_smooth",
        reproduced: matches!((ji, js), (Some(i), Some(st)) if i < st),
        evidence: format!(
            "largest neighbour jump as a share of the profile's range: stacked {} vs interposed {} (base {:.4})",
            f4(js),
            f4(ji),
            seam(&s.base_profile)
        ),
    });
    // 8. Twins diverge with training.
    let w = s.arm("width-alpha0.01");
    let at = w.and_then(|r| r.probes["at_growth"]["twin_cosine"].as_f64());
    let after = w.and_then(|r| r.probes["after_training"]["twin_cosine"].as_f64());
    out.push(Claim {
        name: "copied_experts_diverge",
        reproduced: matches!((at, after), (Some(a), Some(b)) if b < a),
        evidence: format!(
            "mean cosine similarity of each expert and its copy (α=0.01): {} after growth, {} after training",
            f4(at),
            f4(after)
        ),
    });
    out
}

/// Extra FLOPs equal across the fixed-extra arms, and sunk + extra equal across the budget arms.
pub fn invariants(s: &Study) -> Value {
    let extra = s.preset.extra_compute * s.fc;
    let total = s.preset.total_compute * s.fc;
    let mut worst_extra = 0.0f64;
    let mut worst_total = 0.0f64;
    for r in s.results {
        if r.arm.groups.iter().any(|g| g == "budget") {
            worst_total = worst_total.max(((r.sunk_flops + r.trained_flops) / total - 1.0).abs());
        } else {
            worst_extra = worst_extra.max((r.trained_flops / extra - 1.0).abs());
        }
    }
    json!({
        "extra_flops": extra,
        "total_flops": total,
        "max_relative_extra_flops_deviation": worst_extra,
        "max_relative_total_flops_deviation": worst_total,
        "equal_within_1_percent": worst_extra <= 0.01 && worst_total <= 0.01,
    })
}

/// Base loss at `flops` (linear interpolation on the base curve), for marking growth points.
fn base_loss_at(curve: &[(f64, f64)], flops: f64) -> Option<f64> {
    let i = curve.iter().position(|p| p.0 >= flops)?;
    if i == 0 {
        return Some(curve[0].1);
    }
    let (a, b) = (curve[i - 1], curve[i]);
    Some(a.1 + (b.1 - a.1) * (flops - a.0) / (b.0 - a.0).max(1e-30))
}

pub fn write(out: &Path, s: &Study) -> anyhow::Result<()> {
    let claims = claims(s);
    let inv = invariants(s);
    let results = json!({
        "preset": s.preset,
        "seed": s.seed,
        "activated_parameters": s.n_a,
        "chinchilla_flops": s.fc,
        "base": {
            "steps": s.base_steps,
            "checkpoint_steps": s.base_checkpoint_steps,
            "sunk_flops": s.base_sunk,
            "curve": s.base_curve,
            "norm_profile": s.base_profile,
            "probe": s.base_probe,
        },
        "arms": s.results,
        "invariants": inv,
        "claims": claims,
        "seconds": s.seconds,
    });
    let tmp = out.join("results.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&results)? + "\n")?;
    std::fs::rename(&tmp, out.join("results.json"))?;
    plots(out, s)?;

    let mut md = String::new();
    let p = s.preset;
    writeln!(
        md,
        "# moegrow experiment: `{}` preset, seed {}\n",
        p.name, s.seed
    )?;
    writeln!(
        md,
        "Base: {} layers, hidden {}, {} experts top-{}, {:.1}K activated parameters; Chinchilla-optimal compute F_c = 120·N_a² = {:.3e} FLOPs. \
         The base trains with warmup-stable-decay for {:.2}·F_c ({} steps of {}×{} tokens) and is saved at {:?}·F_c (steps {:?}; the last one annealed). \
         Every growth arm and the scratch arm then train {:.2}·F_c = {:.3e} FLOPs with a constant LR {} and fresh optimizer state; the fixed-budget arms fill sunk + extra = {:.2}·F_c. \
         The whole study took {:.0} s.\n",
        p.model.num_layers, p.model.hidden_size, p.model.num_experts, p.model.top_k, s.n_a / 1e3, s.fc,
        p.checkpoints.last().copied().unwrap_or(0.0), s.base_steps, p.batch_size, p.seq_len, p.checkpoints, s.base_checkpoint_steps,
        p.extra_compute, p.extra_compute * s.fc, p.grow_lr, p.total_compute, s.seconds
    )?;
    writeln!(
        md,
        "## Claims\n\n| claim | reproduced | evidence |\n|---|---|---|"
    )?;
    for c in &claims {
        writeln!(
            md,
            "| {} | {} | {} |",
            c.name,
            if c.reproduced { "yes" } else { "**no**" },
            c.evidence
        )?;
    }
    writeln!(
        md,
        "\nInvariants: trained FLOPs within {:.3}% of the fixed extra budget for every arm, sunk + extra within {:.3}% of the fixed total for the budget arms.\n",
        100.0 * inv["max_relative_extra_flops_deviation"].as_f64().unwrap_or(f64::NAN),
        100.0 * inv["max_relative_total_flops_deviation"].as_f64().unwrap_or(f64::NAN)
    )?;
    writeln!(md, "## Arms\n\n| arm | groups | sunk FLOPs | extra FLOPs | steps | activated | final held-out loss | seconds |\n|---|---|---|---|---|---|---|---|")?;
    for r in s.results {
        writeln!(
            md,
            "| {} | {} | {:.3e} | {:.3e} | {} | {:.1}K | {:.4} | {:.0} |",
            r.arm.name,
            r.arm.groups.join(", "),
            r.sunk_flops,
            r.trained_flops,
            r.steps,
            r.activated_parameters as f64 / 1e3,
            r.final_eval_loss,
            r.seconds
        )?;
    }
    writeln!(
        md,
        "\n## Plots\n\n- `loss_vs_flops.png` / `.svg`: held-out loss against cumulative FLOPs, every arm, growth points circled on the base curve\n- `final_vs_sunk.png` / `.svg`: final loss against log10 sunk FLOPs with the fit\n- `norm_profiles.png` / `.svg`: expert weight-norm profiles of the base and of its stacked and interposed ×2 growths (the seam)\n- `expert_load.png` / `.svg`: share of routing selections per expert before width growth, right after it and after training\n\n![loss](loss_vs_flops.png)\n![sunk](final_vs_sunk.png)\n![norms](norm_profiles.png)\n![load](expert_load.png)"
    )?;
    std::fs::write(out.join("report.md"), md)?;
    Ok(())
}

fn plots(out: &Path, s: &Study) -> anyhow::Result<()> {
    let mut series = vec![("base (WSD)".to_string(), s.base_curve.clone())];
    for r in s.results {
        series.push((r.arm.name.clone(), r.curve.clone()));
    }
    let marks: Vec<(f64, f64)> = s
        .base_sunk
        .iter()
        .filter_map(|&f| base_loss_at(&s.base_curve, f).map(|l| (f, l)))
        .collect();
    let pts: Vec<(f64, f64)> = s
        .results
        .iter()
        .filter(|r| r.arm.groups.iter().any(|g| g == "sunk") && r.sunk_flops > 0.0)
        .map(|r| (r.sunk_flops.log10(), r.final_eval_loss))
        .collect();
    let mut fit_series = vec![("final loss".to_string(), pts.clone())];
    if pts.len() >= 2 {
        let (a, b, r) = fit(&pts);
        let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0);
        fit_series.push((
            format!("fit: {a:.3} {b:+.3}·x, r = {r:.2}"),
            vec![(x0, a + b * x0), (x1, a + b * x1)],
        ));
    }
    let hl: Vec<(String, f64)> = s
        .results
        .iter()
        .find(|r| r.arm.name == "scratch")
        .map(|r| vec![("scratch".to_string(), r.final_eval_loss)])
        .unwrap_or_default();
    let profile = |name: &str| -> Vec<Option<f64>> {
        s.results
            .iter()
            .find(|r| r.arm.name == name)
            .and_then(|r| serde_json::from_value(r.probes["norm_profile_at_growth"].clone()).ok())
            .unwrap_or_default()
    };
    let load = |v: &Value| -> Vec<(f64, f64)> {
        v["load"]
            .as_array()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, x)| (i as f64, x.as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let w = s.results.iter().find(|r| r.arm.name == "width-alpha0.01");
    let mut loads = vec![("base (before growth)".to_string(), load(&s.base_probe))];
    if let Some(w) = w {
        loads.push((
            "width ×2, α=0.01, at growth".into(),
            load(&w.probes["at_growth"]),
        ));
        loads.push(("after training".into(), load(&w.probes["after_training"])));
    }
    for ext in ["png", "svg"] {
        crate::plot::lines_marked(
            &out.join(format!("loss_vs_flops.{ext}")),
            "held-out loss against cumulative compute",
            "FLOPs (sunk + extra)",
            "held-out loss (nats)",
            &series,
            &[],
            &marks,
        )?;
        crate::plot::lines(
            &out.join(format!("final_vs_sunk.{ext}")),
            "final loss against sunk compute (interposition ×2)",
            "log10 sunk FLOPs",
            "final held-out loss",
            &fit_series,
            &hl,
        )?;
        crate::plot::norm_profiles(
            &out.join(format!("norm_profiles.{ext}")),
            &[
                ("base".into(), s.base_profile.clone()),
                ("stacked ×2".into(), profile("stack-k2")),
                ("interposed ×2".into(), profile(&s.last_ckpt())),
            ],
        )?;
        crate::plot::lines(
            &out.join(format!("expert_load.{ext}")),
            "expert load (share of routing selections, mean over layers)",
            "expert",
            "share",
            &loads,
            &[],
        )?;
    }
    Ok(())
}
