//! The wgpu device, buffers, pipeline cache and command recording: one async API for native
//! (Vulkan, Metal, DX12, GL; Mesa's lavapipe in CI) and the browser (WebGPU).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// A device and everything built on it. Pipelines are compiled once per (shader, entry point)
/// and cached; errors the device reports asynchronously are collected and surface at the next
/// readback as a clear error instead of a panic.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Largest buffer we bind as one storage binding; bigger tensors are split. Equal to the
    /// device limit unless lowered (tests lower it to exercise the split path on small data).
    pub max_binding_bytes: u64,
    /// Largest part a weight is uploaded in (at most `max_binding_bytes`). Tests lower it to
    /// exercise the split paths on small models.
    pub weight_part_bytes: u64,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<wgpu::ComputePipeline>>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// A one-element buffer for bindings a dispatch does not use (WGSL has no optional ones).
    dummy: GpuBuffer,
    pub submissions: AtomicU64,
    pub readbacks: AtomicU64,
}

/// A device-side array of f32.
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: usize,
}

impl Gpu {
    /// The first adapter the platform offers (high-performance preference), with the adapter's
    /// own limits rather than wgpu's conservative defaults.
    pub async fn new() -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Invalid(format!(
                "no GPU adapter found ({e}). On Linux without a GPU install Mesa's software Vulkan: apt-get install mesa-vulkan-drivers; in a browser, WebGPU must be enabled"
            )))?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("moegrow"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Invalid(format!("cannot open the GPU device: {e}")))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().expect("error list").push(e.to_string());
        }));
        let max_binding_bytes = limits.max_storage_buffer_binding_size as u64;
        let dummy = GpuBuffer {
            buffer: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("unused binding"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }),
            len: 1,
        };
        Ok(Gpu {
            weight_part_bytes: max_binding_bytes,
            dummy,
            info: adapter.get_info(),
            limits,
            max_binding_bytes,
            device,
            queue,
            pipelines: Mutex::new(HashMap::new()),
            errors,
            submissions: AtomicU64::new(0),
            readbacks: AtomicU64::new(0),
        })
    }

    /// [`Gpu::new`] for native callers without an async runtime.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Gpu> {
        pollster::block_on(Gpu::new())
    }

    /// Bytes per weight part: the binding limit, or less when lowered.
    pub fn part_bytes(&self) -> u64 {
        self.weight_part_bytes.min(self.max_binding_bytes)
    }

    pub fn dummy(&self) -> &GpuBuffer {
        &self.dummy
    }

    /// A software rasteriser (Mesa's lavapipe, SwiftShader): correct, but slower than the CPU
    /// code paths, so automatic device choices skip it.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// The compute pipeline for `entry` in `source`, compiled on first use.
    pub fn pipeline(
        &self,
        source: &'static str,
        entry: &'static str,
    ) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().expect("pipeline cache");
        cache
            .entry((source, entry))
            .or_insert_with(|| {
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(entry),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                Arc::new(
                    self.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(entry),
                            layout: None,
                            module: &module,
                            entry_point: Some(entry),
                            compilation_options: Default::default(),
                            cache: None,
                        }),
                )
            })
            .clone()
    }

    pub fn upload(&self, data: &[f32]) -> GpuBuffer {
        // Zero-length bindings are invalid; keep one element so empty tensors still bind.
        let padded;
        let data = if data.is_empty() {
            padded = [0.0f32];
            &padded[..]
        } else {
            data
        };
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            });
        GpuBuffer {
            buffer,
            len: data.len(),
        }
    }

    pub fn upload_u32(&self, data: &[u32]) -> GpuBuffer {
        let data: Vec<f32> = data.iter().map(|x| f32::from_bits(*x)).collect();
        self.upload(&data)
    }

    pub fn zeros(&self, len: usize) -> GpuBuffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (len.max(1).next_multiple_of(4) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuBuffer { buffer, len }
    }

    pub fn uniform<T: bytemuck::Pod>(&self, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    pub fn encoder(&self) -> Recorder<'_> {
        Recorder {
            gpu: self,
            encoder: self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }),
        }
    }

    fn take_errors(&self) -> Result<()> {
        let mut e = self.errors.lock().expect("error list");
        if e.is_empty() {
            Ok(())
        } else {
            let msg = e.join("; ");
            e.clear();
            Err(Error::Invalid(format!("GPU error: {msg}")))
        }
    }

    /// Copy `buffers` back to the host, in one submission and one map.
    pub async fn read_many(&self, buffers: &[&GpuBuffer]) -> Result<Vec<Vec<f32>>> {
        let total: u64 = buffers.iter().map(|b| (b.len.max(1) * 4) as u64).sum();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut offset = 0;
        for b in buffers {
            let n = (b.len.max(1) * 4) as u64;
            enc.copy_buffer_to_buffer(&b.buffer, 0, &staging, offset, n);
            offset += n;
        }
        self.queue.submit([enc.finish()]);
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::Invalid(format!("GPU poll failed: {e}")))?;
        rx.recv_async()
            .await
            .map_err(|_| Error::Invalid("GPU readback was dropped".into()))?
            .map_err(|e| Error::Invalid(format!("GPU readback failed: {e}")))?;
        self.take_errors()?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Invalid(format!("GPU readback failed: {e}")))?;
        let all: &[f32] = bytemuck::cast_slice(&view);
        let mut out = Vec::new();
        let mut at = 0;
        for b in buffers {
            out.push(all[at..at + b.len].to_vec());
            at += b.len.max(1);
        }
        drop(view);
        staging.unmap();
        Ok(out)
    }

    pub async fn read(&self, buffer: &GpuBuffer) -> Result<Vec<f32>> {
        Ok(self.read_many(&[buffer]).await?.remove(0))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, buffer: &GpuBuffer) -> Result<Vec<f32>> {
        pollster::block_on(self.read(buffer))
    }
}

