//! Value types used in `forge.toml`: durations (`"5s"`, `"250ms"`, `"7d"`), byte sizes
//! (`"2MiB"`, `1048576`) and TCP ports. Each one refuses impossible values while it is being
//! deserialized, so the error carries the key and line it came from.

use std::fmt;
use std::num::NonZeroU16;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A positive duration written the human way: `"30s"`, `"250ms"`, `"5m"`, `"7d"`.
///
/// Zero is refused: every duration in `forge.toml` is an interval, timeout or retention that
/// would make no sense at zero.
///
/// ```
/// use forge_core::config::Duration;
///
/// let d: Duration = "1m 30s".parse().unwrap();
/// assert_eq!(d.as_std().as_secs(), 90);
/// assert!("0s".parse::<Duration>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds. Panics at compile time of a `const` if `secs` is zero.
    pub const fn from_secs(secs: u64) -> Self {
        assert!(secs > 0, "config durations are positive");
        Self(std::time::Duration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        assert!(millis > 0, "config durations are positive");
        Self(std::time::Duration::from_millis(millis))
    }

    /// The standard library duration.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = humantime::parse_duration(s.trim())
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like \"5s\", \"250ms\" or \"7d\""))?;
        if parsed.is_zero() {
            return Err(format!("duration {s:?} must be greater than zero"));
        }
        Ok(Self(parsed))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5s\", \"250ms\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A size in bytes: an integer (`1048576`) or a string with a unit (`"512KiB"`, `"2MiB"`,
/// `"1MB"`). Zero is refused.
///
/// ```
/// use forge_core::config::ByteSize;
///
/// assert_eq!("2MiB".parse::<ByteSize>().unwrap().bytes(), 2 * 1024 * 1024);
/// assert_eq!("10kb".parse::<ByteSize>().unwrap().bytes(), 10_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    /// `n` bytes; panics if `n` is zero.
    pub const fn new(n: u64) -> Self {
        assert!(n > 0, "byte sizes are positive");
        Self(n)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 =
            digits.parse().map_err(|_| format!("invalid size {s:?}; write it like 1048576, \"512KiB\" or \"2MiB\""))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            other => {
                return Err(format!("unknown size unit {other:?} in {s:?}; use B, KB, KiB, MB, MiB, GB or GiB"));
            }
        };
        let bytes = n.checked_mul(factor).ok_or_else(|| format!("size {s:?} is too large"))?;
        if bytes == 0 {
            return Err(format!("size {s:?} must be greater than zero"));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes, such as 1048576 or \"2MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                match u64::try_from(v) {
                    Ok(n) if n > 0 => Ok(ByteSize(n)),
                    _ => Err(E::custom(format!("size {v} must be greater than zero"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                if v == 0 {
                    return Err(E::custom("size 0 must be greater than zero"));
                }
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

/// A TCP port from 1 to 65535.
///
/// ```
/// use forge_core::config::Port;
///
/// assert_eq!(Port::new(8080).unwrap().get(), 8080);
/// assert!(Port::new(0).is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(NonZeroU16);

impl Port {
    /// `Some(port)` unless `port` is zero.
    pub const fn new(port: u16) -> Option<Self> {
        match NonZeroU16::new(port) {
            Some(p) => Some(Self(p)),
            None => None,
        }
    }

    /// The port number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

impl FromStr for Port {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: u16 = s.trim().parse().map_err(|_| format!("invalid port {s:?}; use 1 to 65535"))?;
        Port::new(n).ok_or_else(|| "port 0 is not allowed; use 1 to 65535".to_owned())
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(deserializer)?;
        u16::try_from(n)
            .ok()
            .and_then(Port::new)
            .ok_or_else(|| de::Error::custom(format!("port {n} is not allowed; use 1 to 65535")))
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.get())
    }
}

/// An IP address or a CIDR range of them (`10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`).
///
/// ```
/// use forge_core::config::IpRange;
///
/// let range: IpRange = "10.1.0.0/16".parse().unwrap();
/// assert!(range.contains("10.1.200.3".parse().unwrap()));
/// assert!(!range.contains("10.2.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<IpRange>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` is in the range (an IPv4 address written as IPv6, `::ffff:a.b.c.d`, is read
    /// as the IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid address {s:?}: use an IP address or a range such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid prefix length in {s:?}: use 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(de::Error::custom)
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse_zero() {
        assert_eq!("250ms".parse::<Duration>().unwrap().as_std().as_millis(), 250);
        assert_eq!("7d".parse::<Duration>().unwrap().as_std().as_secs(), 7 * 86_400);
        assert!("0ms".parse::<Duration>().is_err());
        assert!("soon".parse::<Duration>().is_err());
    }

    #[test]
    fn sizes_parse_units_and_refuse_zero() {
        assert_eq!("1MiB".parse::<ByteSize>().unwrap().bytes(), 1 << 20);
        assert_eq!("512".parse::<ByteSize>().unwrap().bytes(), 512);
        assert!("0".parse::<ByteSize>().is_err());
        assert!("3 parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999999GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn ports_refuse_zero() {
        assert!("0".parse::<Port>().is_err());
        assert!("70000".parse::<Port>().is_err());
        assert_eq!("443".parse::<Port>().unwrap().get(), 443);
    }
}
