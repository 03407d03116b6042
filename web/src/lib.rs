//! moegrow's browser explorer: open a Hugging Face MoE checkpoint from local files or a URL,
//! inspect it, look at its experts and routing, grow it and download the result, all with the
//! same `core` code (and WGSL kernels, on WebGPU) as the native tool.
//!
//! Rust holds the data and does every computation; the page (`index.html`, `app.js`) only
//! draws. Long jobs return Promises, report progress through a callback and can be cancelled.

pub mod grow;
pub mod profile;
pub mod progress;
pub mod router;
pub mod session;
pub mod source;
pub mod tensors;

use moegrow_core::gpu::Gpu;
use progress::Progress;
use session::Session;
use source::ByteSource;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

struct Inner {
    session: Session,
    gpu: RefCell<GpuState>,
    cancel: Rc<Cell<bool>>,
    busy: Cell<bool>,
}

enum GpuState {
    Untried,
    Ready(Rc<Gpu>, Arc<AtomicBool>),
    /// Why there is no GPU (no WebGPU, no adapter, device lost): shown to the user.
    Missing(String),
}

/// An opened checkpoint.
#[wasm_bindgen]
pub struct Explorer {
    inner: Rc<Inner>,
}

fn err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn now() -> f64 {
    js_sys::Date::now()
}

impl Inner {
    /// The WebGPU device, created on first use; `None` (with the reason recorded) when the
    /// browser has none or the device was lost.
    async fn gpu(&self) -> Option<Rc<Gpu>> {
        let state = std::mem::replace(&mut *self.gpu.borrow_mut(), GpuState::Untried);
        let next = match state {
            GpuState::Untried => match Gpu::new().await {
                Ok(g) => {
                    let lost = Arc::new(AtomicBool::new(false));
                    let flag = lost.clone();
                    g.device.set_device_lost_callback(move |_, _| {
                        flag.store(true, Ordering::SeqCst);
                    });
                    GpuState::Ready(Rc::new(g), lost)
                }
                Err(e) => GpuState::Missing(format!("no WebGPU ({e}); computing on the CPU")),
            },
            GpuState::Ready(_, lost) if lost.load(Ordering::SeqCst) => GpuState::Missing(
                "the GPU device was lost; computing on the CPU (reload the page to try the GPU again)"
                    .into(),
            ),
            s => s,
        };
        let out = match &next {
            GpuState::Ready(g, _) => Some(g.clone()),
            _ => None,
        };
        *self.gpu.borrow_mut() = next;
        out
    }

    fn gpu_note(&self) -> Option<String> {
        match &*self.gpu.borrow() {
            GpuState::Missing(why) => Some(why.clone()),
            _ => None,
        }
    }
}

/// Run one job at a time: a second one while the first runs is refused, and the cancel flag is
/// cleared at the start of each.
fn job<F, Fut>(inner: &Rc<Inner>, progress: Option<js_sys::Function>, f: F) -> js_sys::Promise
where
    F: FnOnce(Rc<Inner>, Progress) -> Fut + 'static,
    Fut: Future<Output = Result<JsValue, String>> + 'static,
{
    let inner = inner.clone();
    wasm_bindgen_futures::future_to_promise(async move {
        if inner.busy.replace(true) {
            return Err(err(
                "another job is still running; wait for it or cancel it",
            ));
        }
        inner.cancel.set(false);
        let p = Progress::new(progress, inner.cancel.clone());
        let out = f(inner.clone(), p).await;
        inner.session.evict();
        inner.busy.set(false);
        out.map_err(err)
    })
}

fn json(v: serde_json::Value) -> JsValue {
    JsValue::from_str(&v.to_string())
}

#[wasm_bindgen]
impl Explorer {
    /// Open local files (`File`s from a picker, a folder or a drop). `name` is the folder's
    /// name when known; it is recorded in a grown checkpoint's provenance.
    pub async fn open_files(name: String, files: js_sys::Array) -> Result<Explorer, JsValue> {
        let mut list = Vec::new();
        for f in files.iter() {
            let file: web_sys::File = f
                .dyn_into()
                .map_err(|_| err("open_files expects File objects"))?;
            list.push((file.name(), ByteSource::Blob(file.into())));
        }
        let session = Session::open(name, list, now).await.map_err(err)?;
        Ok(Explorer::from_session(session))
    }

    /// Open a checkpoint folder over HTTP (range requests; nothing is downloaded whole).
    pub async fn open_url(url: String) -> Result<Explorer, JsValue> {
        let session = Session::open_url(url.trim(), now).await.map_err(err)?;
        Ok(Explorer::from_session(session))
    }

    /// The `moegrow inspect` facts (header only) as JSON text, plus what the page needs.
    pub fn summary(&self) -> String {
        let s = &self.inner.session;
        let c = s.ckpt.borrow();
        let page = PageSummary {
            summary: moegrow_core::analysis::summary(&c),
            name: s.name.clone(),
            bytes: s.shards.iter().map(|x| x.len()).sum(),
            open_ms: s.open_ms,
            ignored_files: s.ignored.clone(),
            tokenizer: s.tokenizer.is_some(),
            companions: s.companions.iter().map(|(n, _)| n.clone()).collect(),
            growth: c
                .metadata
                .get("moegrow_growth")
                .and_then(|g| serde_json::from_str(g).ok())
                .unwrap_or(serde_json::Value::Null),
            sunk_flops: moegrow_core::growth::provenance::sunk_flops(&c),
        };
        serde_json::to_string(&page).expect("a summary serialises")
    }

