//! Every configuration example in the documentation is one pgha loads as it stands.
//!
//! The test finds every ```toml block of README.md and of every Markdown file under docs/
//! (recursively: translations such as docs/zh/ are found, not listed) and loads it with the
//! loader that reads such a file:
//!
//! - a node config (`pgha agent --config FILE`): [`NodeConfig::load`];
//! - a local cluster's `pgha.toml`: [`Config::load`];
//! - a secrets file: [`Secrets::load`] (written 0600, as pgha requires).
//!
//! Which one is told by the block's first line when it is one of these comments (any case):
//!
//! - `# node config` (or `# node.toml`), `# pgha.toml`, `# secrets.toml`: a whole file;
//! - `# fragment of node config` or `# fragment of pgha.toml`: a part of one (say, a
//!   `[proxy.tls]` section alone), checked merged into a minimal valid file of that kind, its
//!   keys over the minimal file's;
//! - `# not a pgha config: REASON`: skipped (e.g. another program's TOML).
//!
//! Without such a line, by content: a `[member]` or `[etcd]` section makes a node config, a
//! `[cluster]` section with `members` a `pgha.toml` (`config_kind_of`, what `pgha config
//! validate` decides by); a block that is neither fails, naming its file and line.
//!
//! Files the examples name (secrets, certificates, the member directory) need not exist: the
//! loaders check values and relations, and read those files only when an agent starts.

use std::path::{Path, PathBuf};

use pgha_host::local::config::{config_kind_of, Config, ConfigKind};
use pgha_host::node::config::NodeConfig;
use pgha_host::secrets::Secrets;

/// One ```toml block: where it is and its text.
struct Block {
    file: PathBuf,
    line: usize,
    text: String,
}

/// What a block is to be loaded as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Whole(ConfigKind),
    Fragment(ConfigKind),
    Secrets,
    Skipped,
}

const MINIMAL_NODE: &str = include_str!("fixtures/minimal_node.toml");

const MINIMAL_LOCAL: &str = r#"
[cluster]
name = "doc"
members = 3
base_port = 15432
"#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every `.md` under docs/, in a stable order.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    let mut found = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut found);
    found.sort();
    found
}

/// The ```toml blocks of `text` (fences may be indented, as in a list).
fn toml_blocks(file: &Path, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```toml") => open = Some((i + 1, String::new())),
            Some((start, body)) if fence.starts_with("```") => {
                blocks.push(Block {
                    file: file.to_path_buf(),
                    line: *start,
                    text: std::mem::take(body),
                });
                open = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn kind_of(block: &Block) -> Result<Kind, String> {
    let first = block
        .text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_lowercase();
    let marker = first.strip_prefix('#').map(str::trim).unwrap_or("");
    let kind = match marker {
        "node config" | "node.toml" => Some(Kind::Whole(ConfigKind::Node)),
        "pgha.toml" => Some(Kind::Whole(ConfigKind::Local)),
        "secrets.toml" => Some(Kind::Secrets),
        "fragment of node config" | "fragment of node.toml" => {
            Some(Kind::Fragment(ConfigKind::Node))
        }
        "fragment of pgha.toml" => Some(Kind::Fragment(ConfigKind::Local)),
        m if m.starts_with("not a pgha config") => Some(Kind::Skipped),
        _ => None,
    };
    if let Some(kind) = kind {
        return Ok(kind);
    }
    let table: toml::Table = block.text.parse().map_err(|e| format!("not TOML: {e}"))?;
    config_kind_of(&table).map(Kind::Whole).ok_or_else(|| {
        "neither a node config nor a pgha.toml by its content: start the block with \
         `# fragment of node config`, `# fragment of pgha.toml`, `# secrets.toml` or \
         `# not a pgha config: REASON` (see crates/pgha-host/tests/doc_examples.rs)"
            .to_string()
    })
}

/// `over`'s keys over `base`'s, tables merged key by key.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Loads `block` as `kind` from a file in `dir`; the loader's error otherwise.
fn load(block: &Block, kind: Kind, dir: &Path) -> Result<(), String> {
    let file = dir.join("example.toml");
    let text = match kind {
        Kind::Fragment(of) => {
            let minimal = match of {
                ConfigKind::Node => MINIMAL_NODE,
                ConfigKind::Local => MINIMAL_LOCAL,
            };
            let mut base: toml::Table = minimal.parse().unwrap();
            let fragment: toml::Table = block.text.parse().map_err(|e| format!("not TOML: {e}"))?;
            merge(&mut base, fragment);
            toml::to_string(&base).unwrap()
        }
        _ => block.text.clone(),
    };
    std::fs::write(&file, text).unwrap();
    let result = match kind {
        Kind::Whole(ConfigKind::Node) | Kind::Fragment(ConfigKind::Node) => {
            NodeConfig::load(&file).map(drop).map_err(|e| e.to_string())
        }
        Kind::Whole(ConfigKind::Local) | Kind::Fragment(ConfigKind::Local) => {
            Config::load(&file).map(drop).map_err(|e| e.to_string())
        }
        Kind::Secrets => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            Secrets::load(&file).map(drop).map_err(|e| e.to_string())
        }
        Kind::Skipped => Ok(()),
    };
    std::fs::remove_file(&file).unwrap();
    result
}

#[test]
fn every_toml_example_in_the_docs_loads() {
    let root = workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut loaded = 0;
    for md in markdown_files(&root) {
        let text = std::fs::read_to_string(&md).unwrap();
        for block in toml_blocks(&md, &text) {
            let place = format!(
                "{}:{}",
                block
                    .file
                    .strip_prefix(&root)
                    .unwrap_or(&block.file)
                    .display(),
                block.line
            );
            match kind_of(&block).and_then(|kind| load(&block, kind, dir.path())) {
                Ok(()) => loaded += 1,
                Err(e) => failures.push(format!("{place}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "documentation examples that pgha does not load:\n{}",
        failures.join("\n")
    );
    // README.md's node config at least: the search itself works.
    assert!(
        loaded >= 1,
        "no ```toml block found under {}",
        root.display()
    );
}

/// The conventions themselves: markers, fragments merged into a minimal file, content.
#[test]
fn blocks_are_told_apart_and_fragments_merged() {
    let dir = tempfile::tempdir().unwrap();
    let md = "Intro\n\n```toml\n# fragment of node config\n[proxy]\nrw_listen = \"127.0.0.1:6432\"\n```\n\n  ```toml\n  [cluster]\n  name = \"x\"\n  members = 0\n  base_port = 15432\n  ```\n\n```toml\n[other]\nx = 1\n```\n\n```sh\nnot toml\n```\n";
    let blocks = toml_blocks(Path::new("t.md"), md);
    assert_eq!(blocks.len(), 3);
    assert_eq!((blocks[0].line, blocks[1].line, blocks[2].line), (3, 9, 16));
    let kind = kind_of(&blocks[0]).unwrap();
    assert_eq!(kind, Kind::Fragment(ConfigKind::Node));
    load(&blocks[0], kind, dir.path()).unwrap();
    let kind = kind_of(&blocks[1]).unwrap();
    assert_eq!(kind, Kind::Whole(ConfigKind::Local));
    let err = load(&blocks[1], kind, dir.path()).unwrap_err();
    assert!(err.contains("cluster.members"), "{err}");
    assert!(kind_of(&blocks[2]).unwrap_err().contains("# fragment of"));
}
