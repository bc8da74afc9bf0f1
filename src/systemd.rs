//! systemd `Type=notify` readiness: `READY=1` / `STOPPING=1` datagrams to
//! `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`).

use std::os::unix::net::UnixDatagram;

pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let sent = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        if let Some(name) = target.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &target)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
