//! Where a file's bytes come from: a local `Blob` (file picker, drag and drop), an HTTP URL
//! read with range requests (as the Hub's safetensors viewer does), or memory (tests). Every
//! read is a slice; a whole checkpoint is never copied into wasm memory.

use std::ops::Range;
use std::sync::Arc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[derive(Clone)]
pub enum ByteSource {
    Blob(web_sys::Blob),
    Url { url: String, len: u64 },
    Memory(Arc<[u8]>),
}

/// A JavaScript exception or rejection as text.
pub fn js_text(e: wasm_bindgen::JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

impl ByteSource {
    pub fn len(&self) -> u64 {
        match self {
            ByteSource::Blob(b) => b.size() as u64,
            ByteSource::Url { len, .. } => *len,
            ByteSource::Memory(m) => m.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `range` of the file; `name` is only for messages.
    pub async fn read(&self, name: &str, range: Range<u64>) -> Result<Vec<u8>, String> {
        if range.end > self.len() || range.start > range.end {
            return Err(format!(
                "{name}: bytes {range:?} lie past the end of the file ({} bytes)",
                self.len()
            ));
        }
        match self {
            ByteSource::Memory(m) => Ok(m[range.start as usize..range.end as usize].to_vec()),
            ByteSource::Blob(b) => {
                let slice = b
                    .slice_with_f64_and_f64(range.start as f64, range.end as f64)
                    .map_err(|e| format!("{name}: cannot slice the file: {}", js_text(e)))?;
                let buf = JsFuture::from(slice.array_buffer())
                    .await
                    .map_err(|e| format!("{name}: cannot read the file: {}", js_text(e)))?;
                Ok(js_sys::Uint8Array::new(&buf).to_vec())
            }
            ByteSource::Url { url, .. } => {
                if range.is_empty() {
                    return Ok(Vec::new());
                }
                let (bytes, _, _) = fetch(url, Some(range.clone())).await?;
                if bytes.len() as u64 != range.end - range.start {
                    return Err(format!(
                        "{url}: asked for {} bytes, got {}",
                        range.end - range.start,
                        bytes.len()
                    ));
                }
                Ok(bytes)
            }
        }
    }
}

/// GET `url` (optionally a byte range). Returns the body, the total file size the server
/// states (`Content-Range` or `Content-Length`) and the status.
pub async fn fetch(
    url: &str,
    range: Option<Range<u64>>,
) -> Result<(Vec<u8>, Option<u64>, u16), String> {
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_mode(web_sys::RequestMode::Cors);
    let headers = web_sys::Headers::new().map_err(js_text)?;
    if let Some(r) = &range {
        headers
            .set("Range", &format!("bytes={}-{}", r.start, r.end - 1))
            .map_err(js_text)?;
    }
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(url, &init)
        .map_err(|e| format!("{url}: {}", js_text(e)))?;
    let global = js_sys::global();
    let promise = if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.fetch_with_request(&request)
    } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.fetch_with_request(&request)
    } else {
        return Err("no fetch() in this environment".into());
    };
    let resp: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(|e| format!("{url}: network error: {}", js_text(e)))?
        .unchecked_into();
    let status = resp.status();
    if range.is_some() && status == 200 {
        // The server ignored Range and is sending the whole file: stop it now.
        if let Some(body) = resp.body() {
            let _ = body.cancel();
        }
        return Err(format!(
            "{url}: the server ignores HTTP Range requests (answered 200, not 206); moegrow reads remote checkpoints by ranges so that only the needed bytes are downloaded"
        ));
    }
    if !(200..300).contains(&status) {
        return Err(format!("{url}: HTTP {status} {}", resp.status_text()));
    }
    let h = resp.headers();
    let total = h
        .get("content-range")
        .ok()
        .flatten()
        .and_then(|v| v.rsplit('/').next().and_then(|n| n.trim().parse().ok()))
        .or_else(|| {
            if status == 200 {
                h.get("content-length")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse().ok())
            } else {
                None
            }
        });
    let buf = JsFuture::from(resp.array_buffer().map_err(js_text)?)
        .await
        .map_err(|e| format!("{url}: {}", js_text(e)))?;
    Ok((js_sys::Uint8Array::new(&buf).to_vec(), total, status))
}
