//! The admin-managed whitelist: IPs and networks never listed.

use ipnet::IpNet;

use super::{Error, Result, Services};
use crate::index::ranges::bounds;
use crate::store::{self, whitelist::Entry};

fn key(net: &IpNet) -> (u128, u8) {
    let extra = if matches!(net, IpNet::V4(_)) { 96 } else { 0 };
    (bounds(net).0, net.prefix_len() + extra)
}

pub fn parse_net(s: &str) -> Result<IpNet> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| Error::invalid("net", format!("'{t}' is not an IP address or CIDR")))
}

impl Services {
    pub async fn whitelist_add(&self, net: &str, reason: &str) -> Result<Entry> {
        let net = parse_net(net)?;
        let reason = reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(Error::invalid("reason", "must be 1 to 200 characters"));
        }
        let e = Entry {
            net: net.to_string(),
            reason,
            added_ms: self.clock.now().0,
        };
        let stored = e.clone();
        self.store
            .write(move |txn| store::whitelist::put(txn, key(&net), &stored))
            .await?;
        self.reload_whitelist().await?;
        Ok(e)
    }

    pub async fn whitelist_remove(&self, net: &str) -> Result<()> {
        let net = parse_net(net)?;
        let removed = self
            .store
            .write(move |txn| store::whitelist::remove(txn, key(&net)))
            .await?;
        if !removed {
            return Err(Error::not_found(format!("whitelist entry {net}")));
        }
        self.reload_whitelist().await
    }

    pub async fn whitelist_list(&self) -> Result<Vec<Entry>> {
        Ok(self.store.read(store::whitelist::all).await?)
    }

    async fn reload_whitelist(&self) -> Result<()> {
        let all = self.store.read(store::whitelist::all).await?;
        self.threat
            .set_whitelist(super::threat::whitelist_set(&all))
    }
}
