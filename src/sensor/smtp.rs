//! The SMTP honeypot: an open relay in appearance. HELO names, senders and
//! recipients become e-mail evidence, AUTH attempts become credential
//! evidence; message bodies are read and thrown away.

use base64::Engine as _;
use tokio::net::TcpStream;

use super::event::Recorder;
use super::io::Conn;

const MAX_ERRORS: u32 = 10;
const MAX_DATA_LINES: usize = 100_000;

/// The address inside `FROM:<a@b> SIZE=1` or `TO: a@b`.
fn address(arg: &str) -> Option<&str> {
    let rest = arg.split_once(':')?.1.trim();
    let addr = match rest.strip_prefix('<') {
        Some(r) => r.split('>').next()?,
        None => rest.split_whitespace().next()?,
    };
    (!addr.is_empty()).then_some(addr)
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_default()
}

/// `\0user\0password` (AUTH PLAIN) as (user, password).
fn plain(decoded: &[u8]) -> (String, Vec<u8>) {
    let mut it = decoded.splitn(3, |&b| b == 0);
    let authz = it.next().unwrap_or_default();
    let user = it.next().unwrap_or_default();
    let pass = it.next().unwrap_or_default();
    let user = if user.is_empty() { authz } else { user };
    (String::from_utf8_lossy(user).into_owned(), pass.to_vec())
}

pub(crate) async fn serve(stream: TcpStream, mut rec: Recorder) {
    rec.connect().await;
    let mut conn = Conn::new(stream, rec.limits());
    if !conn
        .send(b"220 mail.web01.lan ESMTP Postfix (Ubuntu)\r\n")
        .await
    {
        return;
    }
    let mut errors = 0;
    while !rec.exhausted() && errors < MAX_ERRORS {
        let Some(line) = conn.line().await else {
            return;
        };
        let (verb, arg) = line
            .trim()
            .split_once(' ')
            .map_or((line.trim(), ""), |(v, a)| (v, a.trim()));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "HELO" => {
                rec.client_id = Some(arg.to_owned());
                b"250 mail.web01.lan\r\n"
            }
            "EHLO" => {
                rec.client_id = Some(arg.to_owned());
                b"250-mail.web01.lan\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
            }
            "MAIL" | "RCPT" => {
                if let Some(a) = address(arg) {
                    rec.mail(a).await;
                }
                b"250 2.1.0 Ok\r\n"
            }
            "AUTH" => {
                auth(&mut conn, &mut rec, arg).await;
                b"535 5.7.8 Error: authentication failed\r\n"
            }
            "DATA" => {
                if !conn.send(b"354 End data with <CR><LF>.<CR><LF>\r\n").await {
                    return;
                }
                let mut n = 0;
                loop {
                    let Some(l) = conn.raw_line().await else {
                        return;
                    };
                    n += 1;
                    if l == b"." || n > MAX_DATA_LINES {
                        break;
                    }
                }
                b"250 2.0.0 Ok: queued as 4F2A11C0D3\r\n"
            }
            "RSET" | "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                let _ = conn.send(b"221 2.0.0 Bye\r\n").await;
                return;
            }
            _ => {
                errors += 1;
                b"502 5.5.2 Error: command not recognized\r\n"
            }
        };
        if !conn.send(reply).await {
            return;
        }
    }
}

async fn auth(conn: &mut Conn, rec: &mut Recorder, arg: &str) {
    let mut words = arg.split_whitespace();
    let mech = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next();
    match mech.as_str() {
        "PLAIN" => {
            let data = if let Some(i) = initial {
                i.to_owned()
            } else {
                if !conn.send(b"334 \r\n").await {
                    return;
                }
                let Some(l) = conn.line().await else { return };
                l
            };
            let (user, pass) = plain(&b64(&data));
            rec.auth(&user, &pass).await;
        }
        "LOGIN" => {
            let user = if let Some(i) = initial {
                b64(i)
            } else {
                if !conn.send(b"334 VXNlcm5hbWU6\r\n").await {
                    return;
                }
                let Some(l) = conn.line().await else { return };
                b64(&l)
            };
            if !conn.send(b"334 UGFzc3dvcmQ6\r\n").await {
                return;
            }
            let Some(l) = conn.line().await else { return };
            let user = String::from_utf8_lossy(&user).into_owned();
            rec.auth(&user, &b64(&l)).await;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_plain_auth() {
        assert_eq!(address("FROM:<a@b.example> SIZE=10"), Some("a@b.example"));
        assert_eq!(address("TO: c@d.example"), Some("c@d.example"));
        assert_eq!(address("FROM:<>"), None);
        assert_eq!(address("nonsense"), None);
        assert_eq!(plain(b"\0joe\0pw"), ("joe".into(), b"pw".to_vec()));
        assert_eq!(plain(b"garbage"), ("garbage".into(), vec![]));
    }
}
