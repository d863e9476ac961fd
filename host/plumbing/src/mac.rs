//! Ethernet MAC addresses, written as `aa:bb:cc:dd:ee:ff` in text and JSON.

use std::{fmt, io, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random unicast, locally administered address (RFC 7042 section 2.1: bit 1 of the
    /// first octet set, bit 0 clear), so it cannot clash with a vendor-assigned one.
    pub fn random_local() -> io::Result<Self> {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes)?;
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        Ok(Self(bytes))
    }

    /// Whether the locally administered bit is set.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not six `:`-separated hex octets.
#[derive(Debug, thiserror::Error)]
#[error("invalid MAC address {0:?} (expected aa:bb:cc:dd:ee:ff)")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(|| ParseMacError(s.to_owned()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(ParseMacError(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.to_owned()));
        }
        Ok(Self(bytes))
    }
}

impl TryFrom<&[u8]> for MacAddr {
    type Error = ParseMacError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 6]>::try_from(bytes)
            .map(Self)
            .map_err(|_| ParseMacError(format!("{bytes:02x?}")))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_rejects() {
        let mac: MacAddr = "0a:1B:02:ff:00:9".parse().unwrap();
        assert_eq!(mac.0, [0x0a, 0x1b, 0x02, 0xff, 0x00, 0x09]);
        assert_eq!(mac.to_string(), "0a:1b:02:ff:00:09");
        for bad in [
            "",
            "0a:1b:02:ff:00",
            "0a:1b:02:ff:00:09:10",
            "0a::02:ff:00:09",
            "zz:1b:02:ff:00:09",
            "100:1b:02:ff:00:09",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"0a:1b:02:ff:00:09\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
    }

    #[test]
    fn random_local_is_unicast_and_local() {
        for _ in 0..64 {
            let mac = MacAddr::random_local().unwrap();
            assert!(mac.is_locally_administered());
            assert_eq!(mac.0[0] & 1, 0, "{mac} is multicast");
        }
    }
}
