//! `pgha config show|set|edit|validate`: the cluster's dynamic settings, and checking a
//! configuration file.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use pgha_host::config_edit;
use pgha_host::ClusterHandle;

use crate::cli::{ConfigAction, FileKind};
use crate::render;

pub async fn run(action: ConfigAction) -> anyhow::Result<()> {
    match action {
        ConfigAction::Show { at } => {
            let config = at.open().await?.config().await?;
            out!("{}", render::render_config(&config));
            note_timing(&config);
            Ok(())
        }
        ConfigAction::Set { at, assignments } => set(&at.open().await?, &assignments).await,
        ConfigAction::Edit { at } => edit(&at.open().await?).await,
        ConfigAction::Validate { file, kind } => validate(&file, kind),
    }
}

async fn set(handle: &ClusterHandle, assignments: &[String]) -> anyhow::Result<()> {
    let changed = handle.set_config(assignments).await?;
    out!("{}", render::render_config(&changed.config));
    note_timing(&changed.config);
    if changed.deferred {
        outln!("(the cluster is stopped: applied at the next `pgha up`)");
    }
    if let Some((progress, took)) = &changed.sync {
        outln!(
            "{}",
            render::render_sync_progress(&changed.config, progress, *took)
        );
    }
    Ok(())
}

/// Says on stderr when the timing settings, valid, may leave the failsafe no room to keep
/// the leader writing through a store outage.
fn note_timing(config: &pgha_core::ClusterConfig) {
    if let Some(tight) = config.failsafe_too_tight() {
        eprintln!("pgha: note: {tight}");
    }
    if let Some(raised) = config.margin_raised() {
        eprintln!("pgha: note: {raised}");
    }
}

/// Opens the editor on the settings until they are stored, nothing changed, or the user
/// gives up; an edit that could not be stored is kept in its file, named.
async fn edit(handle: &ClusterHandle) -> anyhow::Result<()> {
    let config = handle.config().await?;
    let file = tempfile::Builder::new()
        .prefix("pgha-config-")
        .suffix(".conf")
        .tempfile()
        .context("create the file to edit")?;
    std::fs::write(file.path(), config_edit::editable(&config))
        .with_context(|| format!("write {}", file.path().display()))?;
    loop {
        open_editor(file.path()).await?;
        let text = std::fs::read_to_string(file.path())
            .with_context(|| format!("read {}", file.path().display()))?;
        let outcome = match config_edit::assignments(&config, &text) {
            Ok(list) if list.is_empty() => {
                outln!("no change");
                return Ok(());
            }
            Ok(list) => set(handle, &list).await,
            Err(e) => Err(e.into()),
        };
        let Err(e) = outcome else {
            return Ok(());
        };
        if std::io::stdin().is_terminal() {
            eprintln!("pgha: {e:#}");
            if crate::confirm("edit again? [y/N] ")? {
                continue;
            }
        }
        let (_, kept) = file.keep().context("keep the edited file")?;
        anyhow::bail!(
            "{e:#}\nnothing was changed; your edit is kept in {}",
            kept.display()
        );
    }
}

/// `$VISUAL` or `$EDITOR` (default vi) on `file`, through sh so that an editor with
/// arguments (`code -w`) works.
async fn open_editor(file: &Path) -> anyhow::Result<()> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_string());
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .await
        .with_context(|| format!("run the editor {editor:?}"))?;
    anyhow::ensure!(
        status.success(),
        "the editor {editor:?} exited with {status}: nothing was changed"
    );
    Ok(())
}

fn validate(file: &Path, kind: Option<FileKind>) -> anyhow::Result<()> {
    use pgha_host::local::config::{config_kind, ConfigKind};
    let kind = match kind {
        Some(FileKind::Node) => ConfigKind::Node,
        Some(FileKind::Local) => ConfigKind::Local,
        None => config_kind(file)?,
    };
    let summary = match kind {
        ConfigKind::Node => {
            render::node_config_summary(&pgha_host::node::config::NodeConfig::load(file)?)
        }
        ConfigKind::Local => {
            render::local_config_summary(&pgha_host::local::config::Config::load(file)?)
        }
    };
    outln!("{}: valid\n{summary}", file.display());
    Ok(())
}
