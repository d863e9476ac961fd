//! DHCP messages (RFC 2131 section 2, options per RFC 2132): a parser that accepts any
//! byte string without panicking, and an encoder.

use std::net::Ipv4Addr;

use plexus_plumbing::MacAddr;

/// The server's UDP port (bootps).
pub const SERVER_PORT: u16 = 67;
/// The client's UDP port (bootpc).
pub const CLIENT_PORT: u16 = 68;

/// `op` of a client's message.
pub const BOOTREQUEST: u8 = 1;
/// `op` of a server's message.
pub const BOOTREPLY: u8 = 2;
/// The `flags` bit asking for broadcast replies.
pub const BROADCAST_FLAG: u16 = 0x8000;

/// The fixed part before the options: op .. file (236 bytes), then the magic cookie.
const FIXED_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Replies are padded to the size of a BOOTP message, which some clients require.
const MIN_MESSAGE_LEN: usize = 300;

/// Option codes this crate reads or writes.
pub mod code {
    /// Padding.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// DNS servers.
    pub const DNS_SERVERS: u8 = 6;
    /// Host name.
    pub const HOSTNAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU.
    pub const MTU: u8 = 26;
    /// Requested IP address.
    pub const REQUESTED_ADDRESS: u8 = 50;
    /// Lease time.
    pub const LEASE_TIME: u8 = 51;
    /// Option overload (options continue in `file` and/or `sname`).
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Domain search list (RFC 3397).
    pub const DOMAIN_SEARCH: u8 = 119;
    /// Classless static routes (RFC 3442).
    pub const CLASSLESS_ROUTES: u8 = 121;
    /// End of options.
    pub const END: u8 = 255;
}

/// The DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A client looks for servers.
    Discover = 1,
    /// A server offers a lease.
    Offer = 2,
    /// A client asks for (or renews) a lease.
    Request = 3,
    /// A client found the address in use.
    Decline = 4,
    /// A server grants a lease.
    Ack = 5,
    /// A server refuses a request.
    Nak = 6,
    /// A client gives its lease back.
    Release = 7,
    /// A client asks for configuration only.
    Inform = 8,
}

impl MessageType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// Why bytes are not a DHCP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the fixed header plus the magic cookie.
    #[error("message too short ({0} bytes)")]
    TooShort(usize),
    /// The magic cookie is missing: plain BOOTP, or not DHCP at all.
    #[error("no DHCP magic cookie")]
    NoMagicCookie,
    /// An option's length runs past the end of its field.
    #[error("option {0} truncated")]
    TruncatedOption(u8),
}

