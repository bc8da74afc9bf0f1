//! The Telnet honeypot: a login prompt whose first attempt fails and whose
//! later attempts "succeed" into the fake shell, so bots reveal commands.

use tokio::net::TcpStream;

use super::event::Recorder;
use super::io::Conn;
use super::shell;

const MAX_ATTEMPTS: u32 = 5;

/// Removes Telnet IAC negotiation sequences from a line.
pub(crate) fn strip_iac(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0xff {
            match b.get(i + 1) {
                Some(0xfb..=0xfe) => i += 3,
                Some(0xfa) => {
                    // Sub-negotiation up to IAC SE.
                    let end = b[i..].windows(2).position(|w| w == [0xff, 0xf0]);
                    i = end.map_or(b.len(), |e| i + e + 2);
                }
                Some(0xff) => {
                    out.push(0xff);
                    i += 2;
                }
                _ => i += 2,
            }
        } else {
            if b[i] != 0 {
                out.push(b[i]);
            }
            i += 1;
        }
    }
    out
}

async fn text(conn: &mut Conn) -> Option<String> {
    let b = conn.raw_line().await?;
    Some(String::from_utf8_lossy(&strip_iac(&b)).trim().to_owned())
}

pub(crate) async fn serve(stream: TcpStream, mut rec: Recorder) {
    rec.connect().await;
    let mut conn = Conn::new(stream, rec.limits());
    if !conn.send(b"\r\nUbuntu 20.04.6 LTS\r\nweb01 login: ").await {
        return;
    }
    let mut user = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(u) = text(&mut conn).await else {
            return;
        };
        if !conn.send(b"Password: ").await {
            return;
        }
        let Some(p) = text(&mut conn).await else {
            return;
        };
        rec.auth(&u, p.as_bytes()).await;
        if attempt >= 2 && !u.is_empty() {
            user = u;
            break;
        }
        if attempt == MAX_ATTEMPTS || !conn.send(b"\r\nLogin incorrect\r\nweb01 login: ").await {
            return;
        }
    }
    if !conn.send(b"\r\nWelcome to Ubuntu 20.04.6 LTS\r\n$ ").await {
        return;
    }
    while !rec.exhausted() {
        let Some(cmd) = text(&mut conn).await else {
            return;
        };
        rec.command(&cmd).await;
        let (mut out, quit) = shell::respond(&cmd, &user);
        if quit {
            return;
        }
        out.push_str("$ ");
        if !conn.send(out.as_bytes()).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iac_is_removed() {
        assert_eq!(
            strip_iac(b"\xff\xfb\x01root\xff\xfa\x18\x00xterm\xff\xf0"),
            b"root"
        );
        assert_eq!(strip_iac(b"a\xff\xffb\xff"), b"a\xffb");
    }
}
