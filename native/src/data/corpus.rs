//! Corpora as lists of documents, with a deterministic train / held-out split.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from (a path, or `path:line` for JSONL).
    pub source: String,
    pub text: String,
}

#[derive(Debug, Default, Clone)]
pub struct Corpus {
    pub train: Vec<Document>,
    pub heldout: Vec<Document>,
    /// What was read, skipped and split, in words, for the user (`train` and `corpus` print it).
    pub report: Vec<String>,
}

/// A single text file is cut into pieces of about this many bytes, at paragraph breaks where
/// it has them, so that a held-out part exists.
pub const PIECE_BYTES: usize = 4096;

/// One document in this many goes to the held-out part.
pub const HELDOUT_EVERY: u64 = 20;

/// FNV-1a of the document's source: the split depends only on where a document came from, so it
/// is stable across runs, machines and additions to the corpus.
fn is_heldout(source: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.is_multiple_of(HELDOUT_EVERY)
}

impl Corpus {
    fn from_documents(docs: Vec<Document>, mut report: Vec<String>) -> anyhow::Result<Corpus> {
        let mut docs: Vec<Document> = docs
            .into_iter()
            .filter(|d| !d.text.trim().is_empty())
            .collect();
        if docs.is_empty() {
            bail!("the corpus has no text{}", report.first().map(|r| format!(" ({r})")).unwrap_or_default());
        }
        // One document (the most common corpus: one text file): its pieces are the documents.
        if let [d] = &docs[..] {
            let pieces = split(d);
            report.push(format!(
                "{} is one document ({} bytes): cut into {} pieces of about {PIECE_BYTES} bytes at paragraph breaks",
                d.source,
                d.text.len(),
                pieces.len()
            ));
            docs = pieces;
        }
        let (heldout, train): (Vec<_>, Vec<_>) =
            docs.into_iter().partition(|d| is_heldout(&d.source));
        if train.is_empty() || heldout.is_empty() {
            // Tiny corpora: keep at least one document on each side, deterministically.
            let mut all: Vec<Document> = train.into_iter().chain(heldout).collect();
            all.sort_by(|a, b| a.source.cmp(&b.source));
            if all.len() < 2 {
                bail!(
                    "the corpus needs at least two documents (one is held out for evaluation); its one document has {} bytes, too short to cut into pieces of {PIECE_BYTES}",
                    all.first().map_or(0, |d| d.text.len())
                );
            }
            let last = all.pop().expect("two or more");
            return Ok(Corpus {
                train: all,
                heldout: vec![last],
                report,
            });
        }
        Ok(Corpus { train, heldout, report })
    }

    /// A text file, a directory of them (recursively; every file read by its content, not its
    /// name: binary files and hidden entries are skipped and counted), or a JSONL file (`.jsonl`)
    /// whose lines are objects with a `text` field. A corpus of one document is cut into
    /// pieces ([`PIECE_BYTES`]) so that one can be held out.
    /// JSONL documents are in `text_field` (`--text-field`, `text` by default). gzip-compressed
    /// files (by their bytes, `.gz` or not) are read through the decompressor; a `.jsonl.gz`
    /// is JSONL.
    pub fn load_with(path: &Path, text_field: &str) -> anyhow::Result<Corpus> {
        let mut docs = Vec::new();
        let mut skipped = Vec::new();
        collect(path, text_field, &mut docs, &mut skipped)?;
        let mut report = Vec::new();
        if path.is_dir() {
            let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
            let mut line = format!("read {} documents ({bytes} bytes) from {}", docs.len(), path.display());
            if !skipped.is_empty() {
                let shown: Vec<&str> = skipped.iter().take(5).map(String::as_str).collect();
                line.push_str(&format!(
                    "; skipped {} binary or non-UTF-8 files ({}{})",
                    skipped.len(),
                    shown.join(", "),
                    if skipped.len() > shown.len() { ", …" } else { "" }
                ));
            }
            report.push(line);
        }
        Self::from_documents(docs, report).with_context(|| format!("corpus {}", path.display()))
    }

    /// The books shipped with the Rust toolchain's documentation (`rustup component add
    /// rust-docs`): the Book, the Reference, Rust by Example, the Nomicon, and the others under
    /// `share/doc/rust/html`, extracted from their HTML pages.
    pub fn rust_docs() -> anyhow::Result<Corpus> {
        let root = rust_docs_dir()?;
        let mut docs = Vec::new();
        for book in RUST_BOOKS {
            let dir = root.join(book);
            if dir.is_dir() {
                for page in html_files(&dir)? {
                    let html = std::fs::read_to_string(&page)
                        .with_context(|| format!("cannot read {}", page.display()))?;
                    let text = html_to_text(&html);
                    let source = page
                        .strip_prefix(&root)
                        .unwrap_or(&page)
                        .display()
                        .to_string();
                    docs.push(Document { source, text });
                }
            }
        }
        if docs.is_empty() {
            bail!("no documentation books found under {}; install them with `rustup component add rust-docs`, or pass --corpus PATH", root.display());
        }
        Self::from_documents(docs, Vec::new())
    }