/// A DHCP message. Options are kept in order of first appearance, each code once, with
/// the data of repeated instances concatenated (RFC 3396).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// [`BOOTREQUEST`] or [`BOOTREPLY`].
    pub op: u8,
    /// Hardware type (1: Ethernet).
    pub htype: u8,
    /// Hardware address length (6 for Ethernet).
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id, chosen by the client.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags ([`BROADCAST_FLAG`]).
    pub flags: u16,
    /// The client's current address (renewing, rebinding).
    pub ciaddr: Ipv4Addr,
    /// The address the server gives ("your" address).
    pub yiaddr: Ipv4Addr,
    /// The next server (boot server) address.
    pub siaddr: Ipv4Addr,
    /// The relay agent's address.
    pub giaddr: Ipv4Addr,
    /// The client's hardware address, padded to 16 bytes.
    pub chaddr: [u8; 16],
    /// The options, as (code, data).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    /// Parses a message. Any input is accepted without panicking: malformed input is an
    /// error, unknown options are kept as they are.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let Some((fixed, rest)) = bytes.split_first_chunk::<FIXED_LEN>() else {
            return Err(ParseError::TooShort(bytes.len()));
        };
        let Some((cookie, options_field)) = rest.split_first_chunk::<4>() else {
            return Err(ParseError::TooShort(bytes.len()));
        };
        if *cookie != MAGIC_COOKIE {
            return Err(ParseError::NoMagicCookie);
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&fixed[28..44]);
        let mut message = Self {
            op: fixed[0],
            htype: fixed[1],
            hlen: fixed[2],
            hops: fixed[3],
            xid: u32_at(4),
            secs: u16::from_be_bytes([fixed[8], fixed[9]]),
            flags: u16::from_be_bytes([fixed[10], fixed[11]]),
            ciaddr: Ipv4Addr::from(u32_at(12)),
            yiaddr: Ipv4Addr::from(u32_at(16)),
            siaddr: Ipv4Addr::from(u32_at(20)),
            giaddr: Ipv4Addr::from(u32_at(24)),
            chaddr,
            options: Vec::new(),
        };
        message.read_options(options_field)?;
        // Option overload (RFC 2132 9.3): options continue in `file` (1), `sname` (2) or
        // both (3), read in that order (RFC 3396 section 5).
        let overload = message
            .option(code::OVERLOAD)
            .and_then(|data| data.first().copied());
        if matches!(overload, Some(1 | 3)) {
            message.read_options(&fixed[108..236])?;
        }
        if matches!(overload, Some(2 | 3)) {
            message.read_options(&fixed[44..108])?;
        }
        Ok(message)
    }

    fn read_options(&mut self, mut field: &[u8]) -> Result<(), ParseError> {
        while let Some((&option, rest)) = field.split_first() {
            match option {
                code::PAD => field = rest,
                code::END => break,
                _ => {
                    let (&len, rest) = rest
                        .split_first()
                        .ok_or(ParseError::TruncatedOption(option))?;
                    let data = rest
                        .get(..usize::from(len))
                        .ok_or(ParseError::TruncatedOption(option))?;
                    match self.options.iter_mut().find(|(code, _)| *code == option) {
                        Some((_, existing)) => existing.extend_from_slice(data),
                        None => self.options.push((option, data.to_vec())),
                    }
                    field = &rest[usize::from(len)..];
                }
            }
        }
        Ok(())
    }

    /// Encodes the message; options longer than 255 bytes are split into consecutive
    /// instances (RFC 3396), and the result is padded to 300 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MIN_MESSAGE_LEN);
        out.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for address in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&address.octets());
        }
        out.extend_from_slice(&self.chaddr);
        out.resize(FIXED_LEN, 0); // sname and file: unused
        out.extend_from_slice(&MAGIC_COOKIE);
        for (option, data) in &self.options {
            if data.is_empty() {
                out.extend_from_slice(&[*option, 0]);
            }
            for chunk in data.chunks(255) {
                out.push(*option);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        out.push(code::END);
        if out.len() < MIN_MESSAGE_LEN {
            out.resize(MIN_MESSAGE_LEN, code::PAD);
        }
        out
    }

    /// The data of option `code`, if present.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, data)| data.as_slice())
    }

    /// The message type (option 53), if present and known.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.option(code::MESSAGE_TYPE)? {
            [code] => MessageType::from_code(*code),
            _ => None,
        }
    }

    /// An IPv4 address option (such as 50 or 54), if present and four bytes long.
    pub fn address_option(&self, code: u8) -> Option<Ipv4Addr> {
        <[u8; 4]>::try_from(self.option(code)?)
            .ok()
            .map(Ipv4Addr::from)
    }

    /// The client's Ethernet address, if the message carries one.
    pub fn client_mac(&self) -> Option<MacAddr> {
        (self.htype == 1 && self.hlen == 6).then(|| MacAddr::try_from(&self.chaddr[..6]).ok())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discover() -> Message {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x42]);
        Message {
            op: BOOTREQUEST,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid: 0xdead_beef,
            secs: 3,
            flags: BROADCAST_FLAG,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![(code::MESSAGE_TYPE, vec![1]), (55, vec![1, 3, 6, 121])],
        }
    }

    #[test]
    fn round_trip() {
        let message = discover();
        let bytes = message.encode();
        assert_eq!(bytes.len(), MIN_MESSAGE_LEN);
        let parsed = Message::parse(&bytes).unwrap();
        assert_eq!(parsed, message);
        assert_eq!(parsed.message_type(), Some(MessageType::Discover));
        assert_eq!(
            parsed.client_mac().unwrap().to_string(),
            "02:00:00:00:00:42"
        );
    }

    #[test]
    fn long_options_split_and_rejoin() {
        let mut message = discover();
        let long: Vec<u8> = (0..=255u8).chain(0..=99).collect();
        message.options.push((code::DOMAIN_SEARCH, long.clone()));
        let bytes = message.encode();
        let first = bytes
            .windows(2)
            .position(|w| w == [code::DOMAIN_SEARCH, 255])
            .unwrap();
        assert_eq!(
            bytes[first + 2 + 255],
            code::DOMAIN_SEARCH,
            "second instance follows"
        );
        assert_eq!(
            Message::parse(&bytes).unwrap().option(code::DOMAIN_SEARCH),
            Some(long.as_slice())
        );
    }

    #[test]
    fn overloaded_fields_are_read() {
        let mut bytes = discover().encode();
        // Put option 50 into `file` and announce it with option 52 = 1.
        bytes[108..115].copy_from_slice(&[code::REQUESTED_ADDRESS, 4, 10, 0, 0, 9, code::END]);
        let end = bytes.iter().rposition(|&b| b == code::END).unwrap();
        bytes.splice(end..end, [code::OVERLOAD, 1, 1]);
        let parsed = Message::parse(&bytes).unwrap();
        assert_eq!(
            parsed.address_option(code::REQUESTED_ADDRESS),
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let good = discover().encode();
        for len in 0..good.len() {
            let _ = Message::parse(&good[..len]);
        }
        assert_eq!(Message::parse(&good[..239]), Err(ParseError::TooShort(239)));
        let mut no_cookie = good.clone();
        no_cookie[236] = 0;
        assert_eq!(Message::parse(&no_cookie), Err(ParseError::NoMagicCookie));
        // An option whose length runs past the end.
        let mut truncated = good[..240].to_vec();
        truncated.extend_from_slice(&[code::ROUTER, 200, 1, 2]);
        assert_eq!(
            Message::parse(&truncated),
            Err(ParseError::TruncatedOption(code::ROUTER))
        );
        // A length byte missing altogether.
        let mut no_len = good[..240].to_vec();
        no_len.push(code::ROUTER);
        assert_eq!(
            Message::parse(&no_len),
            Err(ParseError::TruncatedOption(code::ROUTER))
        );
        // Random garbage after a valid header, and overload pointing at garbage.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            let mut bytes = good[..240].to_vec();
            if round % 2 == 0 {
                bytes.extend_from_slice(&[code::OVERLOAD, 1, 3]);
            }
            for _ in 0..(round % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(seed as u8);
            }
            for (at, byte) in bytes.iter_mut().enumerate().take(236).skip(44) {
                *byte = (seed >> (at % 56)) as u8;
            }
            if let Ok(message) = Message::parse(&bytes) {
                let _ = (
                    message.message_type(),
                    message.client_mac(),
                    message.address_option(code::SERVER_ID),
                );
            }
        }
        // Wrong-size fixed-format options are ignored, not trusted.
        let mut odd = discover();
        odd.options = vec![
            (code::MESSAGE_TYPE, vec![1, 1]),
            (code::REQUESTED_ADDRESS, vec![10, 0, 0]),
        ];
        let parsed = Message::parse(&odd.encode()).unwrap();
        assert_eq!(
            (
                parsed.message_type(),
                parsed.address_option(code::REQUESTED_ADDRESS)
            ),
            (None, None)
        );
        odd.hlen = 16;
        assert_eq!(Message::parse(&odd.encode()).unwrap().client_mac(), None);
    }
}