/// Records dispatches into one command encoder; [`Recorder::submit`] sends them as a single
/// submission.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    encoder: wgpu::CommandEncoder,
}

/// One binding of a dispatch: a storage buffer (whole), a uniform, or a binding number the
/// entry point does not use (pipelines use layouts derived from the entry point, which leave
/// unused bindings out).
pub enum Bind<'a> {
    Storage(&'a GpuBuffer),
    Uniform(&'a wgpu::Buffer),
    Skip,
}

impl<'g> Recorder<'g> {
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Dispatch `entry` of `source` with bindings 0..n of group 0 in order, over a grid of
    /// workgroups.
    pub fn dispatch(
        &mut self,
        source: &'static str,
        entry: &'static str,
        binds: &[Bind],
        groups: (u32, u32, u32),
    ) {
        let pipeline = self.gpu.pipeline(source, entry);
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = binds
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let resource = match b {
                    Bind::Storage(s) => s.buffer.as_entire_binding(),
                    Bind::Uniform(u) => u.as_entire_binding(),
                    Bind::Skip => return None,
                };
                Some(wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                })
            })
            .collect();
        let group = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &layout,
                entries: &entries,
            });
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(entry),
                timestamp_writes: None,
            });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// Upload `data` into an existing buffer before the dispatches recorded after this call.
    pub fn write(&mut self, to: &GpuBuffer, data: &[f32]) {
        let staging = self.gpu.upload(data);
        self.copy(&staging, 0, to, 0, data.len());
    }

    pub fn copy(
        &mut self,
        from: &GpuBuffer,
        from_offset: usize,
        to: &GpuBuffer,
        to_offset: usize,
        len: usize,
    ) {
        self.encoder.copy_buffer_to_buffer(
            &from.buffer,
            (from_offset * 4) as u64,
            &to.buffer,
            (to_offset * 4) as u64,
            (len * 4) as u64,
        );
    }

    pub fn submit(self) {
        self.gpu.queue.submit([self.encoder.finish()]);
        self.gpu.submissions.fetch_add(1, Ordering::Relaxed);
    }
}

/// Workgroup grid for `n` items of `per_group` each: x up to 65535 groups, the rest in y
/// (WebGPU's per-dimension limit). Kernels recover the linear group index as
/// `wid.y * num_workgroups.x + wid.x`.
pub fn grid(n: usize, per_group: usize) -> (u32, u32, u32) {
    let groups = n.div_ceil(per_group).max(1);
    let x = groups.min(65535);
    (x as u32, groups.div_ceil(x) as u32, 1)
}
