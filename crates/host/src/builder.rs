//! `flashspin build`: runs each component's `[component.X.build] command`
//! in the manifest's folder (or its `workdir`), as `spin build` does.

use std::process::Command;

use anyhow::{Context, bail};

use crate::manifest::Manifest;

const WASM_TARGET: &str = "wasm32-wasip2";

pub fn build_all(manifest: &Manifest) -> anyhow::Result<()> {
    let builds: Vec<_> = manifest
        .components
        .values()
        .filter_map(|c| c.build.as_ref().map(|b| (c, b)))
        .collect();
    if builds.is_empty() {
        println!("None of the components have a build command.");
        return Ok(());
    }
    if builds
        .iter()
        .any(|(_, b)| b.command.as_slice().iter().any(|c| c.contains(WASM_TARGET)))
    {
        ensure_wasm_target()?;
    }
    for (component, build) in builds {
        let dir = match &build.workdir {
            Some(w) => manifest.dir.join(w),
            None => manifest.dir.clone(),
        };
        for command in build.command.as_slice() {
            println!("Building component {} with `{command}`", component.id);
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&dir)
                .status()
                .with_context(|| {
                    format!(
                        "cannot spawn build process {command:?} for component {}",
                        component.id
                    )
                })?;
            if !status.success() {
                bail!(
                    "build command for component {} failed with status {status}",
                    component.id
                );
            }
        }
    }
    println!("Finished building all Spin components");
    Ok(())
}

/// Adds the `wasm32-wasip2` target through rustup when it is missing, so a
/// fresh machine needs no manual step.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: the toolchain is managed some other way; let the build
        // itself report a missing target.
        return Ok(());
    };
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    println!("Adding the {WASM_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed with status {status}");
    }
    Ok(())
}
