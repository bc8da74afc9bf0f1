//! The generic TCP listener: records the connection (port-scan evidence),
//! says nothing, and reads what the client sends until it goes quiet.

use tokio::net::TcpStream;

use super::event::Recorder;
use super::io::Conn;

pub(crate) async fn serve(stream: TcpStream, mut rec: Recorder) {
    rec.connect().await;
    let mut conn = Conn::new(stream, rec.limits());
    // Payloads are not recorded (the event schema has no place for raw
    // bytes); reading them only keeps the handshake looking alive.
    while conn.raw_line().await.is_some() {}
}
