//! DHCPv6 messages (RFC 8415 sections 8 and 21) between a client and a server, no relay
//! messages: a parser that accepts any byte string without panicking, and an encoder;
//! the same for the identity associations (IA_NA and IA_PD) and their addresses.

use std::net::Ipv6Addr;

/// The server's (and relay agents') UDP port.
pub const SERVER_PORT: u16 = 547;
/// The client's UDP port.
pub const CLIENT_PORT: u16 = 546;

/// Option codes this crate reads or writes.
pub mod code {
    /// Client identifier (a DUID).
    pub const CLIENT_ID: u16 = 1;
    /// Server identifier (a DUID).
    pub const SERVER_ID: u16 = 2;
    /// Identity association for non-temporary addresses.
    pub const IA_NA: u16 = 3;
    /// An address in an IA.
    pub const IAADDR: u16 = 5;
    /// Server preference.
    pub const PREFERENCE: u16 = 7;
    /// Status code.
    pub const STATUS_CODE: u16 = 13;
    /// Rapid commit: Solicit answered by Reply.
    pub const RAPID_COMMIT: u16 = 14;
    /// DNS recursive name servers (RFC 3646).
    pub const DNS_SERVERS: u16 = 23;
    /// Domain search list (RFC 3646).
    pub const DOMAIN_LIST: u16 = 24;
    /// Identity association for prefix delegation.
    pub const IA_PD: u16 = 25;
}

/// The message types of client and server (RFC 8415 section 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A client looks for servers.
    Solicit = 1,
    /// A server offers itself.
    Advertise = 2,
    /// A client asks a server for addresses.
    Request = 3,
    /// A client asks whether its addresses still fit the link.
    Confirm = 4,
    /// A client extends its addresses' lifetimes with the server that gave them.
    Renew = 5,
    /// A client extends its addresses' lifetimes with any server.
    Rebind = 6,
    /// A server answers.
    Reply = 7,
    /// A client gives addresses back.
    Release = 8,
    /// A client found addresses in use.
    Decline = 9,
    /// A server asks the client to renew or ask for information.
    Reconfigure = 10,
    /// A client asks for configuration without addresses.
    InformationRequest = 11,
}

impl MessageType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Solicit,
            2 => Self::Advertise,
            3 => Self::Request,
            4 => Self::Confirm,
            5 => Self::Renew,
            6 => Self::Rebind,
            7 => Self::Reply,
            8 => Self::Release,
            9 => Self::Decline,
            10 => Self::Reconfigure,
            11 => Self::InformationRequest,
            _ => return None,
        })
    }
}

/// Status codes (RFC 8415 section 21.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Success = 0,
    /// No addresses available for the IAs.
    NoAddrsAvail = 2,
    /// The addresses are not appropriate for the link.
    NotOnLink = 4,
    /// No prefixes available for the IA_PDs.
    NoPrefixAvail = 6,
}

/// Why bytes are not a DHCPv6 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its fixed header.
    #[error("message too short ({0} bytes)")]
    TooShort(usize),
    /// An option's length runs past the end of the message.
    #[error("option {0} truncated")]
    TruncatedOption(u16),
}

/// Options in order, repeated ones (such as several IA_NA) each on its own.
pub type Options = Vec<(u16, Vec<u8>)>;

/// A DHCPv6 client or server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message6 {
    /// The message type's code (see [`MessageType`]).
    pub kind: u8,
    /// The transaction id, 24 bits.
    pub transaction_id: u32,
    /// The options.
    pub options: Options,
}

impl Message6 {
    /// A message of `kind` with no options yet.
    pub fn new(kind: MessageType, transaction_id: u32) -> Self {
        Self {
            kind: kind as u8,
            transaction_id: transaction_id & 0x00ff_ffff,
            options: Vec::new(),
        }
    }

    /// Parses a message (the UDP payload).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let (&[kind, a, b, c], rest) = bytes
            .split_first_chunk::<4>()
            .ok_or(ParseError::TooShort(bytes.len()))?;
        Ok(Self {
            kind,
            transaction_id: u32::from_be_bytes([0, a, b, c]),
            options: parse_options(rest)?,
        })
    }

    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.kind];
        out.extend_from_slice(&self.transaction_id.to_be_bytes()[1..]);
        encode_options(&self.options, &mut out);
        out
    }

    /// The message type, if it is a known one.
    pub fn message_type(&self) -> Option<MessageType> {
        MessageType::from_code(self.kind)
    }

    /// The data of the first option `code`.
    pub fn option(&self, code: u16) -> Option<&[u8]> {
        self.options_of(code).next()
    }

    /// The data of every option `code`, in order.
    pub fn options_of(&self, code: u16) -> impl Iterator<Item = &[u8]> {
        self.options
            .iter()
            .filter(move |(c, _)| *c == code)
            .map(|(_, data)| data.as_slice())
    }
}

/// An identity association for non-temporary addresses (IA_NA) or for prefix delegation
/// (IA_PD), which have the same layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ia {
    /// The client's id of the IA.
    pub iaid: u32,
    /// When the client renews (seconds).
    pub t1: u32,
    /// When the client rebinds (seconds).
    pub t2: u32,
    /// The IA's options: addresses ([`IaAddress`]) or prefixes, a status code.
    pub options: Options,
}

impl Ia {
    /// Parses the data of an IA_NA or IA_PD option.
    pub fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let (fixed, rest) = data
            .split_first_chunk::<12>()
            .ok_or(ParseError::TooShort(data.len()))?;
        let word = |at: usize| {
            u32::from_be_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        Ok(Self {
            iaid: word(0),
            t1: word(4),
            t2: word(8),
            options: parse_options(rest)?,
        })
    }

