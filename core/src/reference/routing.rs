//! Expert selection, exactly as each family does it (see `config::RouterConfig`).

use super::ops::{sigmoid, softmax};
use crate::config::{GroupScore, RouterConfig, Scoring};

/// The experts one token goes to, best first, and their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub experts: Vec<usize>,
    pub weights: Vec<f32>,
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Route one token from its router logits. `bias` is the selection-only correction bias.
pub fn route(logits: &[f32], router: &RouterConfig, top: usize, bias: Option<&[f32]>) -> Choice {
    let e = logits.len();
    let mut scores = logits.to_vec();
    match router.scoring {
        Scoring::Softmax => softmax(&mut scores),
        Scoring::Sigmoid => scores.iter_mut().for_each(|s| *s = sigmoid(*s)),
    }
    let mut choice: Vec<f32> = match bias {
        Some(b) => scores.iter().zip(b).map(|(s, b)| s + b).collect(),
        None => scores.clone(),
    };
    if let Some(g) = router.group_limit {
        let per = e / g.n_group;
        let group_scores: Vec<f32> = choice
            .chunks(per)
            .map(|grp| match g.score {
                GroupScore::Max => grp.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                GroupScore::SumTop2 => top_k(grp, 2).iter().map(|&i| grp[i]).sum(),
            })
            .collect();
        let keep = top_k(&group_scores, g.topk_group);
        for (gi, grp) in choice.chunks_mut(per).enumerate() {
            if !keep.contains(&gi) {
                grp.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
            }
        }
    }
    let experts = top_k(&choice, top);
    let mut weights: Vec<f32> = experts.iter().map(|&i| scores[i]).collect();
    if router.normalize {
        let sum: f32 = weights.iter().sum::<f32>() + 1e-20;
        weights.iter_mut().for_each(|w| *w /= sum);
    }
    weights
        .iter_mut()
        .for_each(|w| *w *= router.routed_scaling_factor);
    Choice { experts, weights }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupLimit;

    fn router(scoring: Scoring, normalize: bool) -> RouterConfig {
        RouterConfig {
            scoring,
            normalize,
            routed_scaling_factor: 1.0,
            group_limit: None,
            correction_bias: false,
        }
    }

    #[test]
    fn softmax_topk_renormalised_weights_sum_to_one() {
        let c = route(
            &[0.1, 2.0, -1.0, 1.5],
            &router(Scoring::Softmax, true),
            2,
            None,
        );
        assert_eq!(c.experts, [1, 3]);
        assert!((c.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let raw = route(
            &[0.1, 2.0, -1.0, 1.5],
            &router(Scoring::Softmax, false),
            2,
            None,
        );
        assert!(raw.weights.iter().sum::<f32>() < 0.99);
    }

    #[test]
    fn correction_bias_changes_selection_but_not_weights() {
        let r = router(Scoring::Sigmoid, false);
        let logits = [1.0, 0.0, 0.5, -1.0];
        let c = route(&logits, &r, 1, Some(&[0.0, 0.0, 0.0, 5.0]));
        assert_eq!(c.experts, [3]);
        assert!((c.weights[0] - sigmoid(-1.0)).abs() < 1e-7);
    }

    #[test]
    fn group_limit_excludes_the_weaker_groups() {
        let mut r = router(Scoring::Softmax, false);
        r.group_limit = Some(GroupLimit {
            n_group: 2,
            topk_group: 1,
            score: GroupScore::Max,
        });
        // Group 0 = {0,1} has the single best expert; the second best (2) is in group 1.
        let c = route(&[3.0, 0.0, 2.5, 2.4], &r, 2, None);
        assert_eq!(c.experts, [0, 1]);
        r.group_limit = Some(GroupLimit {
            n_group: 2,
            topk_group: 1,
            score: GroupScore::SumTop2,
        });
        r.scoring = Scoring::Sigmoid;
        let c = route(&[3.0, -4.0, 2.5, 2.4], &r, 2, None);
        assert_eq!(c.experts, [2, 3], "group 1's top-2 sum beats group 0's");
    }
}
