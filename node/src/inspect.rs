//! `concord inspect` (placeholder until the chaos issue).

use std::path::Path;

/// Arguments of `concord inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {}

/// Runs `concord inspect`.
pub async fn run(_config: &Path, _args: InspectArgs) -> anyhow::Result<i32> {
    anyhow::bail!("concord inspect is not implemented yet")
}
