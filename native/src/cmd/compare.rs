use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Two or more checkpoints (e.g. a base, its stacked and its interposed growth).
    #[arg(num_args = 2.., required = true)]
    pub checkpoints: Vec<PathBuf>,
    /// Draw the profiles (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Where to compute the profiles (auto: the GPU when an adapter exists).
    #[arg(long, value_enum, default_value = "auto")]
    pub device: crate::device::Device,
}

/// The largest jump between neighbouring layers as a share of the profile's range (max − min).
/// A rising profile grown by stacking jumps from its top back to its bottom at the seam (close
/// to 1.0); interposition only ever steps between neighbouring base layers (about 1/(n−1) for
/// a steady rise). Relative to the range rather than to a typical jump, because interposed
/// copies make half the jumps exactly zero.
pub fn seam_ratio(profile: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = profile.iter().flatten().cloned().collect();
    if v.len() < 2 {
        return None;
    }
    let max_jump = v
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f64::max);
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    Some(if hi > lo { max_jump / (hi - lo) } else { 0.0 })
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let gpu = crate::device::open(a.device)?;
    let mut series = Vec::new();
    for p in &a.checkpoints {
        let ckpt = super::open(p)?;
        series.push((
            p.display().to_string(),
            super::inspect::norm_profile(&ckpt, &gpu)?,
        ));
    }
    if let Some(plot) = &a.plot {
        crate::plot::norm_profiles(plot, &series)?;
    }
    if a.json {
        let v: Vec<_> = series
            .iter()
            .map(|(n, p)| serde_json::json!({"checkpoint": n, "expert_norm_profile": p, "largest_jump_over_range": seam_ratio(p)}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let layers = series.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    for (i, (n, _)) in series.iter().enumerate() {
        println!("[{i}] {n}");
    }
    print!("layer");
    for i in 0..series.len() {
        print!("  {:>10}", format!("[{i}]"));
    }
    println!();
    for l in 0..layers {
        print!("{l:>5}");
        for (_, p) in &series {
            match p.get(l).copied().flatten() {
                Some(v) => print!("  {v:>10.5}"),
                None if l < p.len() => print!("  {:>10}", "dense"),
                None => print!("  {:>10}", ""),
            }
        }
        println!();
    }
    print!("seam ");
    for (_, p) in &series {
        match seam_ratio(p) {
            Some(r) => print!("  {:>10}", format!("{r:.2}")),
            None => print!("  {:>10}", "-"),
        }
    }
    println!("   (largest neighbour jump / profile range: ~1 = a seam)");
    if let Some(plot) = &a.plot {
        println!("plot {}", plot.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::seam_ratio;

    #[test]
    fn stacking_a_rising_profile_shows_a_seam_and_interposition_does_not() {
        let base: Vec<f64> = (0..8).map(|l| 0.01 + 0.002 * l as f64).collect();
        let interposed: Vec<Option<f64>> = base.iter().flat_map(|v| [Some(*v), Some(*v)]).collect();
        let stacked: Vec<Option<f64>> = base.iter().chain(&base).map(|v| Some(*v)).collect();
        let (i, s) = (
            seam_ratio(&interposed).unwrap(),
            seam_ratio(&stacked).unwrap(),
        );
        assert!(
            (s - 1.0).abs() < 1e-9,
            "stacking's seam spans the whole range: {s}"
        );
        assert!(
            (i - 1.0 / 7.0).abs() < 1e-9,
            "interposition steps one base layer at a time: {i}"
        );
        assert_eq!(seam_ratio(&[Some(1.0), None]), None);
    }
}
