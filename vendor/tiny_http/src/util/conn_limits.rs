//! mcp-gateway patch: counts the open connections, in all and per client address, and refuses
//! those over the limits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The open connections of one server.
#[derive(Debug)]
pub struct ConnectionLimits {
    /// Most connections at once; 0: no limit.
    max_total: usize,
    /// Most connections at once per address key; 0: no limit.
    max_per_address: usize,
    counts: Mutex<Counts>,
}

/// One counted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    key: Option<IpAddr>,
}

/// The address under which a client is counted: IPv4 addresses (also when mapped into IPv6) as
/// they are, IPv6 addresses by their /64 (one subscriber usually has a whole /64).
pub fn address_key(addr: &SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(a) => IpAddr::V4(*a.ip()),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.ip().segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `peer` (None: not a TCP peer, counted only in the total),
    /// or returns None if it is over a limit.
    pub fn acquire(self: &Arc<Self>, peer: Option<&SocketAddr>) -> Option<ConnectionSlot> {
        let key = if self.max_per_address > 0 {
            peer.map(address_key)
        } else {
            None
        };
        let mut counts = self.lock();
        if self.max_total > 0 && counts.total >= self.max_total {
            return None;
        }
        if let Some(key) = key {
            let n = counts.per_address.entry(key).or_insert(0);
            if *n >= self.max_per_address {
                return None;
            }
            *n += 1;
        }
        counts.total += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = self.key {
            if let Some(n) = counts.per_address.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.per_address.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{address_key, ConnectionLimits};
    use std::net::SocketAddr;

    #[test]
    fn keys() {
        let key = |s: &str| address_key(&s.parse::<SocketAddr>().unwrap()).to_string();
        assert_eq!(key("192.0.2.1:80"), "192.0.2.1");
        assert_eq!(key("[::ffff:192.0.2.1]:80"), "192.0.2.1");
        assert_eq!(key("[2001:db8:1:2:3:4:5:6]:80"), "2001:db8:1:2::");
    }

    #[test]
    fn limits() {
        let limits = ConnectionLimits::new(3, 2);
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1".parse().unwrap();
        let a1 = limits.acquire(Some(&a)).unwrap();
        let _a2 = limits.acquire(Some(&a)).unwrap();
        assert!(limits.acquire(Some(&a)).is_none());
        let _b1 = limits.acquire(Some(&b)).unwrap();
        assert!(limits.acquire(Some(&b)).is_none());
        drop(a1);
        assert_eq!(limits.open(), 2);
        assert!(limits.acquire(Some(&a)).is_some());
    }
}
