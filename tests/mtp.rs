//! Multi-token-prediction blocks (DeepSeek-V3's `num_nextn_predict_layers`): stored as
//! `model.layers.{num_hidden_layers + i}.*` on the hub, dropped by transformers when it saves
//! (so the transformers fixtures have none). A checkpoint with one is made here from the V3
//! fixture plus a seeded MTP block, then opened, run, grown and written: the block is carried,
//! renumbered after depth growth and widened with the decoder layers; the forward pass ignores
//! it, as transformers does.

use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::growth::{DepthMethod, GrowthOptions};
use moegrow_core::init::Initialiser;
use moegrow_core::reference::ReferenceModel;
use moegrow_core::roles::MtpRole;
use moegrow_core::schema::layout::{output_tensors, Storage};
use moegrow_core::{
    Checkpoint, DType, ExpertLayout, LayerRole, ModelConfig, Proj, Role, TensorSource,
};
use moegrow_integration_tests::*;
use std::borrow::Cow;
use std::path::Path;

/// The V3 fixture's tensors plus a seeded MTP block (what a hub checkpoint stores).
struct WithMtp {
    base: Checkpoint,
    config: ModelConfig,
    init: Initialiser,
}

impl TensorSource for WithMtp {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn dtype_of(&self, role: Role) -> moegrow_core::Result<DType> {
        match role {
            Role::Mtp(..) => self.init.dtype_of(role),
            r => self.base.dtype_of(r),
        }
    }
    fn read(&self, role: Role) -> moegrow_core::Result<Cow<'_, [u8]>> {
        match role {
            Role::Mtp(..) => self.init.read(role),
            r => self.base.read(r),
        }
    }
}

fn with_mtp(fixture: &str, out: &Path) -> Checkpoint {
    let base = Checkpoint::open(fixtures_dir().join(fixture)).unwrap();
    assert_eq!(base.config.mtp_layers, 0, "transformers saved no MTP block");
    let mut config = base.config.clone();
    config.mtp_layers = 1; // config.json says num_nextn_predict_layers: 1
    let init = Initialiser::new(&config, DType::F32, 5, 0.1);
    let src = WithMtp { base, config, init };
    let tensors = output_tensors(&src, src.base.layout, Storage::AsSource).unwrap();
    write_checkpoint(
        out,
        &src.config.to_json_string(),
        &tensors,
        None,
        &WriteOptions::default(),
        |_| {},
    )
    .unwrap();
    Checkpoint::open(out).unwrap()
}

