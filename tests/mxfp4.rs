//! gpt-oss's MXFP4 experts as the hub ships them (`tests/fixtures/hub/gpt-oss-20b`: U8
//! `_blocks` and `_scales`, output-major, gate/up interleaved) and its bf16 form
//! (`gpt-oss-20b-bf16`: input-major `[E, H, 2I]`): both read into the schema's `[E, 2I, H]`
//! (gate rows, then up rows) and written back byte for byte; width growth copies the packed
//! bytes exactly at α = 0 and requantises noised copies; broken files are refused by name.

use moegrow_core::checkpoint::{write_checkpoint, WriteOptions};
use moegrow_core::growth::GrowthOptions;
use moegrow_core::quant::QuantFormat;
use moegrow_core::schema::layout::{output_tensors, Storage};
use moegrow_core::{Checkpoint, DType, ExpertLayout, LayerRole, Proj, Role, TensorSource};
use moegrow_integration_tests::*;
use std::collections::BTreeMap;

fn hub(name: &str) -> std::path::PathBuf {
    fixtures_dir().join("hub").join(name)
}

/// Every stored tensor's bytes by name, as on disk (read from the shard files of `dir`).
fn disk_bytes(c: &Checkpoint, dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let files: Vec<Vec<u8>> = c.shards.iter().map(|s| std::fs::read(dir.join(&s.name)).unwrap()).collect();
    let mut out = BTreeMap::new();
    for e in c.entries() {
        assert_eq!(&files[e.shard][e.range.clone()], c.bytes(e.role).unwrap());
        out.insert(e.name.clone(), files[e.shard][e.range.clone()].to_vec());
        if let Some(s) = &e.scale {
            out.insert(s.name.clone(), files[s.shard][s.range.clone()].to_vec());
        }
    }
    out
}

#[test]
fn mxfp4_and_bf16_gpt_oss_read_as_one_schema_and_write_back_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let mx = Checkpoint::open(hub("gpt-oss-20b")).unwrap();
    let bf = Checkpoint::open(hub("gpt-oss-20b-bf16")).unwrap();
    assert_eq!(mx.layout, ExpertLayout::Fused);
    let gu = Role::Layer(1, LayerRole::ExpertsGateUp);
    let e = mx.entry(gu).unwrap();
    assert_eq!(e.dtype, DType::U8);
    assert!(e.name.ends_with("gate_up_proj_blocks"));
    assert_eq!(e.scale.as_ref().unwrap().format, QuantFormat::Mxfp4);
    assert_eq!(mx.dtype_of(gu).unwrap(), DType::F4, "values are packed fp4");
    assert_eq!(bf.entry(gu).unwrap().shape, vec![8, 64, 128], "bf16 is input-major [E, H, 2I]");

    // Known answer from the bf16 file itself: schema row r of expert x is the stored column
    // 2r (gate) or 2(r − I) + 1 (up), transposed.
    let (h, i) = (bf.config.hidden_size, bf.config.moe.intermediate);
    let stored = moegrow_core::dtype::decode_f32(DType::BF16, bf.bytes(gu).unwrap());
    let schema = bf.f32(gu).unwrap();
    for (x, r, c) in [(0, 0, 0), (3, 5, 7), (7, i + 2, h - 1), (5, 2 * i - 1, 31)] {
        let col = if r < i { 2 * r } else { 2 * (r - i) + 1 };
        assert_eq!(schema[(x * 2 * i + r) * h + c], stored[(x * h + c) * 2 * i + col], "expert {x} row {r} col {c}");
    }
    // Up of expert 3 through the part view equals rows I..2I of the stacked leaf.
    let up = bf.f32(Role::Layer(1, LayerRole::Expert(3, Proj::Up))).unwrap();
    assert_eq!(up, schema[(3 * 2 * i + i) * h..(4 * 2 * i) * h].to_vec());
    // The same view of MXFP4: one expert's part equals its rows of the whole leaf.
    let all = mx.f32(gu).unwrap();
    let gate = mx.f32(Role::Layer(1, LayerRole::Expert(6, Proj::Gate))).unwrap();
    assert_eq!(gate, all[6 * 2 * i * h..(6 * 2 * i + i) * h].to_vec());

    // Written back as the source stores them: the same files' bytes, tensor for tensor.
    for (c, dir) in [(&mx, hub("gpt-oss-20b")), (&bf, hub("gpt-oss-20b-bf16"))] {
        let to = tmp.path().join(dir.file_name().unwrap());
        let out = write_as(c, &to, c.layout, Storage::AsSource);
        assert_eq!(disk_bytes(&out, &to), disk_bytes(c, &dir));
    }
    // MXFP4 → bf16 → MXFP4: bf16 holds fp4 × 2^e exactly, and requantising gives the bytes back.
    let b = write_as(&mx, &tmp.path().join("bf16"), mx.layout, Storage::Values(DType::BF16));
    assert!(b.config.quant.is_none() && !b.config.raw.contains_key("quantization_config"));
    assert_eq!(b.entry(gu).unwrap().shape, vec![8, 64, 128]);
    let back = write_as(&b, &tmp.path().join("mx"), b.layout, Storage::Fp8(moegrow_core::quant::BlockQuant::mxfp4()));
    let (got, want) = (disk_bytes(&back, &tmp.path().join("mx")), disk_bytes(&mx, &hub("gpt-oss-20b")));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, v) in &want {
        assert!(got[k] == *v, "{k} differs after the MXFP4 round trip through bf16");
    }

    // Layouts and formats transformers cannot read for gpt-oss are refused with the reason.
    let err = |s: Storage, l: ExpertLayout| output_tensors(&mx, l, s).err().expect("refused").to_string();
    assert!(err(Storage::AsSource, ExpertLayout::PerExpert).contains("stacked only"));
    let fp8 = Storage::Fp8(moegrow_core::quant::BlockQuant::fp8([128, 128], DType::F32, false));
    assert!(err(fp8, ExpertLayout::Fused).contains("no float8 gpt-oss"));
    let other = Checkpoint::open(fixtures_dir().join("mixtral_fused_f32")).unwrap();
    let e = output_tensors(&other, other.layout, Storage::Fp8(moegrow_core::quant::BlockQuant::mxfp4()));
    assert!(e.err().unwrap().to_string().contains("gpt-oss only"));
}

