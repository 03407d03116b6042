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

/// The largest jump between neighbouring layers, relative to the median jump: stacking's seam
/// stands out as a large ratio, interposition stays near the base's.
pub fn seam_ratio(profile: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = profile.iter().flatten().cloned().collect();
    let mut jumps: Vec<f64> = v.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    if jumps.is_empty() {
        return None;
    }
    let max = jumps.iter().cloned().fold(0.0, f64::max);
    jumps.sort_by(f64::total_cmp);
    let median = jumps[jumps.len() / 2];
    Some(if median > 0.0 {
        max / median
    } else {
        f64::INFINITY
    })
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
            .map(|(n, p)| serde_json::json!({"checkpoint": n, "expert_norm_profile": p, "max_jump_over_median_jump": seam_ratio(p)}))
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
            Some(r) => print!("  {:>10}", format!("{r:.1}x")),
            None => print!("  {:>10}", "-"),
        }
    }
    println!("   (largest neighbour jump / median jump)");
    if let Some(plot) = &a.plot {
        println!("plot {}", plot.display());
    }
    Ok(())
}
