//! A real Kannel on loopback: bearerbox, smsbox and Kannel's own fake SMSC
//! (`fakesmsc`), each on a free port, from the Debian packages `kannel`
//! and `kannel-extras` (`scripts/install-kannel` installs them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BEARERBOX: &str = "/usr/sbin/bearerbox";
const SMSBOX: &str = "/usr/sbin/smsbox";
const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";

/// The running gateway; dropping it stops every box.
pub struct Kannel {
    /// The smsbox's base URL (for a provider's `url`).
    pub url: String,
    pub username: String,
    pub password: String,
    dir: PathBuf,
    children: Vec<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(cmd: &mut Command, what: &str) -> Child {
    cmd.stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start ({e}); run scripts/install-kannel"))
}

async fn wait_for_port(port: u16, what: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not open port {port}");
}

impl Kannel {
    /// Start bearerbox, the fake SMSC and smsbox, and wait until smsbox
    /// takes requests.
    pub async fn start() -> Kannel {
        let dir = crate::temp_dir("kannel");
        let (admin, smsbox, smsc, sendsms) = (free_port(), free_port(), free_port(), free_port());
        let (username, password) = ("engage".to_owned(), engage::ids::random_hex(8));
        let conf = format!(
            "group = core\nadmin-port = {admin}\nadmin-password = {password}\nsmsbox-port = {smsbox}\n\
             box-allow-ip = 127.0.0.1\nlog-level = 1\nlog-file = \"{d}/bearerbox.log\"\ndlr-storage = internal\n\n\
             group = smsc\nsmsc = fake\nsmsc-id = fake\nport = {smsc}\nconnect-allow-ip = 127.0.0.1\n\n\
             group = smsbox\nbearerbox-host = 127.0.0.1\nsendsms-port = {sendsms}\nlog-file = \"{d}/smsbox.log\"\nlog-level = 1\n\n\
             group = sendsms-user\nusername = {username}\npassword = {password}\nconcatenation = true\nmax-messages = 10\n",
            d = dir.display()
        );
        let conf_path = dir.join("kannel.conf");
        std::fs::write(&conf_path, conf).expect("kannel.conf");
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
        let children = vec![spawn(
            Command::new(BEARERBOX)
                .arg(&conf_path)
                .stdout(log("bearerbox.out"))
                .stderr(log("bearerbox.err")),
            "bearerbox",
        )];
        let mut k = Kannel {
            url: format!("http://127.0.0.1:{sendsms}"),
            username,
            password,
            dir: dir.clone(),
            children,
        };
        wait_for_port(smsc, "bearerbox's fake SMSC").await;
        k.children.push(spawn(
            Command::new(FAKESMSC)
                .args([
                    "-H",
                    "127.0.0.1",
                    "-r",
                    &smsc.to_string(),
                    "-i",
                    "1",
                    "-m",
                    "0",
                    "1 2 text x",
                ])
                .stdout(log("fakesmsc.out"))
                .stderr(log("fakesmsc.err")),
            "fakesmsc",
        ));
        k.children.push(spawn(
            Command::new(SMSBOX)
                .arg(&conf_path)
                .stdout(log("smsbox.out"))
                .stderr(log("smsbox.err")),
            "smsbox",
        ));
        wait_for_port(sendsms, "smsbox").await;
        k
    }

    /// What the fake SMSC received, one line per message
    /// (`Got message N: <from to coding text>`).
    pub fn received(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for f in ["fakesmsc.out", "fakesmsc.err"] {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            lines.extend(
                text.lines()
                    .filter(|l| l.contains("Got message"))
                    .map(str::to_owned),
            );
        }
        lines
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
