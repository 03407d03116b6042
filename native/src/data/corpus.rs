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
}

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
    fn from_documents(docs: Vec<Document>) -> anyhow::Result<Corpus> {
        let docs: Vec<Document> = docs
            .into_iter()
            .filter(|d| !d.text.trim().is_empty())
            .collect();
        if docs.is_empty() {
            bail!("the corpus has no text");
        }
        let (heldout, train): (Vec<_>, Vec<_>) =
            docs.into_iter().partition(|d| is_heldout(&d.source));
        if train.is_empty() || heldout.is_empty() {
            // Tiny corpora: keep at least one document on each side, deterministically.
            let mut all: Vec<Document> = train.into_iter().chain(heldout).collect();
            all.sort_by(|a, b| a.source.cmp(&b.source));
            if all.len() < 2 {
                bail!("the corpus needs at least two documents (one is held out for evaluation)");
            }
            let last = all.pop().expect("two or more");
            return Ok(Corpus {
                train: all,
                heldout: vec![last],
            });
        }
        Ok(Corpus { train, heldout })
    }

    /// A text file, a directory of them (recursively, `.txt`, `.md`, `.jsonl`), or a JSONL file
    /// whose lines are objects with a `text` field.
    pub fn load(path: &Path) -> anyhow::Result<Corpus> {
        let mut docs = Vec::new();
        collect(path, &mut docs)?;
        Self::from_documents(docs).with_context(|| format!("corpus {}", path.display()))
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
        Self::from_documents(docs)
    }

    /// `path` if given, else the built-in default (the Rust documentation books), with a name
    /// for reports.
    /// The default corpus is read and parsed once per process (the experiment trains many
    /// runs on it).
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<(Corpus, String)> {
        static DEFAULT: std::sync::OnceLock<Result<Corpus, String>> = std::sync::OnceLock::new();
        match path {
            Some(p) => Ok((Corpus::load(p)?, p.display().to_string())),
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

fn collect(path: &Path, docs: &mut Vec<Document>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            if e.is_dir()
                || e.extension()
                    .is_some_and(|x| x == "txt" || x == "md" || x == "jsonl")
            {
                collect(&e, docs)?;
            }
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    if path.extension().is_some_and(|x| x == "jsonl") {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not valid JSON", path.display(), i + 1))?;
            let t = v
                .get("text")
                .and_then(|t| t.as_str())
                .with_context(|| format!("{}:{}: no string field `text`", path.display(), i + 1))?;
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
        let a = Corpus::load(dir.path()).unwrap();
        let b = Corpus::load(dir.path()).unwrap();
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

    #[test]
    fn bad_corpora_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("bad.jsonl");
        std::fs::write(&j, "{\"txt\": 1}\n").unwrap();
        let e = format!("{:#}", Corpus::load(&j).unwrap_err());
        assert!(e.contains("bad.jsonl:1: no string field `text`"), "{e}");
        let one = dir.path().join("one.txt");
        std::fs::write(&one, "alone").unwrap();
        assert!(format!("{:#}", Corpus::load(&one).unwrap_err()).contains("at least two documents"));
        assert!(format!(
            "{:#}",
            Corpus::load(&dir.path().join("missing")).unwrap_err()
        )
        .contains("cannot read"));
    }
}
