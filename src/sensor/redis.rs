//! The Redis honeypot: speaks RESP (and inline commands), answers like an
//! unprotected server, records every command; AUTH becomes credential
//! evidence with the password hashed, never recorded as a command.

use tokio::net::TcpStream;

use super::event::Recorder;
use super::io::{Conn, read_exact_capped};

const MAX_ARGS: usize = 64;
const MAX_ARG: usize = 512 * 1024;
const KEEP_ARG: usize = 1024;
const MAX_ERRORS: u32 = 10;

/// One command's arguments, or `None` when the client is gone.
async fn next_command(conn: &mut Conn) -> Option<Result<Vec<Vec<u8>>, ()>> {
    let line = conn.raw_line().await?;
    let Some(count) = line.strip_prefix(b"*") else {
        // Inline command.
        let words = line
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
            .take(MAX_ARGS)
            .map(<[u8]>::to_vec)
            .collect();
        return Some(Ok(words));
    };
    let Some(n) = std::str::from_utf8(count)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    else {
        return Some(Err(()));
    };
    if n > MAX_ARGS {
        return Some(Err(()));
    }
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let head = conn.raw_line().await?;
        let Some(len) = head
            .strip_prefix(b"$")
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|l| *l <= MAX_ARG)
        else {
            return Some(Err(()));
        };
        let idle = conn.idle;
        let data = read_exact_capped(&mut conn.r, len + 2, KEEP_ARG, idle).await?;
        let keep = data.len().min(len);
        args.push(data[..keep].to_vec());
    }
    Some(Ok(args))
}

const INFO: &str = "# Server\r\nredis_version:6.0.16\r\nredis_mode:standalone\r\nos:Linux 5.15.0-91-generic x86_64\r\narch_bits:64\r\n";

fn reply(name: &str) -> std::borrow::Cow<'static, [u8]> {
    if name == "INFO" {
        return format!("${}\r\n{INFO}\r\n", INFO.len()).into_bytes().into();
    }
    let fixed: &'static [u8] = match name {
        "PING" => b"+PONG\r\n",
        "AUTH" => b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        "CONFIG" | "COMMAND" | "KEYS" => b"*0\r\n",
        "GET" => b"$-1\r\n",
        _ => b"+OK\r\n",
    };
    fixed.into()
}

pub(crate) async fn serve(stream: TcpStream, mut rec: Recorder) {
    rec.connect().await;
    let mut conn = Conn::new(stream, rec.limits());
    let mut errors = 0;
    while !rec.exhausted() && errors < MAX_ERRORS {
        let Some(cmd) = next_command(&mut conn).await else {
            return;
        };
        let Ok(args) = cmd else {
            errors += 1;
            if !conn.send(b"-ERR Protocol error\r\n").await {
                return;
            }
            continue;
        };
        let Some(first) = args.first() else { continue };
        let name = String::from_utf8_lossy(first).to_ascii_uppercase();
        if name == "AUTH" {
            let (user, pass) = match args.as_slice() {
                [_, u, p, ..] => (String::from_utf8_lossy(u).into_owned(), p.clone()),
                [_, p] => ("default".to_owned(), p.clone()),
                _ => ("default".to_owned(), Vec::new()),
            };
            rec.auth(&user, &pass).await;
        } else {
            let text: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            rec.command(&text.join(" ")).await;
        }
        if name == "QUIT" {
            let _ = conn.send(b"+OK\r\n").await;
            return;
        }
        if !conn.send(&reply(&name)).await {
            return;
        }
    }
}