    /// The option's data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [self.iaid, self.t1, self.t2] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        encode_options(&self.options, &mut out);
        out
    }

    /// The addresses (IAADDR options) in the IA that parse.
    pub fn addresses(&self) -> impl Iterator<Item = IaAddress> {
        self.options
            .iter()
            .filter(|(code, _)| *code == code::IAADDR)
            .filter_map(|(_, data)| IaAddress::parse(data).ok())
    }
}

/// An address in an IA_NA (option IAADDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaAddress {
    /// The address.
    pub address: Ipv6Addr,
    /// Its preferred lifetime (seconds, `u32::MAX` infinite).
    pub preferred: u32,
    /// Its valid lifetime (seconds, `u32::MAX` infinite).
    pub valid: u32,
}

impl IaAddress {
    /// Parses the data of an IAADDR option (its own options are not kept: the server
    /// has no use for what a client puts there).
    pub fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let (fixed, _) = data
            .split_first_chunk::<24>()
            .ok_or(ParseError::TooShort(data.len()))?;
        let mut address = [0u8; 16];
        address.copy_from_slice(&fixed[..16]);
        Ok(Self {
            address: Ipv6Addr::from(address),
            preferred: u32::from_be_bytes([fixed[16], fixed[17], fixed[18], fixed[19]]),
            valid: u32::from_be_bytes([fixed[20], fixed[21], fixed[22], fixed[23]]),
        })
    }

    /// The option's data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.address.octets().to_vec();
        out.extend_from_slice(&self.preferred.to_be_bytes());
        out.extend_from_slice(&self.valid.to_be_bytes());
        out
    }
}

/// A Status Code option's data: the code and a message for people.
pub fn status(status: Status, message: &str) -> Vec<u8> {
    let mut out = (status as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message.as_bytes());
    out
}

/// The status code in an option list, if any (success when absent, RFC 8415 21.13).
pub fn status_of(options: &[(u16, Vec<u8>)]) -> Option<u16> {
    options
        .iter()
        .find(|(code, _)| *code == code::STATUS_CODE)
        .and_then(|(_, data)| Some(u16::from_be_bytes([*data.first()?, *data.get(1)?])))
}

fn parse_options(mut bytes: &[u8]) -> Result<Options, ParseError> {
    let mut options = Vec::new();
    while !bytes.is_empty() {
        let Some((&[a, b, c, d], rest)) = bytes.split_first_chunk::<4>() else {
            return Err(ParseError::TruncatedOption(0));
        };
        let code = u16::from_be_bytes([a, b]);
        let len = usize::from(u16::from_be_bytes([c, d]));
        let data = rest.get(..len).ok_or(ParseError::TruncatedOption(code))?;
        options.push((code, data.to_vec()));
        bytes = &rest[len..];
    }
    Ok(options)
}

fn encode_options(options: &[(u16, Vec<u8>)], out: &mut Vec<u8>) {
    for (code, data) in options {
        out.extend_from_slice(&code.to_be_bytes());
        // Option data the server writes is far below 64 KiB (a few addresses and names).
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solicit() -> Message6 {
        let mut message = Message6::new(MessageType::Solicit, 0x00ab_cdef);
        let ia = Ia {
            iaid: 7,
            t1: 0,
            t2: 0,
            options: vec![(
                code::IAADDR,
                IaAddress {
                    address: "fd00::9".parse().unwrap(),
                    preferred: 10,
                    valid: 20,
                }
                .encode(),
            )],
        };
        message.options = vec![
            (code::CLIENT_ID, vec![0, 4, 1, 2, 3, 4]),
            (code::IA_NA, ia.encode()),
            (code::RAPID_COMMIT, vec![]),
        ];
        message
    }

    #[test]
    fn round_trip() {
        let message = solicit();
        let bytes = message.encode();
        assert_eq!(&bytes[..4], &[1, 0xab, 0xcd, 0xef]);
        let parsed = Message6::parse(&bytes).unwrap();
        assert_eq!(parsed, message);
        assert_eq!(parsed.message_type(), Some(MessageType::Solicit));
        assert_eq!(parsed.option(code::RAPID_COMMIT), Some(&[][..]));
        let ia = Ia::parse(parsed.option(code::IA_NA).unwrap()).unwrap();
        assert_eq!(ia.iaid, 7);
        let addresses: Vec<_> = ia.addresses().collect();
        assert_eq!(addresses.len(), 1);
        assert_eq!(addresses[0].address, "fd00::9".parse::<Ipv6Addr>().unwrap());
        assert_eq!((addresses[0].preferred, addresses[0].valid), (10, 20));
        assert_eq!(
            status_of(&[(code::STATUS_CODE, status(Status::NotOnLink, "no"))]),
            Some(4)
        );
        assert_eq!(status_of(&[]), None);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let bytes = solicit().encode();
        for len in 0..bytes.len() {
            let _ = Message6::parse(&bytes[..len]);
            let _ = Ia::parse(&bytes[..len]);
            let _ = IaAddress::parse(&bytes[..len]);
        }
        assert_eq!(Message6::parse(&[1, 2]), Err(ParseError::TooShort(2)));
        assert_eq!(
            Message6::parse(&[1, 0, 0, 0, 0, 1, 0, 9, 0]),
            Err(ParseError::TruncatedOption(1))
        );
        assert_eq!(
            Message6::parse(&[1, 0, 0, 0, 0]),
            Err(ParseError::TruncatedOption(0))
        );
    }
}
