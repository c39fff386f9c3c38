//! `engage plugin new`: a project from a template, with the WIT it is
//! built against and its language's SDK copied in (so it stays on that
//! version and builds with no network but the language's registry).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The WIT version new projects are made for.
pub const WIT: &str = "0.2.0";

/// A language a project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// A world, by its WIT name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Rules,
    GiftHooks,
    Templating,
    Routing,
}

impl World {
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Rules => "rules",
            World::GiftHooks => "gift-hooks",
            World::Templating => "templating",
            World::Routing => "routing",
        }
    }

    /// The binding point plugins of this world are bound to.
    pub fn point(self) -> &'static str {
        match self {
            World::Rules => "rules",
            World::GiftHooks => "gift",
            World::Templating => "template",
            World::Routing => "route",
        }
    }
}

/// `engage-plugin.toml`: what `engage plugin build` needs to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub world: World,
    pub lang: Lang,
    pub wit: String,
}

pub const MANIFEST: &str = "engage-plugin.toml";

impl Manifest {
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} not found: run this in a project made by `engage plugin new` (or pass --path)",
                path.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))
    }

    /// Where `engage plugin build` puts the component.
    pub fn component(&self, dir: &Path) -> PathBuf {
        dir.join("build").join(format!("{}.wasm", self.name))
    }
}

const WIT_FILES: [(&str, &str); 6] = [
    (
        "config.wit",
        include_str!("../../../wit/since_v0.2.0/config.wit"),
    ),
    (
        "gift.wit",
        include_str!("../../../wit/since_v0.2.0/gift.wit"),
    ),
    (
        "host.wit",
        include_str!("../../../wit/since_v0.2.0/host.wit"),
    ),
    (
        "routing.wit",
        include_str!("../../../wit/since_v0.2.0/routing.wit"),
    ),
    (
        "rules.wit",
        include_str!("../../../wit/since_v0.2.0/rules.wit"),
    ),
    (
        "templating.wit",
        include_str!("../../../wit/since_v0.2.0/templating.wit"),
    ),
];

const RUST_SDK: [(&str, &str); 3] = [
    ("lib.rs", include_str!("../../../sdk/rust/src/lib.rs")),
    ("host.rs", include_str!("../../../sdk/rust/src/host.rs")),
    ("time.rs", include_str!("../../../sdk/rust/src/time.rs")),
];

/// The vendored SDK's manifest: the workspace's dependencies, spelt out.
const RUST_SDK_MANIFEST: &str = r#"[package]
name = "engage-plugin-sdk"
description = "Write Engage plugins in Rust (copied by `engage plugin new`, engage:plugin@0.2.0)."
version = "0.2.0"
edition = "2024"
publish = false

[dependencies]
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc", "std"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
"#;

fn source(lang: Lang, world: World) -> (&'static str, &'static str) {
    use World::*;
    match (lang, world) {
        (Lang::Rust, Rules) => (
            "src/lib.rs",
            include_str!("../../../sdk/templates/rust/rules.rs"),
        ),
        (Lang::Rust, GiftHooks) => (
            "src/lib.rs",
            include_str!("../../../sdk/templates/rust/gift.rs"),
        ),
        (Lang::Rust, Templating) => (
            "src/lib.rs",
            include_str!("../../../sdk/templates/rust/templating.rs"),
        ),
        (Lang::Rust, Routing) => (
            "src/lib.rs",
            include_str!("../../../sdk/templates/rust/routing.rs"),
        ),
        (Lang::Python, Rules) => (
            "app.py",
            include_str!("../../../sdk/templates/python/rules.py"),
        ),
        (Lang::Python, GiftHooks) => (
            "app.py",
            include_str!("../../../sdk/templates/python/gift.py"),
        ),
        (Lang::Python, Templating) => (
            "app.py",
            include_str!("../../../sdk/templates/python/templating.py"),
        ),
        (Lang::Python, Routing) => (
            "app.py",
            include_str!("../../../sdk/templates/python/routing.py"),
        ),
        (Lang::Js, Rules) => ("app.js", include_str!("../../../sdk/templates/js/rules.js")),
        (Lang::Js, GiftHooks) => ("app.js", include_str!("../../../sdk/templates/js/gift.js")),
        (Lang::Js, Templating) => (
            "app.js",
            include_str!("../../../sdk/templates/js/templating.js"),
        ),
        (Lang::Js, Routing) => (
            "app.js",
            include_str!("../../../sdk/templates/js/routing.js"),
        ),
    }
}

