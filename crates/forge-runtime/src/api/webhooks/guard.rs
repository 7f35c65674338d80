//! Refusing webhook deliveries to addresses inside the network (SSRF).
//!
//! A client chooses its endpoints' URLs; without a guard, one could make Forge's nodes call
//! `http://169.254.169.254/` (a cloud's metadata service) or `http://localhost:5432/`. The
//! check is made on the addresses a name **resolves to**, inside the HTTP client's resolver,
//! so the address checked is the address connected to (a name that resolves to a public
//! address when the endpoint is registered and to a private one at delivery is still
//! refused). URLs with a literal address are checked before the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use forge_core::config::IpRange;

/// Which addresses deliveries may reach.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    /// Private, loopback and link-local addresses are allowed too.
    pub allow_private: bool,
    /// Ranges allowed even when private.
    pub allowed: Vec<IpRange>,
}

impl AddressPolicy {
    /// Whether a delivery may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || self.allowed.iter().any(|r| r.contains(ip)) || is_public(ip)
    }
}

/// Whether `ip` is a global unicast address: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or reserved, nor an IPv6 form of one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return is_public(IpAddr::from([a, b, c, d]));
            }
            if segments[0] == 0x2002 {
                let [a, b] = segments[1].to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                return is_public(IpAddr::from([a, b, c, d]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00
                || (segments[0] & 0xffc0) == 0xfe80
                || segments[0] == 0x2001 && segments[1] == 0xdb8
                || segments[..6] == [0, 0, 0, 0, 0, 0])
        }
    }
}

/// The HTTP client's resolver: the system's, with every address the policy refuses removed; a
/// name left with none fails to resolve, with a message saying why.
#[derive(Clone, Debug)]
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved.iter().copied().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                let refused = Refused(format!(
                    "{host} resolves only to addresses this client may not reach ({})",
                    resolved.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
                ));
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A request refused by the address policy.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub(super) String);

/// An HTTP client for URLs someone else chose (webhook endpoints; a job that fetches a URL a
/// client gave): it connects only to addresses its [`AddressPolicy`] allows, checked on the
/// address a name resolves to and on a literal address before the request, follows no
/// redirect (one would leave the checked address), and gives up after its timeout.
#[derive(Clone, Debug)]
pub struct GuardedClient {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl GuardedClient {
    /// A client under `policy`, with `timeout` for connecting and for the whole request.
    pub fn new(policy: AddressPolicy, timeout: std::time::Duration, user_agent: &str) -> Self {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }))
            .user_agent(user_agent)
            .build()
            .unwrap_or_default();
        Self { http, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// A `method` request to `url`: refused when the URL names a literal address the policy
    /// refuses (a name is checked when it is resolved, at send).
    pub fn request(&self, method: reqwest::Method, url: reqwest::Url) -> Result<reqwest::RequestBuilder, Refused> {
        let literal =
            url.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok());
        if let Some(ip) = literal
            && !self.policy.allows(ip)
        {
            return Err(Refused(format!("{ip} is an address this client may not reach")));
        }
        Ok(self.http.request(method, url))
    }

    /// Why a request failed, when the policy refused the address its name resolved to.
    pub fn refusal(e: &reqwest::Error) -> Option<&Refused> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<Refused>() {
                return Some(refused);
            }
            source = s.source();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(!is_public(ip.parse().expect("ip")), "{ip} counted as public");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().expect("ip")), "{ip} counted as internal");
        }
    }

    #[test]
    fn the_policy_allows_what_it_is_told() {
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!(!AddressPolicy::default().allows(loopback));
        assert!(AddressPolicy { allow_private: true, allowed: vec![] }.allows(loopback));
        let range: IpRange = "127.0.0.0/8".parse().expect("range");
        assert!(AddressPolicy { allow_private: false, allowed: vec![range] }.allows(loopback));
    }
}