    /// `path` if given, else the built-in default (the Rust documentation books), with a name
    /// for reports.
    /// The default corpus is read and parsed once per process (the experiment trains many
    /// runs on it).
    pub fn load_or_default(path: Option<&Path>, text_field: &str) -> anyhow::Result<(Corpus, String)> {
        static DEFAULT: std::sync::OnceLock<Result<Corpus, String>> = std::sync::OnceLock::new();
        match path {
            Some(p) => Ok((Corpus::load_with(p, text_field)?, p.display().to_string())),
            None => Ok((
                DEFAULT
                    .get_or_init(|| Corpus::rust_docs().map_err(|e| format!("{e:#}")))
                    .clone()
                    .map_err(|e| anyhow::anyhow!(e))?,
                "Rust documentation books (rustup component rust-docs)".to_string(),
            )),
        }
    }

    pub fn bytes(&self) -> (usize, usize) {
        let n = |d: &[Document]| d.iter().map(|d| d.text.len()).sum();
        (n(&self.train), n(&self.heldout))
    }
}

/// The books used from the Rust documentation, in a fixed order.
pub const RUST_BOOKS: &[&str] = &[
    "book",
    "reference",
    "rust-by-example",
    "nomicon",
    "embedded-book",
    "rustc",
    "cargo",
    "edition-guide",
    "unstable-book",
    "style-guide",
];

