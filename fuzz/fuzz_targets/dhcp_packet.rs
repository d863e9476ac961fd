//! A DHCP message from a VM (`plexus_dhcp::packet::Message::parse`), the UDP payload
//! the server gets from whatever runs in the VM.
//!
//! Properties: parsing never panics; a message that parses encodes to at least 300
//! bytes that parse back to the same message (options merged per RFC 3396 stay
//! merged, overloaded `file`/`sname` options come back in the options field), and
//! its accessors agree with its options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_dhcp::packet::{Message, code};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let mut seen = Vec::new();
    for (option, _) in &message.options {
        assert!(
            *option != code::PAD && *option != code::END,
            "option {option} kept"
        );
        assert!(!seen.contains(option), "option {option} twice");
        seen.push(*option);
    }
    if let Some(kind) = message.message_type() {
        assert_eq!(message.option(code::MESSAGE_TYPE), Some(&[kind as u8][..]));
    }
    if let Some(mac) = message.client_mac() {
        assert_eq!(mac.0, message.chaddr[..6]);
    }
    if let Some(address) = message.address_option(code::REQUESTED_ADDRESS) {
        assert_eq!(
            message.option(code::REQUESTED_ADDRESS),
            Some(&address.octets()[..])
        );
    }

    let encoded = message.encode();
    assert!(encoded.len() >= 300);
    let reparsed = Message::parse(&encoded).expect("an encoded message parses");
    assert_eq!(reparsed, message);
    assert_eq!(reparsed.encode(), encoded);
});
