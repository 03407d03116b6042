//! Progress reports and cancellation for long jobs. The page passes a callback
//! `(done, total, label)`; its Cancel button sets the shared flag, which every job checks
//! between steps (a step is one fetch or one layer, so cancelling is prompt).

use std::cell::Cell;
use std::rc::Rc;

pub const CANCELLED: &str = "cancelled";

#[derive(Clone, Default)]
pub struct Progress {
    callback: Option<js_sys::Function>,
    cancel: Rc<Cell<bool>>,
}

impl Progress {
    pub fn new(callback: Option<js_sys::Function>, cancel: Rc<Cell<bool>>) -> Progress {
        Progress { callback, cancel }
    }

    /// `Err("cancelled")` once the user has cancelled.
    pub fn check(&self) -> Result<(), String> {
        if self.cancel.get() {
            Err(CANCELLED.into())
        } else {
            Ok(())
        }
    }

    /// Report, then give the browser a turn (repaint, handle the Cancel click).
    pub async fn report(&self, done: f64, total: f64, label: &str) -> Result<(), String> {
        if let Some(cb) = &self.callback {
            let _ = cb.call3(
                &wasm_bindgen::JsValue::NULL,
                &done.into(),
                &total.into(),
                &label.into(),
            );
        }
        yield_now().await;
        self.check()
    }
}

/// Let the event loop run (a zero-delay timer, so that rendering and input happen too).
pub async fn yield_now() {
    #[cfg(target_arch = "wasm32")]
    {
        let p = js_sys::Promise::new(&mut |resolve, _| {
            let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
                .ok()
                .and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok());
            match set_timeout {
                Some(f) => {
                    let _ = f.call2(&wasm_bindgen::JsValue::NULL, &resolve, &0.into());
                }
                None => {
                    let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
                }
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
    }
}