fn rust_docs_dir() -> anyhow::Result<PathBuf> {
    // rustup's proxy can fail transiently when many processes start at once: retry, and say
    // what it printed if it keeps failing.
    let mut tries = 0;
    let out = loop {
        let out = std::process::Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .context("cannot run `rustc --print sysroot` to find the Rust documentation; pass --corpus PATH instead")?;
        tries += 1;
        if out.status.success() && !out.stdout.is_empty() {
            break out;
        }
        if tries == 3 {
            bail!(
                "`rustc --print sysroot` failed ({}): {}; pass --corpus PATH instead",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = Path::new(&sysroot).join("share/doc/rust/html");
    if !dir.is_dir() {
        bail!("the Rust documentation is not installed ({} is missing); install it with `rustup component add rust-docs`, or pass --corpus PATH", dir.display());
    }
    Ok(dir)
}

fn html_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "html")
                && !p.ends_with("print.html")
                && !p.ends_with("404.html")
                && !p.ends_with("toc.html")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The readable text of an HTML page: the `<main>` element when there is one (mdBook pages keep
/// their content there), else the body; scripts, styles and navigation left out.
pub fn html_to_text(html: &str) -> String {
    use scraper::{Html, Node, Selector};
    let doc = Html::parse_document(html);
    let main = Selector::parse("main").expect("valid selector");
    let body = Selector::parse("body").expect("valid selector");
    let Some(root) = doc
        .select(&main)
        .next()
        .or_else(|| doc.select(&body).next())
    else {
        return String::new();
    };
    let mut out = String::new();
    for node in root.descendants() {
        if let Node::Text(t) = node.value() {
            let skip = node.ancestors().any(|a| {
                a.value()
                    .as_element()
                    .is_some_and(|e| matches!(e.name(), "script" | "style" | "nav" | "noscript"))
            });
            if !skip {
                out.push_str(t);
            }
        } else if let Node::Element(e) = node.value() {
            if matches!(
                e.name(),
                "p" | "div" | "li" | "pre" | "h1" | "h2" | "h3" | "h4" | "br" | "tr"
            ) && !out.ends_with('\n')
            {
                out.push('\n');
            }
        }
    }
    // Collapse runs of blank lines left by the markup.
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.trim().to_string()
}

/// Pieces of one document of about [`PIECE_BYTES`]: whole paragraphs (blank-line separated)
/// gathered until a piece is full; a paragraph longer than a piece is cut at the last
/// whitespace (or character boundary) before the limit. Sources `path#k`.
fn split(d: &Document) -> Vec<Document> {
    let mut pieces: Vec<String> = Vec::new();
    let mut cur = String::new();
    let push = |cur: &mut String, pieces: &mut Vec<String>| {
        if !cur.trim().is_empty() {
            pieces.push(std::mem::take(cur));
        }
        cur.clear();
    };
    for para in d.text.split("\n\n") {
        if !cur.is_empty() && cur.len() + para.len() + 2 > PIECE_BYTES {
            push(&mut cur, &mut pieces);
        }
        let mut rest = para;
        while rest.len() > PIECE_BYTES {
            let mut cut = PIECE_BYTES;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(ws) = rest[..cut].rfind(char::is_whitespace).filter(|&w| w > 0) {
                cut = ws;
            }
            push(&mut cur, &mut pieces);
            cur.push_str(&rest[..cut]);
            push(&mut cur, &mut pieces);
            rest = rest[cut..].trim_start();
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(rest);
    }
    push(&mut cur, &mut pieces);
    pieces
        .into_iter()
        .enumerate()
        .map(|(k, text)| Document { source: format!("{}#{k}", d.source), text })
        .collect()
}

/// Text in a file: UTF-8 without NUL bytes (what a text file is, whatever its name says).
fn as_text(bytes: Vec<u8>) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// A file's bytes, gunzipped when they are gzip (magic `1f 8b`), and whether they were.
fn read_maybe_gzip(path: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok((bytes, false));
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut out)
        .with_context(|| format!("{}: not a valid gzip stream", path.display()))?;
    Ok((out, true))
}

/// Whether a file holds JSONL: named `.jsonl`, or `.jsonl.gz` when gzipped.
fn is_jsonl(path: &Path, gzipped: bool) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let name = if gzipped { name.strip_suffix(".gz").unwrap_or(&name).to_string() } else { name };
    name.ends_with(".jsonl")
}

fn collect(path: &Path, text_field: &str, docs: &mut Vec<Document>, skipped: &mut Vec<String>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            // Hidden entries (`.git`, editor files) are not the corpus.
            if e.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            if e.is_dir() {
                collect(&e, text_field, docs, skipped)?;
                continue;
            }
            let (bytes, gz) = read_maybe_gzip(&e)?;
            if is_jsonl(&e, gz) {
                collect(&e, text_field, docs, skipped)?;
                continue;
            }
            match as_text(bytes) {
                Some(text) => docs.push(Document { source: e.display().to_string(), text }),
                None => skipped.push(e.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()),
            }
        }
        return Ok(());
    }
    let (bytes, gz) = read_maybe_gzip(path)?;
    let text = as_text(bytes)
        .with_context(|| format!("cannot read {} as UTF-8 text (it holds NUL bytes or invalid UTF-8)", path.display()))?;
    if is_jsonl(path, gz) {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))?;
            let t = v.get(text_field).and_then(|t| t.as_str()).with_context(|| {
                let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
                format!(
                    "{}:{}: no string field `{text_field}` (its keys: {}; --text-field names another)",
                    path.display(),
                    i + 1,
                    keys.join(", ")
                )
            })?;
            docs.push(Document {
                source: format!("{}:{}", path.display(), i + 1),
                text: t.to_string(),
            });
        }
    } else {
        docs.push(Document {
            source: path.display().to_string(),
            text,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_text_keeps_the_content_and_drops_scripts_and_navigation() {
        let html = r#"<html><body><nav>Menu</nav><main><h1>Ownership</h1><p>Each value has an <code>owner</code>.</p><script>var x=1;</script><pre>let s = String::new();</pre></main></body></html>"#;
        let t = html_to_text(html);
        assert!(
            t.contains("Ownership")
                && t.contains("Each value has an owner.")
                && t.contains("let s = String::new();"),
            "{t}"
        );
        assert!(!t.contains("Menu") && !t.contains("var x"), "{t}");
    }

    #[test]
    fn files_directories_and_jsonl_load_with_a_stable_split() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..60 {
            std::fs::write(
                dir.path().join(format!("doc{i:02}.txt")),
                format!("document number {i}"),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("more.jsonl"),
            "{\"text\": \"from jsonl\"}\n\n{\"text\": \"second\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.bin"), [0u8, 159, 146, 150]).unwrap();
        let a = Corpus::load_with(dir.path(), "text").unwrap();
        let b = Corpus::load_with(dir.path(), "text").unwrap();
        assert_eq!(a.train.len() + a.heldout.len(), 62);
        assert!(
            !a.heldout.is_empty() && a.heldout.len() < 10,
            "about 1 in {HELDOUT_EVERY} held out: {}",
            a.heldout.len()
        );
        let names = |c: &Corpus| {
            c.heldout
                .iter()
                .map(|d| d.source.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), names(&b));
        assert!(a
            .train
            .iter()
            .chain(&a.heldout)
            .any(|d| d.text == "from jsonl"));
    }

    /// One plain text file, the most common corpus there is: cut into pieces at paragraph
    /// breaks (a paragraph longer than a piece at whitespace), every byte of text kept, one
    /// piece or more held out, the same way each time, and the report says so.
    #[test]
    fn a_single_text_file_is_cut_into_pieces_with_a_held_out_part() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("corpus.txt");
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!("Paragraph {i} says something about ownership and borrowing in Rust.\n\n"));
        }
        text.push_str(&"word ".repeat(3000)); // one paragraph of 15000 bytes
        std::fs::write(&f, &text).unwrap();
        let c = Corpus::load_with(&f, "text").unwrap();
        let all: Vec<&Document> = c.train.iter().chain(&c.heldout).collect();
        assert!(all.len() >= 8 && !c.heldout.is_empty() && !c.train.is_empty(), "{} pieces", all.len());
        assert!(all.iter().all(|d| d.text.len() <= PIECE_BYTES && d.source.starts_with(&f.display().to_string())));
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let mut pieces: Vec<&Document> = all.clone();
        pieces.sort_by_key(|d| d.source.rsplit('#').next().unwrap().parse::<usize>().unwrap());
        let joined: Vec<String> = pieces.iter().flat_map(|d| words(&d.text)).collect();
        assert_eq!(joined, words(&text), "no text lost or reordered");
        assert!(c.report.iter().any(|r| r.contains("cut into")), "{:?}", c.report);
        let again = Corpus::load_with(&f, "text").unwrap();
        assert_eq!(again.heldout.iter().map(|d| &d.source).collect::<Vec<_>>(), c.heldout.iter().map(|d| &d.source).collect::<Vec<_>>());
    }

    /// A folder is read by content: text files without an extension (`README`, `GPL-3`) are
    /// documents, binary files are skipped and named in the report, hidden entries ignored.
    #[test]
    fn folders_are_read_by_content_and_binary_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README"), "A readme without an extension.\n\nIt is text.").unwrap();
        std::fs::write(dir.path().join("GPL-3"), "GNU GENERAL PUBLIC LICENSE\nVersion 3").unwrap();
        std::fs::write(dir.path().join("logo.png"), [0x89u8, b'P', b'N', b'G', 0, 0, 0, 13]).unwrap();
        std::fs::write(dir.path().join("latin1.txt"), [b'c', b'a', b'f', 0xE9]).unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git").join("HEAD"), "ref: refs/heads/main").unwrap();
        let c = Corpus::load_with(dir.path(), "text").unwrap();
        let sources: Vec<String> = c.train.iter().chain(&c.heldout).map(|d| d.source.clone()).collect();
        assert_eq!(sources.len(), 2, "{sources:?}");
        assert!(sources.iter().any(|s| s.ends_with("README")) && sources.iter().any(|s| s.ends_with("GPL-3")));
        let r = c.report.join("\n");
        assert!(r.contains("read 2 documents") && r.contains("skipped 2") && r.contains("logo.png") && r.contains("latin1.txt"), "{r}");
    }

    /// JSONL with another field (`--text-field content`), gzip-compressed as datasets ship it,
    /// and a gzipped plain text file beside it; a missing field names the keys there are.
    #[test]
    fn gzipped_jsonl_with_another_text_field_loads() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = |name: &str, text: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(text.as_bytes()).unwrap();
            std::fs::write(dir.path().join(name), e.finish().unwrap()).unwrap();
        };
        let lines: String = (0..30).map(|i| format!("{{\"id\": {i}, \"content\": \"row {i} of the dataset\"}}\n")).collect();
        gz("train.jsonl.gz", &lines);
        gz("notes.txt.gz", "plain text, compressed");
        let c = Corpus::load_with(dir.path(), "content").unwrap();
        let texts: Vec<&str> = c.train.iter().chain(&c.heldout).map(|d| d.text.as_str()).collect();
        assert_eq!(texts.len(), 31, "{texts:?}");
        assert!(texts.contains(&"row 7 of the dataset") && texts.contains(&"plain text, compressed"));
        let e = format!("{:#}", Corpus::load_with(&dir.path().join("train.jsonl.gz"), "text").unwrap_err());
        assert!(e.contains("no string field `text`") && e.contains("content") && e.contains("--text-field"), "{e}");
    }

    #[test]
    fn bad_corpora_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("bad.jsonl");
        std::fs::write(&j, "{\"txt\": 1}\n").unwrap();
        let e = format!("{:#}", Corpus::load_with(&j, "text").unwrap_err());
        assert!(e.contains("bad.jsonl:1: no string field `text`"), "{e}");
        let one = dir.path().join("one.txt");
        std::fs::write(&one, "alone").unwrap();
        assert!(format!("{:#}", Corpus::load_with(&one, "text").unwrap_err()).contains("at least two documents"));
        assert!(format!(
            "{:#}",
            Corpus::load_with(&dir.path().join("missing"), "text").unwrap_err()
        )
        .contains("cannot read"));
    }
}