#[test]
fn width_growth_copies_mxfp4_experts_exactly_and_requantises_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let mx = Checkpoint::open(hub("gpt-oss-20b")).unwrap();
    let e = mx.config.moe.num_experts;
    let grown = GrowthOptions::width(2, 0.0).plan().unwrap().apply(&mx).unwrap();
    let g = write_as(&grown, &tmp.path().join("w2"), mx.layout, Storage::AsSource);
    // On disk, expert j of the wider model (appended copies: j mod E) is its source's slab of
    // blocks and of scales, byte for byte.
    let src = disk_bytes(&mx, &hub("gpt-oss-20b"));
    let out = disk_bytes(&g, &tmp.path().join("w2"));
    for l in 0..mx.config.num_layers {
        for t in ["gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales", "gate_up_proj_bias", "down_proj_bias"] {
            let name = format!("model.layers.{l}.mlp.experts.{t}");
            let (a, b) = (&src[&name], &out[&name]);
            assert_eq!(b.len(), 2 * a.len(), "{name}");
            let slab = a.len() / e;
            for j in 0..2 * e {
                assert_eq!(&b[j * slab..(j + 1) * slab], &a[(j % e) * slab..(j % e + 1) * slab], "{name} expert {j}");
            }
        }
    }
    assert_eq!(g.config.raw["experts_per_token"], 4, "both top-k spellings follow");
    assert_eq!(g.config.raw["num_experts_per_tok"], 4);

    // α = 0.01: originals untouched, copies requantised; the survival and the amplification
    // of the noise by fp4 rounding are measured.
    let grown = GrowthOptions::width(2, 0.01).plan().unwrap().apply(&mx).unwrap();
    let g = write_as(&grown, &tmp.path().join("w2-noise"), mx.layout, Storage::AsSource);
    let survival = grown.fp8_noise_survival().expect("noised MXFP4 experts");
    let amp = grown.quantised_noise_amplification().unwrap();
    eprintln!("MXFP4 noise survival at α = 0.01: {:.1}%, |δ|/|ε| = {amp:.2}", 100.0 * survival);
    assert!((0.0..=1.5).contains(&survival) && amp > 0.0, "{survival} {amp}");
    let role = |x: usize| Role::Layer(0, LayerRole::Expert(x, Proj::Up));
    assert_eq!(g.f32(role(2)).unwrap(), mx.f32(role(2)).unwrap(), "the original is kept");
    let (a, b) = (mx.f32(role(2)).unwrap(), g.f32(role(e + 2)).unwrap());
    assert_ne!(a, b, "the copy is noised");
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&a, &b).0 <= 0.5 * scale, "a copy stays near its source");
}

#[test]
fn broken_mxfp4_checkpoints_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let mx = Checkpoint::open(hub("gpt-oss-20b")).unwrap();
    let scales = "model.layers.1.mlp.experts.down_proj_scales";
    let blocks = "model.layers.1.mlp.experts.down_proj_blocks";
    type Edit = Box<dyn Fn(&mut Vec<moegrow_core::checkpoint::OutputTensor<'_>>)>;
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        ("no-scales", Box::new(move |t| t.retain(|x| x.name != scales)), blocks, "is missing"),
        (
            "scales-f32",
            Box::new(move |t| {
                let x = t.iter_mut().find(|x| x.name == scales).unwrap();
                let n: usize = x.shape.iter().product();
                x.dtype = DType::F32;
                x.data = Box::new(move || Ok(std::borrow::Cow::Owned(vec![0u8; 4 * n])));
            }),
            scales,
            "E8M0",
        ),
        (
            "scales-short",
            Box::new(move |t| {
                let x = t.iter_mut().find(|x| x.name == scales).unwrap();
                x.shape = vec![8, 64];
                x.data = Box::new(|| Ok(std::borrow::Cow::Owned(vec![127u8; 8 * 64])));
            }),
            scales,
            "needs",
        ),
        (
            "blocks-shape",
            Box::new(move |t| {
                let x = t.iter_mut().find(|x| x.name == blocks).unwrap();
                x.shape = vec![8, 64, 32];
            }),
            blocks,
            "shape",
        ),
    ];
    for (name, edit, tensor, words) in cases {
        let mut tensors = output_tensors(&mx, mx.layout, Storage::AsSource).unwrap();
        edit(&mut tensors);
        let out = tmp.path().join(name);
        write_checkpoint(&out, &mx.config.to_json_string(), &tensors, None, &WriteOptions::default(), |_| {}).unwrap();
        let err = Checkpoint::open(&out).err().expect("refused").to_string();
        assert!(err.contains(tensor) && err.contains(words), "{name}: {err}");
    }
}