fn fixture(world: World) -> &'static str {
    match world {
        World::Rules => include_str!("../../../sdk/templates/fixtures/rules.json"),
        World::GiftHooks => include_str!("../../../sdk/templates/fixtures/gift.json"),
        World::Templating => include_str!("../../../sdk/templates/fixtures/templating.json"),
        World::Routing => include_str!("../../../sdk/templates/fixtures/routing.json"),
    }
}

/// Whether `name` can name a plugin and a package: 1 to 64 characters of
/// a-z, 0-9, `-` and `_`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// Write a new project for `name` in `dir` (which must not exist or be empty).
pub fn new(dir: &Path, name: &str, world: World, lang: Lang) -> anyhow::Result<Vec<PathBuf>> {
    if !valid_name(name) {
        anyhow::bail!(
            "`{name}` cannot name a plugin: use 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter"
        );
    }
    let (source_path, source_text) = source(lang, world);
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "{} exists and is not empty; choose another place",
            dir.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let fill = |s: &str| {
        s.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{world}}", world.wit_name())
            .replace("{{point}}", world.point())
            .replace("{{source}}", source_path)
            .replace(
                "{{lang}}",
                match lang {
                    Lang::Rust => "Rust",
                    Lang::Python => "Python",
                    Lang::Js => "JavaScript",
                },
            )
    };
    let manifest = Manifest {
        name: name.to_owned(),
        world,
        lang,
        wit: WIT.to_owned(),
    };
    let mut files: Vec<(String, String)> = vec![
        (
            MANIFEST.to_owned(),
            // Every value is a checked name: no quoting needed.
            format!(
                "# An Engage plugin project (`engage plugin new`): `engage plugin build` reads this.\nname = \"{}\"\nworld = \"{}\"\nlang = \"{}\"\nwit = \"{}\"\n",
                manifest.name,
                world.wit_name(),
                match lang {
                    Lang::Rust => "rust",
                    Lang::Python => "python",
                    Lang::Js => "js",
                },
                manifest.wit
            ),
        ),
        (
            "README.md".into(),
            fill(include_str!("../../../sdk/templates/project-README.md")),
        ),
        (source_path.to_owned(), fill(source_text)),
        ("fixtures/example.json".into(), fixture(world).to_owned()),
    ];
    for (f, text) in WIT_FILES {
        files.push((format!("wit/since_v{WIT}/{f}"), text.to_owned()));
    }
    match lang {
        Lang::Rust => {
            files.push((
                "Cargo.toml".into(),
                fill(include_str!("../../../sdk/templates/rust/Cargo.toml")),
            ));
            // The versions this repository builds and tests its own plugins
            // with; cargo drops the entries the project does not use.
            files.push((
                "Cargo.lock".into(),
                include_str!("../../../Cargo.lock").into(),
            ));
            files.push((
                ".gitignore".into(),
                include_str!("../../../sdk/templates/rust/gitignore").into(),
            ));
            files.push((
                "engage-sdk/rust/Cargo.toml".into(),
                RUST_SDK_MANIFEST.into(),
            ));
            for (f, text) in RUST_SDK {
                files.push((format!("engage-sdk/rust/src/{f}"), text.to_owned()));
            }
        }
        Lang::Python => {
            files.push((
                ".gitignore".into(),
                include_str!("../../../sdk/templates/python/gitignore").into(),
            ));
            files.push((
                "engage-sdk/python/engage_sdk.py".into(),
                include_str!("../../../sdk/python/engage_sdk.py").into(),
            ));
        }
        Lang::Js => {
            files.push((
                ".gitignore".into(),
                include_str!("../../../sdk/templates/js/gitignore").into(),
            ));
            files.push((
                "engage-sdk/js/engage.js".into(),
                include_str!("../../../sdk/js/engage.js").into(),
            ));
        }
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
