//! Whether a request comes from this machine: what `[dashboard] open_on_loopback` trusts in
//! development mode, for the dashboard's API and its live pages over `/ws`.

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, Uri};

use super::Connection;

/// Whether `request` comes from this machine and was meant for it: the peer and the address
/// it reached are loopback, its `Host` (and an absolute URI's authority) names a loopback host,
/// and no proxy header (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) says it was relayed.
pub(crate) fn is_local_request(request: &axum::extract::Request) -> bool {
    is_local(request.extensions(), request.headers(), request.uri())
}

/// [`is_local_request`] from a request's parts.
pub(crate) fn is_local(extensions: &Extensions, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(ConnectInfo(connection)) = extensions.get::<ConnectInfo<Connection>>() else {
        return false;
    };
    let loopback = |ip: std::net::IpAddr| ip.to_canonical().is_loopback();
    if !loopback(connection.peer.ip()) || !loopback(connection.local.ip()) {
        return false;
    }
    let relayed = headers.keys().any(|name| {
        let name = name.as_str();
        name == "forwarded" || name == "x-real-ip" || name.starts_with("x-forwarded-")
    });
    if relayed {
        return false;
    }
    let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
    host.is_some_and(is_loopback_host) && uri.authority().is_none_or(|a| is_loopback_host(a.as_str()))
}

/// Whether a `Host` value (`localhost:8080`, `127.0.0.1`, `[::1]:80`) names only this machine.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(name, _)| name),
        None => host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:80", "[::1]", "[::1]:8080"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["example.com", "localhost.evil.com", "10.0.0.1:80", "[::2]", "", "127.0.0.1.nip.io"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