#[test]
fn an_mtp_block_is_read_carried_renumbered_and_widened() {
    let tmp = tempfile::tempdir().unwrap();
    for fixture in ["deepseek_v3_experts_f32", "deepseek_v3_fused_bf16"] {
        let dir = fixtures_dir().join(fixture);
        let ckpt = with_mtp(fixture, &tmp.path().join(format!("{fixture}-mtp")));
        let n = ckpt.config.num_layers;
        assert_eq!(ckpt.config.mtp_layers, 1, "{fixture}");
        let mtp = |c: &Checkpoint, r: MtpRole| c.entry(Role::Mtp(0, r)).unwrap().name.clone();
        assert_eq!(
            mtp(&ckpt, MtpRole::EhProj),
            format!("model.layers.{n}.eh_proj.weight")
        );
        assert_eq!(
            mtp(&ckpt, MtpRole::Layer(LayerRole::Router)),
            format!("model.layers.{n}.mlp.gate.weight")
        );

        // The forward pass ignores the block: transformers' logits of the fixture.
        let reference = Reference::load(&dir);
        let logits = ReferenceModel::load(&ckpt)
            .unwrap()
            .forward(&reference.tokens)
            .unwrap()
            .logits;
        let (d, i) = max_abs_diff(&logits.data, &reference.get("logits").1);
        assert!(d <= 1e-4, "{fixture}: logit {i} differs by {d:e}");

        // Depth ×2 then width ×2 (no noise): the block moves to layer 2n, keeps its bytes
        // except the widened experts and router, whose copies equal their sources.
        let plan = GrowthOptions {
            experts: Some(2),
            noise: 0.0,
            ..GrowthOptions::depth(2, DepthMethod::Interpose)
        }
        .plan()
        .unwrap();
        let grown = plan.apply(&ckpt).unwrap();
        assert!(grown.notes.iter().any(|n| n.contains("multi-token")));
        let out = tmp.path().join(format!("{fixture}-grown"));
        write_checkpoint(
            &out,
            &grown.config.to_json_string(),
            &grown.tensors(ckpt.layout).unwrap(),
            None,
            &WriteOptions::default(),
            |_| {},
        )
        .unwrap();
        let g = Checkpoint::open(&out).unwrap();
        assert_eq!((g.config.num_layers, g.config.mtp_layers), (2 * n, 1));
        assert_eq!(
            mtp(&g, MtpRole::EhProj),
            format!("model.layers.{}.eh_proj.weight", 2 * n)
        );
        for r in [MtpRole::Embed, MtpRole::EhProj, MtpRole::HNorm, MtpRole::Head] {
            assert_eq!(
                ckpt.bytes(Role::Mtp(0, r)).unwrap(),
                g.bytes(Role::Mtp(0, r)).unwrap(),
                "{fixture}: {r:?} copied"
            );
        }
        let e = ckpt.config.moe.num_experts;
        assert_eq!(g.config.moe.num_experts, 2 * e);
        let part = |c: &Checkpoint, x: usize, p: Proj| {
            c.read(Role::Mtp(0, MtpRole::Layer(LayerRole::Expert(x, p))))
                .unwrap()
                .into_owned()
        };
        for x in 0..e {
            for p in Proj::ALL {
                assert_eq!(part(&ckpt, x, p), part(&g, x, p), "{fixture}: expert {x}");
                assert_eq!(part(&ckpt, x, p), part(&g, x + e, p), "{fixture}: copy {x}");
            }
        }
        let router = |c: &Checkpoint| {
            c.f32(Role::Mtp(0, MtpRole::Layer(LayerRole::Router)))
                .unwrap()
        };
        let (r0, r1) = (router(&ckpt), router(&g));
        assert_eq!(&r1[..r0.len()], &r0[..]);
        assert_eq!(&r1[r0.len()..], &r0[..]);
        // The grown model is the source's function (interposed copies aside, α = 0): its
        // layout survives a conversion and a change of expert layout reads back alike.
        let other = match ckpt.layout {
            ExpertLayout::PerExpert => ExpertLayout::Fused,
            ExpertLayout::Fused => ExpertLayout::PerExpert,
        };
        let converted = tmp.path().join(format!("{fixture}-converted"));
        write_checkpoint(
            &converted,
            &g.config.to_json_string(),
            &g.export(other, None).unwrap(),
            None,
            &WriteOptions::default(),
            |_| {},
        )
        .unwrap();
        let c = Checkpoint::open(&converted).unwrap();
        assert_eq!(c.layout, other);
        assert_eq!(
            router(&c),
            r1,
            "{fixture}: the MTP router survives a layout change"
        );
    }
}

#[test]
fn a_partial_mtp_block_is_refused_with_the_missing_tensor_named() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = with_mtp("deepseek_v3_experts_f32", &tmp.path().join("full"));
    let n = ckpt.config.num_layers;
    // Drop one MTP tensor: the rest cannot stand alone.
    let missing = format!("model.layers.{n}.hnorm.weight");
    let tensors: Vec<_> = ckpt
        .export(ckpt.layout, None)
        .unwrap()
        .into_iter()
        .filter(|t| t.name != missing)
        .collect();
    let out = tmp.path().join("partial");
    write_checkpoint(
        &out,
        &ckpt.config.to_json_string(),
        &tensors,
        None,
        &WriteOptions::default(),
        |_| {},
    )
    .unwrap();
    let err = Checkpoint::open(&out).err().expect("refused").to_string();
    assert!(
        err.contains(&missing) && err.contains("num_nextn_predict_layers"),
        "{err}"
    );
}
