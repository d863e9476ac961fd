//! A DHCPv6 message from a VM (`plexus_dhcp::packet6::Message6::parse`), the UDP payload
//! the server gets from whatever runs in the VM, and the identity associations and
//! addresses in it.
//!
//! Properties: parsing never panics; a message that parses encodes back to exactly the
//! bytes it came from (options are kept as they came, in order), and so does each IA_NA
//! or IA_PD in it; an address in an IA encodes to its first 24 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_dhcp::packet6::{Ia, Message6, code};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message6::parse(data) else {
        return;
    };
    assert_eq!(message.encode(), data);
    assert!(message.transaction_id <= 0x00ff_ffff);
    for ia_code in [code::IA_NA, code::IA_PD] {
        for ia_data in message.options_of(ia_code) {
            let Ok(ia) = Ia::parse(ia_data) else {
                continue;
            };
            assert_eq!(ia.encode(), ia_data);
            let raw: Vec<&[u8]> = ia
                .options
                .iter()
                .filter(|(option, data)| *option == code::IAADDR && data.len() >= 24)
                .map(|(_, data)| &data[..24])
                .collect();
            let addresses: Vec<_> = ia.addresses().map(|address| address.encode()).collect();
            assert_eq!(addresses, raw);
        }
    }
});
