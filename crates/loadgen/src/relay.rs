//! A byte relay: the cheapest possible process between a client and a server. It accepts
//! TCP connections and copies bytes both ways to one upstream address without looking at
//! them. Measured as its own path it shows what *any* extra process in the path costs on
//! this machine (two more wake-ups and two more socket hops per call): the floor under
//! any gateway's added latency.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::net::{TcpListener, TcpStream};

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// Where to relay to: an `http://host:port/...` URL or `host:port` (loopback only).
    #[arg(long)]
    pub to: String,
}

/// Parses the upstream address out of a URL or `host:port`.
fn upstream_address(to: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = to.strip_prefix("http://").unwrap_or(to);
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let address: SocketAddr = authority
        .parse()
        .with_context(|| format!("`{to}`: expected host:port with a numeric host"))?;
    if !address.ip().is_loopback() {
        bail!("`{to}`: only loopback addresses are relayed");
    }
    Ok((address, path.to_owned()))
}

/// Listens on an ephemeral loopback port, announces `relaying http://ADDR/PATH` on stdout
/// and relays until killed.
pub async fn main(args: RelayArgs) -> anyhow::Result<bool> {
    let (upstream, path) = upstream_address(&args.to)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    println!("relaying http://{local}{path} to {upstream}");
    loop {
        let (mut inbound, _) = listener.accept().await?;
        // One task per connection, owned by the connection: it ends when either side closes.
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_urls_and_refuses_remote_hosts() {
        let (address, path) = upstream_address("http://127.0.0.1:8931/mcp").unwrap();
        assert_eq!(address.port(), 8931);
        assert_eq!(path, "/mcp");
        assert_eq!(upstream_address("127.0.0.1:1").unwrap().1, "/");
        assert!(upstream_address("http://10.0.0.1:80/mcp").is_err());
        assert!(upstream_address("http://example.com/mcp").is_err());
    }
}
