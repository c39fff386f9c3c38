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

/// A Kannel not started yet: its smsbox URL and credentials are known, so
/// a provider can be defined (and its inbound URL learnt) first.
pub struct Plan {
    pub url: String,
    pub username: String,
    pub password: String,
    ports: [u16; 4],
}

/// Inbound SMS for the fake SMSC to send once everything runs.
pub struct Inbound {
    /// The sms-service `get-url` (with Kannel's `%p`, `%P`, `%a` escapes).
    pub get_url: String,
    /// `from to text` of each message, sent a second apart.
    pub messages: Vec<(String, String, String)>,
}

impl Kannel {
    /// Start bearerbox, the fake SMSC and smsbox, and wait until smsbox
    /// takes requests.
    pub async fn start() -> Kannel {
        Kannel::plan().start(None).await
    }

    /// Choose ports and credentials.
    pub fn plan() -> Plan {
        Plan {
            ports: [free_port(), free_port(), free_port(), free_port()],
            username: "engage".to_owned(),
            password: engage::ids::random_hex(8),
            url: String::new(),
        }
        .with_url()
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

impl Plan {
    fn with_url(mut self) -> Plan {
        self.url = format!("http://127.0.0.1:{}", self.ports[3]);
        self
    }

    /// Start bearerbox, the fake SMSC (sending `inbound`'s messages, if
    /// any) and smsbox, and wait until smsbox takes requests.
    pub async fn start(self, inbound: Option<Inbound>) -> Kannel {
        let dir = crate::temp_dir("kannel");
        let [admin, smsbox, smsc, sendsms] = self.ports;
        let (username, password) = (self.username, self.password);
        let mut conf = format!(
            "group = core\nadmin-port = {admin}\nadmin-password = {password}\nsmsbox-port = {smsbox}\n\
             box-allow-ip = 127.0.0.1\nlog-level = 1\nlog-file = \"{d}/bearerbox.log\"\ndlr-storage = internal\n\n\
             group = smsc\nsmsc = fake\nsmsc-id = fake\nport = {smsc}\nconnect-allow-ip = 127.0.0.1\n\n\
             group = smsbox\nbearerbox-host = 127.0.0.1\nsendsms-port = {sendsms}\nlog-file = \"{d}/smsbox.log\"\nlog-level = 1\n\n\
             group = sendsms-user\nusername = {username}\npassword = {password}\nconcatenation = true\nmax-messages = 10\n",
            d = dir.display()
        );
        let mut fake_args: Vec<String> = ["-H", "127.0.0.1", "-r", &smsc.to_string(), "-i", "1"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        match &inbound {
            Some(i) => {
                conf.push_str(&format!(
                    "\ngroup = sms-service\nkeyword = default\ncatch-all = true\nmax-messages = 0\nget-url = \"{}\"\n",
                    i.get_url
                ));
                fake_args.extend(["-m".to_owned(), i.messages.len().to_string()]);
                fake_args.extend(
                    i.messages
                        .iter()
                        .map(|(from, to, text)| format!("{from} {to} text {text}")),
                );
            }
            None => fake_args.extend(["-m", "0", "1 2 text x"].map(str::to_owned)),
        }
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
                .args(&fake_args)
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
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
