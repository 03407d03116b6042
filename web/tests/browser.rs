//! wasm tests in headless Chromium (`wasm-bindgen-test`): the parts that only exist in a
//! browser — reading `Blob` slices, and our WGSL on WebGPU checked against the CPU reference.
//! Run by tests/run-all.sh:
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test -p moegrow-web --target wasm32-unknown-unknown`
#![cfg(target_arch = "wasm32")]

use moegrow_core::gpu::Gpu;
use moegrow_web::progress::Progress;
use moegrow_web::session::Session;
use moegrow_web::source::ByteSource;
use std::sync::Arc;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CONFIG: &str = include_str!("../../tests/fixtures/qwen2_moe_experts_bf16/config.json");
const WEIGHTS: &[u8] =
    include_bytes!("../../tests/fixtures/qwen2_moe_experts_bf16/model.safetensors");

fn blob(bytes: &[u8]) -> web_sys::Blob {
    let parts = js_sys::Array::new();
    parts.push(&js_sys::Uint8Array::from(bytes));
    web_sys::Blob::new_with_u8_array_sequence(&parts).unwrap()
}

async fn open(blobs: bool) -> Session {
    let src = |b: &[u8]| {
        if blobs {
            ByteSource::Blob(blob(b))
        } else {
            ByteSource::Memory(Arc::from(b))
        }
    };
    let files = vec![
        ("config.json".to_string(), src(CONFIG.as_bytes())),
        ("model.safetensors".to_string(), src(WEIGHTS)),
    ];
    Session::open("fixture".into(), files, || 0.0)
        .await
        .unwrap()
}

#[wasm_bindgen_test]
async fn blob_slices_read_the_same_bytes_as_memory() {
    let b = ByteSource::Blob(blob(WEIGHTS));
    for (s, e) in [
        (0u64, 8u64),
        (8, 1000),
        (12345, 12346),
        (0, WEIGHTS.len() as u64),
    ] {
        let got = b.read("model.safetensors", s..e).await.unwrap();
        assert_eq!(got, &WEIGHTS[s as usize..e as usize], "bytes {s}..{e}");
    }
    let err = b
        .read("model.safetensors", 0..WEIGHTS.len() as u64 + 1)
        .await
        .unwrap_err();
    assert!(err.contains("past the end of the file"), "{err}");
    let s = open(true).await;
    assert_eq!(s.ckpt.borrow().config.moe.num_experts, 8);
}

/// The norm profile through WebGPU equals the CPU's on the same checkpoint read from Blobs.
#[wasm_bindgen_test]
async fn webgpu_norm_profile_matches_the_cpu() {
    let s = open(true).await;
    let gpu = Gpu::new()
        .await
        .expect("WebGPU adapter (Chromium needs --enable-unsafe-webgpu)");
    let p = Progress::default();
    let on_gpu = moegrow_web::profile::norm_profile(&s, Some(&gpu), &p)
        .await
        .unwrap();
    let on_cpu = moegrow_web::profile::norm_profile(&s, None, &p)
        .await
        .unwrap();
    assert!(on_gpu["device"].as_str().unwrap().starts_with("WebGPU"));
    let (g, c) = (
        on_gpu["profile"].as_array().unwrap(),
        on_cpu["profile"].as_array().unwrap(),
    );
    assert_eq!(g.len(), c.len());
    for (i, (a, b)) in g.iter().zip(c).enumerate() {
        match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "layer {i}: GPU {a} vs CPU {b}"
            ),
            (None, None) => {}
            _ => panic!("layer {i}: GPU {a} vs CPU {b}"),
        }
    }
}

/// Routing from the WebGPU forward pass equals the CPU reference's, token by token.
#[wasm_bindgen_test]
async fn webgpu_routing_matches_the_cpu() {
    let s = open(false).await;
    let gpu = Gpu::new().await.unwrap();
    let p = Progress::default();
    let prompt = "3 14 15 92 65 35 89 79 32 38 46";
    let g = moegrow_web::router::run(&s, prompt, Some(&gpu), &p)
        .await
        .unwrap();
    let c = moegrow_web::router::run(&s, prompt, None, &p)
        .await
        .unwrap();
    assert!(
        g["device"].as_str().unwrap().starts_with("WebGPU"),
        "{}",
        g["device"]
    );
    assert_eq!(c["device"], "CPU");
    for (l, (a, b)) in g["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(c["layers"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(
            a["experts"], b["experts"],
            "layer {l}: expert choices differ"
        );
        let (wa, wb) = (a["weights"].as_array(), b["weights"].as_array());
        if let (Some(wa), Some(wb)) = (wa, wb) {
            for (t, (x, y)) in wa.iter().zip(wb).enumerate() {
                for (u, v) in x.as_array().unwrap().iter().zip(y.as_array().unwrap()) {
                    let (u, v) = (u.as_f64().unwrap(), v.as_f64().unwrap());
                    assert!(
                        (u - v).abs() < 1e-4,
                        "layer {l} token {t}: weight {u} vs {v}"
                    );
                }
            }
        }
    }
}
