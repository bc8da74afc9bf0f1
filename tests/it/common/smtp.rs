//! A real SMTP server (aiosmtpd) that records every message it accepts,
//! with the body decoded from its transfer encoding, as JSON lines.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SINK: &str = r#"
import json, sys
from email import message_from_bytes
from aiosmtpd.controller import Controller

port, out = int(sys.argv[1]), sys.argv[2]

class Sink:
    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content)
        part = msg.get_body(("plain",)) if hasattr(msg, "get_body") else msg
        body = (part or msg).get_payload(decode=True) or b""
        with open(out, "a") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "subject": str(msg.get("Subject", "")),
                "body": body.decode("utf-8", "replace"),
                "data": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 OK"

c = Controller(Sink(), hostname="127.0.0.1", port=port)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct SmtpSink {
    pub port: u16,
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("sink.py");
        std::fs::write(&script, SINK).unwrap();
        let out = dir.path().join("mail.jsonl");
        let mut child = Command::new(super::python::python())
            .arg(&script)
            .arg(port.to_string())
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self {
            port,
            child,
            out,
            _dir: dir,
        }
    }

    /// `sikker serve` flags that deliver mail to this sink.
    pub fn flags(&self) -> Vec<String> {
        [
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &self.port.to_string(),
            "--smtp-tls",
            "plain",
            "--smtp-from",
            "sikker <noreply@sikker.test>",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        super::eventually(&format!("{n} e-mails"), || async {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .await
    }

    /// The last message to `to` whose subject contains `subject`, waiting
    /// for it to arrive.
    pub async fn last_to(&self, to: &str, subject: &str) -> Value {
        super::eventually(&format!("an e-mail to {to} about {subject}"), || async {
            self.messages().into_iter().rev().find(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == to))
                    && m["subject"].as_str().is_some_and(|s| s.contains(subject))
            })
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits briefly and returns whatever arrived (for "nothing was sent" checks).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}
