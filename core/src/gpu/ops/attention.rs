//! Causal softmax attention for GQA and MLA layouts, sliding windows, chunks and Llama-4's
//! temperature included
//! (`shaders/attention.wgsl`).

use crate::gpu::context::{Bind, GpuBuffer, Recorder};
use crate::gpu::shaders;

shader_params! {
    pub struct AttentionParams in "attention.wgsl" {
    pub t_len: u32,
    pub heads: u32,
    pub qk_dim: u32,
    pub v_dim: u32,
    pub q_stride: u32,
    pub k_stride: u32,
    pub v_stride: u32,
    pub out_stride: u32,
    pub q_head_step: u32,
    pub kv_group: u32,
    pub k_head_step: u32,
    pub v_head_step: u32,
    pub v_offset: u32,
    pub window: u32,
    pub scale: f32,
    /// 1: the `sinks` buffer's per-head logit joins each softmax (gpt-oss).
    pub sinks: u32,
    /// Chunked attention's block (Llama-4); 0: none.
    pub chunk: u32,
    /// Llama-4's attention temperature: `floor_scale` (0: none) and `attn_scale`.
    pub temp_floor: f32,
    pub temp_scale: f32,}
}

/// Longest sequence the attention kernel takes (its scores live in 8 KiB of workgroup memory).
pub const MAX_ATTENTION_TOKENS: usize = 2048;

pub fn attention(
    rec: &mut Recorder,
    q: &GpuBuffer,
    k: &GpuBuffer,
    v: &GpuBuffer,
    out: &GpuBuffer,
    sinks: Option<&GpuBuffer>,
    mut p: AttentionParams,
) {
    assert!(
        p.t_len as usize <= MAX_ATTENTION_TOKENS,
        "attention: {} tokens exceed the kernel's {MAX_ATTENTION_TOKENS}",
        p.t_len
    );
    p.sinks = sinks.is_some() as u32;
    // The kernel always binds a sink buffer; without sinks it is never read.
    let none;
    let sink = match sinks {
        Some(s) => s,
        None => {
            none = rec.gpu().zeros(1);
            &none
        }
    };
    let u = rec.gpu().uniform(&p);
    rec.dispatch(
        shaders::ATTENTION,
        "attention",
        &[
            Bind::Uniform(&u),
            Bind::Storage(q),
            Bind::Storage(k),
            Bind::Storage(v),
            Bind::Storage(out),
            Bind::Storage(sink),
        ],
        (p.t_len, p.heads, 1),
    );
}
