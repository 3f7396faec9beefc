//! The per-client rate limit on submissions (`RATE_LIMIT_PER_CLIENT`), off
//! unless set.
//!
//! A client is its address: the TCP peer, or, when the peer is one of
//! `TRUSTED_PROXIES`, the address its `X-Forwarded-For` names (the rightmost
//! hop that is not itself a trusted proxy, since every proxy appends the
//! address it received from and only the trusted ones can be believed). IPv6
//! clients are counted per /64, the block one subscriber usually holds, so a
//! client cannot slip the limit by cycling addresses within it. The limit is
//! per main-service instance; behind a balancer spreading one client over `n`
//! instances the client gets up to `n` times the rate.
//!
//! The limiter is `governor`'s keyed GCRA: a burst of the full count, then one
//! request per `period / count`. Clients idle long enough to be back at a full
//! burst are forgotten every [`FORGET_INTERVAL`], so its memory follows the
//! clients seen recently, not all clients ever seen.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::HeaderMap;
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

/// How often clients back at a full burst are forgotten.
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

/// `X-Forwarded-For` hops looked at, from the right; a longer chain is cut, so
/// a client cannot make each request cost more by sending a long header.
const MAX_HOPS: usize = 16;

/// The TCP peer of the connection a request came on, put in its extensions
/// by the server so the limit can tell clients apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// `RATE_LIMIT_PER_CLIENT`: `count` requests per `period`, bursts of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per period, and the burst.
    pub count: NonZeroU32,
    /// The period: a second, a minute or an hour.
    pub period: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `20/s`, `600/m` or `1000/h`.
    fn from_str(text: &str) -> Result<RateLimit, String> {
        let expected = || "expected <count>/s, <count>/m or <count>/h, e.g. 20/s".to_owned();
        let (count, unit) = text.split_once('/').ok_or_else(expected)?;
        let count: u32 = count.trim().parse().map_err(|_| expected())?;
        let count =
            NonZeroU32::new(count).ok_or_else(|| "the count must be at least 1".to_owned())?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(expected()),
        };
        Ok(RateLimit { count, period })
    }
}

/// `TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
pub fn parse_trusted_proxies(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("{part} is not an address or CIDR (e.g. 10.0.0.0/8)"))
        })
        .collect()
}

/// The client a request counts against.
pub fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        // A hop that is not an address ends the chain we can believe: the
        // proxy that added it is the last one known.
        let Some(ip) = hop_address(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` element: an address, possibly with a port.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
fn key_of(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// The limiter of this instance.
pub struct ClientLimiter {
    /// One GCRA state per client key.
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Where "now" comes from, for the wait after a refusal.
    clock: DefaultClock,
}

impl ClientLimiter {
    /// A limiter enforcing `limit` per client.
    pub fn new(limit: RateLimit) -> Arc<ClientLimiter> {
        let per_request = limit.period / limit.count.get();
        let quota = Quota::with_period(per_request)
            .expect("a period of at least a second over at most u32::MAX requests is not zero")
            .allow_burst(limit.count);
        Arc::new(ClientLimiter {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one request from `client`'s allowance. `Err` carries the whole
    /// seconds to wait before the next one would be allowed (at least 1).
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        self.limiter
            .check_key(&key_of(client))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
            })
    }

    /// Forgets clients back at a full burst every [`FORGET_INTERVAL`] until `shutdown`.
    pub async fn forget_idle(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(FORGET_INTERVAL) => {}
            }
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn limits_are_parsed() {
        let limit: RateLimit = "20/s".parse().unwrap();
        assert_eq!(limit.count.get(), 20);
        assert_eq!(limit.period, Duration::from_secs(1));
        let limit: RateLimit = " 600 / m ".parse().unwrap();
        assert_eq!(
            (limit.count.get(), limit.period),
            (600, Duration::from_secs(60))
        );
        for bad in ["20", "0/s", "x/s", "20/d", "-1/s", "/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_are_parsed() {
        let nets = parse_trusted_proxies("10.0.0.0/8, 192.168.1.7 ,::1,fd00::/8").unwrap();
        assert_eq!(nets.len(), 4);
        assert!(nets[1].contains(&"192.168.1.7".parse::<IpAddr>().unwrap()));
        assert!(parse_trusted_proxies("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxies("proxy.local").is_err());
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = parse_trusted_proxies("10.0.0.0/8").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let headers = xff(&["203.0.113.9, 10.1.1.1"]);
        assert_eq!(
            client_of(ip("10.2.2.2"), &headers, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_of(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        // A client cannot pose as another by prepending addresses.
        let spoofed = xff(&["1.2.3.4", "203.0.113.9"]);
        assert_eq!(
            client_of(ip("10.2.2.2"), &spoofed, &trusted),
            ip("203.0.113.9")
        );
        // Garbage stops the walk at the last proxy known.
        let garbage = xff(&["203.0.113.9, junk, 10.1.1.1"]);
        assert_eq!(
            client_of(ip("10.2.2.2"), &garbage, &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_of(ip("10.2.2.2"), &xff(&[]), &trusted),
            ip("10.2.2.2")
        );
        let with_port = xff(&["[2001:db8::1]:4711"]);
        assert_eq!(
            client_of(ip("10.2.2.2"), &with_port, &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn a_client_over_its_burst_waits_and_others_do_not() {
        let limiter = ClientLimiter::new("3/m".parse().unwrap());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(a), Ok(()));
        }
        let wait = limiter.check(a).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(limiter.check(b), Ok(()));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = ClientLimiter::new("1/m".parse().unwrap());
        assert_eq!(limiter.check("2001:db8:1:2::1".parse().unwrap()), Ok(()));
        assert!(
            limiter
                .check("2001:db8:1:2::ffff".parse().unwrap())
                .is_err()
        );
        assert_eq!(limiter.check("2001:db8:1:3::1".parse().unwrap()), Ok(()));
    }
}
