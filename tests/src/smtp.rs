//! A real SMTP server on loopback: aiosmtpd, run by `tests/smtp/sink.py`
//! from the venv `scripts/install-smtp` makes. It keeps every message it
//! takes, refuses `bounce…@` recipients with 550 5.1.1, `reject…@` ones
//! with a bare 550 and `busy…@` ones with 451.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The running server; dropping it stops it.
pub struct Smtp {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

/// One message the server took.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The whole message as it came over the wire.
    pub raw: String,
}

impl Received {
    /// A header's value (the first one), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next()?;
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = &mut found {
                if line.starts_with([' ', '\t']) {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                found = Some(v.trim().to_owned());
            }
        }
        found
    }
}

/// The repository's root (tests/ is one below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

impl Smtp {
    /// Start a server that takes any sender.
    pub async fn start() -> Smtp {
        Smtp::start_with(&[]).await
    }

    /// Start one with extra arguments (`--user`, `--password`).
    pub async fn start_with(args: &[&str]) -> Smtp {
        let root = root();
        let python = root.join("target/smtp/venv/bin/python");
        let dir = crate::temp_dir("smtp");
        let mut child = Command::new(&python)
            .arg(root.join("tests/smtp/sink.py"))
            .arg(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} does not start ({e}); run scripts/install-smtp",
                    python.display()
                )
            });
        for _ in 0..200 {
            if let Ok(p) = std::fs::read_to_string(dir.join("port"))
                && let Ok(port) = p.trim().parse()
            {
                return Smtp { port, dir, child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the SMTP sink did not start");
    }

    /// Every message taken so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mail = self.dir.join("mail");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&mail)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .into_iter()
            .filter_map(|p| {
                let raw = String::from_utf8_lossy(&std::fs::read(&p).ok()?).into_owned();
                let env: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p.with_extension("json")).ok()?).ok()?;
                Some(Received {
                    mail_from: env["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: env["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw,
                })
            })
            .collect()
    }

    /// Wait (up to 20 s) until `n` messages have been taken.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the SMTP sink took {} of {n} messages",
            self.received().len()
        );
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