    /// Every tensor (JSON array).
    pub fn tensors(&self) -> String {
        tensors::table(&self.inner.session).to_string()
    }

    /// Stop the running job at its next step.
    pub fn cancel(&self) {
        self.inner.cancel.set(true);
    }

    /// Whether a job is running.
    pub fn busy(&self) -> bool {
        self.inner.busy.get()
    }

    /// Create (once) the WebGPU device; resolves to its description, or rejects with why there
    /// is none.
    pub fn gpu_status(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            match inner.gpu().await {
                Some(g) => Ok(JsValue::from_str(&g.describe())),
                None => Err(err(inner.gpu_note().unwrap_or_default())),
            }
        })
    }

    /// Statistics and a histogram of one tensor (JSON).
    pub fn tensor_stats(
        &self,
        name: String,
        bins: usize,
        progress: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        job(&self.inner, progress, move |inner, p| async move {
            tensors::stats(&inner.session, &name, bins.clamp(1, 1024), &p)
                .await
                .map(json)
        })
    }

    /// The per-layer expert weight-norm profile (JSON), on WebGPU when `use_gpu` and available.
    pub fn norm_profile(
        &self,
        use_gpu: bool,
        progress: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        job(&self.inner, progress, move |inner, p| async move {
            let gpu = if use_gpu { inner.gpu().await } else { None };
            let t0 = now();
            let mut v = profile::norm_profile(&inner.session, gpu.as_deref(), &p).await?;
            v["ms"] = (now() - t0).into();
            if use_gpu && gpu.is_none() {
                v["fallback"] = inner.gpu_note().into();
            }
            Ok(json(v))
        })
    }

    /// Expert × expert cosine similarity of one layer (JSON).
    pub fn similarity(&self, layer: usize, progress: Option<js_sys::Function>) -> js_sys::Promise {
        job(&self.inner, progress, move |inner, p| async move {
            profile::similarity(&inner.session, layer, &p)
                .await
                .map(json)
        })
    }

    /// Token → expert assignments for a prompt (JSON).
    pub fn route(
        &self,
        prompt: String,
        use_gpu: bool,
        progress: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        job(&self.inner, progress, move |inner, p| async move {
            let gpu = if use_gpu { inner.gpu().await } else { None };
            let mut v = router::run(&inner.session, &prompt, gpu.as_deref(), &p).await?;
            if use_gpu && gpu.is_none() {
                v["fallback"] = inner.gpu_note().into();
            }
            Ok(json(v))
        })
    }

    /// What growing with these options (JSON, as `grow::GrowOptions`) would produce.
    pub fn preview(&self, options: &str) -> Result<String, JsValue> {
        let o: grow::GrowOptions = serde_json::from_str(options).map_err(err)?;
        grow::preview(&self.inner.session, &o)
            .map(|v| v.to_string())
            .map_err(err)
    }

    /// Grow; resolves to an array of `{name, blob}`, one per output file.
    pub fn grow(&self, options: String, progress: Option<js_sys::Function>) -> js_sys::Promise {
        job(&self.inner, progress, move |inner, p| async move {
            let o: grow::GrowOptions = serde_json::from_str(&options).map_err(|e| e.to_string())?;
            let mut parts: Vec<(String, js_sys::Array)> = Vec::new();
            let mut sink = |name: &str, bytes: &[u8], _last: bool| -> Result<(), String> {
                if parts.last().is_none_or(|(n, _)| n != name) {
                    parts.push((name.to_string(), js_sys::Array::new()));
                }
                let arr = &parts.last().expect("pushed").1;
                arr.push(&js_sys::Uint8Array::from(bytes));
                Ok(())
            };
            grow::grow(&inner.session, &o, &p, &mut sink).await?;
            let out = js_sys::Array::new();
            for (name, arr) in parts {
                let blob =
                    web_sys::Blob::new_with_u8_array_sequence(&arr).map_err(source::js_text)?;
                let o = js_sys::Object::new();
                js_sys::Reflect::set(&o, &"name".into(), &name.into()).map_err(source::js_text)?;
                js_sys::Reflect::set(&o, &"blob".into(), &blob).map_err(source::js_text)?;
                out.push(&o);
            }
            Ok(out.into())
        })
    }
}

impl Explorer {
    fn from_session(session: Session) -> Explorer {
        Explorer {
            inner: Rc::new(Inner {
                session,
                gpu: RefCell::new(GpuState::Untried),
                cancel: Rc::new(Cell::new(false)),
                busy: Cell::new(false),
            }),
        }
    }
}

/// The version of the tool (shown in the page footer).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

/// What the Summary view shows: `core`'s summary plus the page's own facts about the session.
#[derive(serde::Serialize)]
struct PageSummary {
    #[serde(flatten)]
    summary: moegrow_core::analysis::Summary,
    name: String,
    bytes: u64,
    open_ms: f64,
    ignored_files: Vec<String>,
    tokenizer: bool,
    companions: Vec<String>,
    growth: serde_json::Value,
    sunk_flops: Option<f64>,
}
