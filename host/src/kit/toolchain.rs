//! `engage plugin build`: the component from a project, with its
//! language's toolchain — cargo for Rust, componentize-py for Python,
//! componentize-qjs for JavaScript — WASI stubbed out (the host grants
//! none). The pinned Python and JavaScript toolchains (the versions the
//! examples in this repository are built and tested with) are installed
//! by the kit on first use, under `ENGAGE_TOOLCHAINS` (default
//! `~/.cache/engage/toolchains`); Rust's `wasm32-wasip2` target with rustup.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use super::scaffold::{Lang, Manifest};

const PY_REQUIREMENTS: &str = include_str!("../../../examples/python-rules/requirements-build.txt");
const JS_PACKAGE: &str = include_str!("../../../examples/js-rules/package.json");

/// `componentize-py==X`, as the examples pin it.
pub fn python_tool() -> anyhow::Result<String> {
    PY_REQUIREMENTS
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("componentize-py=="))
        .map(str::to_owned)
        .context("the pinned componentize-py version is missing")
}

/// `componentize-qjs@X`, as the examples pin it.
pub fn js_tool() -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(JS_PACKAGE)?;
    let version = v["devDependencies"]["componentize-qjs"]
        .as_str()
        .context("the pinned componentize-qjs version is missing")?;
    Ok(format!("componentize-qjs@{version}"))
}

fn toolchains() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("ENGAGE_TOOLCHAINS") {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME").context("set HOME or ENGAGE_TOOLCHAINS")?;
    Ok(PathBuf::from(home).join(".cache/engage/toolchains"))
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        anyhow::bail!("{what} failed ({status}); see the output above");
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Build the project in `dir`; returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let m = Manifest::read(dir)?;
    let out = m.component(dir);
    std::fs::create_dir_all(dir.join("build"))?;
    let wit = format!("wit/since_v{}", m.wit);
    match m.lang {
        Lang::Rust => build_rust(dir, &m, &out)?,
        Lang::Python => {
            let tool = python_tool()?;
            let venv = toolchains()?.join(tool.replace("==", "-"));
            let bin = venv.join("bin/componentize-py");
            if !bin.exists() {
                if !have("python3") {
                    anyhow::bail!(
                        "building a Python plugin needs python3 (3.10 or later) with venv; install it (Debian: apt install python3-venv)"
                    );
                }
                eprintln!("installing {tool} into {}", venv.display());
                run(
                    Command::new("python3").arg("-m").arg("venv").arg(&venv),
                    "creating the toolchain's venv",
                )?;
                run(
                    Command::new(venv.join("bin/pip")).args([
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        &tool,
                    ]),
                    &format!("installing {tool}"),
                )?;
            }
            run(
                Command::new(&bin)
                    .current_dir(dir)
                    .args([
                        "-q",
                        "-d",
                        &wit,
                        "-w",
                        m.world.wit_name(),
                        "componentize",
                        "-p",
                        ".",
                        "-p",
                        "engage-sdk/python",
                        "app",
                        "--stub-wasi",
                        "-o",
                    ])
                    .arg(&out),
                "componentize-py",
            )?;
        }
        Lang::Js => {
            let tool = js_tool()?;
            let prefix = toolchains()?.join(tool.replace('@', "-"));
            let bin = prefix.join("node_modules/.bin/componentize-qjs");
            if !bin.exists() {
                if !have("npm") {
                    anyhow::bail!(
                        "building a JavaScript plugin needs npm (Node.js 18 or later); install it (Debian: apt install npm)"
                    );
                }
                eprintln!("installing {tool} into {}", prefix.display());
                std::fs::create_dir_all(&prefix)?;
                run(
                    Command::new("npm")
                        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                        .arg(&prefix)
                        .arg(&tool),
                    &format!("installing {tool}"),
                )?;
            }
            let quiet = Command::new(&bin)
                .current_dir(dir)
                .args([
                    "--wit",
                    &wit,
                    "--world",
                    m.world.wit_name(),
                    "--js",
                    "app.js",
                    "--module-root",
                    ".",
                    "--stub-wasi",
                    "--sync",
                    "-o",
                ])
                .arg(&out)
                .output()
                .context("running componentize-qjs")?;
            if !quiet.status.success() {
                anyhow::bail!(
                    "componentize-qjs failed ({}):\n{}{}",
                    quiet.status,
                    String::from_utf8_lossy(&quiet.stdout),
                    String::from_utf8_lossy(&quiet.stderr)
                );
            }
        }
    }
    Ok(out)
}

fn build_rust(dir: &Path, m: &Manifest, out: &Path) -> anyhow::Result<()> {
    const TARGET: &str = "wasm32-wasip2";
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("building a Rust plugin needs rustup (https://rustup.rs)")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        eprintln!("installing the {TARGET} target with rustup");
        run(
            Command::new("rustup").args(["target", "add", TARGET]),
            "rustup target add",
        )?;
    }
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", TARGET]);
    // A build started from a build script or another cargo must not
    // inherit its settings.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    run(&mut cmd, "cargo build")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { dir.join(d) })
        .unwrap_or_else(|| dir.join("target"));
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", m.name.replace('-', "_")));
    std::fs::copy(&built, out).with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}
