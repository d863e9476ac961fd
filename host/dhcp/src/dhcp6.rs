//! The DHCPv6 protocol logic, without sockets: which request from the VM gets which
//! reply (RFC 8415 section 18.3, for one client and one fixed address).

use plexus_plumbing::MacAddr;
use tracing::{debug, info, warn};

use crate::{
    lease::{LeaseError, fraction},
    lease6::{Lease6, encode_domain_names},
    packet6::{Ia, IaAddress, Message6, MessageType, Options, Status, code, status},
};

/// DUID-LL (RFC 8415 section 11.4): type 3, hardware type 1 (Ethernet).
const DUID_LL_ETHERNET: [u8; 4] = [0, 3, 0, 1];
/// The highest preference: a client that gets it in an Advertise need not wait for
/// other servers (RFC 8415 section 18.2.1).
const MAX_PREFERENCE: u8 = 255;

/// Answers one client (by its MAC) with one fixed lease.
pub(crate) struct Dhcp6Responder {
    client: MacAddr,
    /// The server's DUID, from the MAC it sends from.
    duid: Vec<u8>,
    lease: Lease6,
    /// Options 23 and 24, computed (and validated) once.
    config_options: Options,
}

impl Dhcp6Responder {
    /// A responder for `client`, identified by the MAC of the interface it answers on.
    pub fn new(client: MacAddr, server_mac: MacAddr, lease: &Lease6) -> Result<Self, LeaseError> {
        lease.validate()?;
        let mut duid = DUID_LL_ETHERNET.to_vec();
        duid.extend_from_slice(&server_mac.0);
        let mut config_options = Vec::new();
        if !lease.dns_servers.is_empty() {
            let servers = lease.dns_servers.iter().flat_map(|a| a.octets()).collect();
            config_options.push((code::DNS_SERVERS, servers));
        }
        if !lease.search.is_empty() {
            config_options.push((code::DOMAIN_LIST, encode_domain_names(&lease.search)?));
        }
        Ok(Self {
            client,
            duid,
            lease: lease.clone(),
            config_options,
        })
    }

    /// The reply to `request`, which came from the Ethernet address `from`, if it gets
    /// one.
    pub fn respond(&self, from: MacAddr, request: &Message6) -> Option<Message6> {
        if from != self.client {
            return None;
        }
        let kind = request.message_type()?;
        let xid = request.transaction_id;
        // A client that chose another server names it (RFC 8415 section 16); one that
        // names none must, for these types, so it is not talking to this server.
        let server_id = request.option(code::SERVER_ID);
        let needs_server_id = matches!(
            kind,
            MessageType::Request | MessageType::Renew | MessageType::Release | MessageType::Decline
        );
        if server_id.is_some_and(|id| id != self.duid) || (needs_server_id && server_id.is_none()) {
            debug!(xid, ?kind, "DHCPv6 message for another server: ignored");
            return None;
        }
        // Every message but Information-request identifies its client (section 16).
        if kind != MessageType::InformationRequest && request.option(code::CLIENT_ID).is_none() {
            debug!(xid, ?kind, "DHCPv6 message without a client id: ignored");
            return None;
        }
        let address = self.lease.address;
        match kind {
            MessageType::Solicit => {
                let mut body = self.assign(request, false);
                if request.option(code::RAPID_COMMIT).is_some() {
                    info!(xid, client = %self.client, %address, "DHCPv6 SOLICIT with rapid commit: replying");
                    body.push((code::RAPID_COMMIT, Vec::new()));
                    Some(self.reply(MessageType::Reply, request, body))
                } else {
                    info!(xid, client = %self.client, %address, "DHCPv6 SOLICIT: advertising");
                    body.insert(0, (code::PREFERENCE, vec![MAX_PREFERENCE]));
                    Some(self.reply(MessageType::Advertise, request, body))
                }
            }
            MessageType::Request | MessageType::Renew | MessageType::Rebind => {
                info!(xid, ?kind, client = %self.client, %address, "DHCPv6: replying with the lease");
                // A renewing client is told to drop any other address it holds.
                let extending = kind != MessageType::Request;
                let body = self.assign(request, extending);
                Some(self.reply(MessageType::Reply, request, body))
            }
            MessageType::Confirm => {
                let addresses: Vec<IaAddress> = request
                    .options_of(code::IA_NA)
                    .filter_map(|data| Ia::parse(data).ok())
                    .flat_map(|ia| ia.addresses().collect::<Vec<_>>())
                    .collect();
                // Nothing to confirm gets no reply (RFC 8415 section 18.3.3).
                if addresses.is_empty() {
                    return None;
                }
                let fits = addresses.iter().all(|a| a.address == address);
                info!(xid, client = %self.client, fits, "DHCPv6 CONFIRM");
                let body = if fits {
                    vec![(code::STATUS_CODE, status(Status::Success, "on link"))]
                } else {
                    vec![(
                        code::STATUS_CODE,
                        status(Status::NotOnLink, "not this link's address"),
                    )]
                };
                Some(self.reply(MessageType::Reply, request, body))
            }
            MessageType::Release | MessageType::Decline => {
                if kind == MessageType::Decline {
                    warn!(xid, %address, "DHCPv6 DECLINE: the VM says its address is in use");
                } else {
                    debug!(xid, "DHCPv6 RELEASE: nothing to free, the lease is fixed");
                }
                let body = vec![(code::STATUS_CODE, status(Status::Success, "noted"))];
                Some(self.reply(MessageType::Reply, request, body))
            }
            MessageType::InformationRequest => {
                debug!(xid, "DHCPv6 INFORMATION-REQUEST: replying");
                Some(self.reply(MessageType::Reply, request, Vec::new()))
            }
            MessageType::Advertise | MessageType::Reply | MessageType::Reconfigure => {
                debug!(xid, ?kind, "DHCPv6 message not served");
                None
            }
        }
    }

    /// The IAs of a reply: the lease's address in the request's first IA_NA, no address
    /// for any further IA_NA, no prefix for any IA_PD. With `extending`, addresses the
    /// client holds other than the lease's are returned with lifetime 0, so that it drops
    /// them at once (RFC 8415 section 18.3.4).
    fn assign(&self, request: &Message6, extending: bool) -> Options {
        let mut body = Vec::new();
        let mut assigned = false;
        for ia in request
            .options_of(code::IA_NA)
            .filter_map(|data| Ia::parse(data).ok())
        {
            if assigned {
                body.push((code::IA_NA, unavailable(ia.iaid, Status::NoAddrsAvail)));
                continue;
            }
            assigned = true;
            let lifetime = self.lease.lease_secs;
            let mut addresses = vec![IaAddress {
                address: self.lease.address,
                preferred: lifetime,
                valid: lifetime,
            }];
            if extending {
                addresses.extend(
                    ia.addresses()
                        .filter(|a| a.address != self.lease.address)
                        .map(|a| IaAddress {
                            preferred: 0,
                            valid: 0,
                            ..a
                        }),
                );
            }
            let reply_ia = Ia {
                iaid: ia.iaid,
                t1: fraction(lifetime, 1, 2),
                t2: fraction(lifetime, 7, 8),
                options: addresses
                    .iter()
                    .map(|a| (code::IAADDR, a.encode()))
                    .collect(),
            };
            body.push((code::IA_NA, reply_ia.encode()));
        }
        for ia in request
            .options_of(code::IA_PD)
            .filter_map(|data| Ia::parse(data).ok())
        {
            body.push((code::IA_PD, unavailable(ia.iaid, Status::NoPrefixAvail)));
        }
        if !assigned {
            body.push((
                code::STATUS_CODE,
                status(Status::NoAddrsAvail, "no IA_NA asked for"),
            ));
        }
        body
    }

    /// A reply of `kind` to `request`: its client id, the server's, `body`, then DNS.
    fn reply(&self, kind: MessageType, request: &Message6, body: Options) -> Message6 {
        let mut reply = Message6::new(kind, request.transaction_id);
        if let Some(client_id) = request.option(code::CLIENT_ID) {
            reply.options.push((code::CLIENT_ID, client_id.to_vec()));
        }
        reply.options.push((code::SERVER_ID, self.duid.clone()));
        reply.options.extend(body);
        reply.options.extend(self.config_options.iter().cloned());
        reply
    }
}

/// An IA that gets nothing, and says why.
fn unavailable(iaid: u32, why: Status) -> Vec<u8> {
    Ia {
        iaid,
        t1: 0,
        t2: 0,
        options: vec![(
            code::STATUS_CODE,
            status(why, "only one address per client"),
        )],
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::packet6::status_of;

    const VM: MacAddr = MacAddr([0x02, 0x42, 0, 0, 0, 7]);
    const TAP: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
    const CLIENT_ID: [u8; 6] = [0, 4, 9, 9, 9, 9];

    fn lease() -> Lease6 {
        Lease6 {
            dns_servers: vec!["fd00:96::a".parse().unwrap()],
            search: vec!["svc.cluster.local".into()],
            ..Lease6::new("fd00:10:20::5".parse().unwrap(), 64, 600)
        }
    }

    fn responder() -> Dhcp6Responder {
        Dhcp6Responder::new(VM, TAP, &lease()).unwrap()
    }

    fn server_duid() -> Vec<u8> {
        vec![0, 3, 0, 1, 0x02, 0xaa, 0, 0, 0, 1]
    }

    fn ia_na(iaid: u32, addresses: &[&str]) -> (u16, Vec<u8>) {
        let ia = Ia {
            iaid,
            t1: 0,
            t2: 0,
            options: addresses
                .iter()
                .map(|a| {
                    let address = IaAddress {
                        address: a.parse().unwrap(),
                        preferred: 0,
                        valid: 0,
                    };
                    (code::IAADDR, address.encode())
                })
                .collect(),
        };
        (code::IA_NA, ia.encode())
    }

    fn request(kind: MessageType, options: Options) -> Message6 {
        let mut message = Message6::new(kind, 0x42);
        message.options = vec![(code::CLIENT_ID, CLIENT_ID.to_vec())];
        message.options.extend(options);
        message
    }

    /// The reply's IA_NAs: IAID, T1, T2, addresses with lifetimes, status.
    fn ias(reply: &Message6) -> Vec<(Ia, Vec<IaAddress>)> {
        reply
            .options_of(code::IA_NA)
            .map(|data| {
                let ia = Ia::parse(data).unwrap();
                let addresses = ia.addresses().collect();
                (ia, addresses)
            })
            .collect()
    }

    fn leased(reply: &Message6, iaid: u32) {
        let ias = ias(reply);
        assert_eq!(ias.len(), 1);
        let (ia, addresses) = &ias[0];
        assert_eq!((ia.iaid, ia.t1, ia.t2), (iaid, 300, 525));
        assert_eq!(
            addresses[0],
            IaAddress {
                address: lease().address,
                preferred: 600,
                valid: 600
            }
        );
        assert_eq!(reply.option(code::CLIENT_ID), Some(&CLIENT_ID[..]));
        assert_eq!(reply.option(code::SERVER_ID), Some(&server_duid()[..]));
        assert_eq!(
            reply.option(code::DNS_SERVERS),
            Some(&"fd00:96::a".parse::<Ipv6Addr>().unwrap().octets()[..])
        );
        assert_eq!(
            reply.option(code::DOMAIN_LIST),
            Some(&b"\x03svc\x07cluster\x05local\x00"[..])
        );
    }

    #[test]
    fn solicit_gets_an_advertise_with_the_lease() {
        let solicit = request(MessageType::Solicit, vec![ia_na(11, &[])]);
        let advertise = responder().respond(VM, &solicit).unwrap();
        assert_eq!(advertise.message_type(), Some(MessageType::Advertise));
        assert_eq!(advertise.transaction_id, 0x42);
        assert_eq!(advertise.option(code::PREFERENCE), Some(&[255][..]));
        assert_eq!(advertise.option(code::RAPID_COMMIT), None);
        leased(&advertise, 11);
        // It survives its own encoding.
        assert_eq!(Message6::parse(&advertise.encode()).unwrap(), advertise);
    }

    #[test]
    fn rapid_commit_gets_a_reply() {
        let solicit = request(
            MessageType::Solicit,
            vec![ia_na(3, &[]), (code::RAPID_COMMIT, vec![])],
        );
        let reply = responder().respond(VM, &solicit).unwrap();
        assert_eq!(reply.message_type(), Some(MessageType::Reply));
        assert_eq!(reply.option(code::RAPID_COMMIT), Some(&[][..]));
        leased(&reply, 3);
    }

    #[test]
    fn request_renew_rebind_get_the_lease_whatever_they_ask_for() {
        let responder = responder();
        let ours = vec![(code::SERVER_ID, server_duid())];
        let asked = request(
            MessageType::Request,
            [ours.clone(), vec![ia_na(5, &["fd00::99"])]].concat(),
        );
        let reply = responder.respond(VM, &asked).unwrap();
        assert_eq!(reply.message_type(), Some(MessageType::Reply));
        leased(&reply, 5);
        assert_eq!(ias(&reply)[0].1.len(), 1, "a Request is not told to drop");

        let renew = request(
            MessageType::Renew,
            [ours, vec![ia_na(5, &["fd00:10:20::5", "fd00::99"])]].concat(),
        );
        let reply = responder.respond(VM, &renew).unwrap();
        let (_, addresses) = &ias(&reply)[0];
        assert_eq!(addresses.len(), 2);
        assert_eq!(
            addresses[1],
            IaAddress {
                address: "fd00::99".parse().unwrap(),
                preferred: 0,
                valid: 0
            }
        );

        let rebind = request(MessageType::Rebind, vec![ia_na(5, &["fd00:10:20::5"])]);
        leased(&responder.respond(VM, &rebind).unwrap(), 5);

        // A second IA_NA gets no address; an IA_PD no prefix.
        let two = request(
            MessageType::Solicit,
            vec![ia_na(1, &[]), ia_na(2, &[]), (code::IA_PD, ia_na(9, &[]).1)],
        );
        let reply = responder.respond(VM, &two).unwrap();
        let ias = ias(&reply);
        assert_eq!(ias.len(), 2);
        assert_eq!(
            status_of(&ias[1].0.options),
            Some(Status::NoAddrsAvail as u16)
        );
        let pd = Ia::parse(reply.option(code::IA_PD).unwrap()).unwrap();
        assert_eq!(
            (pd.iaid, status_of(&pd.options)),
            (9, Some(Status::NoPrefixAvail as u16))
        );
        // No IA_NA at all: no address available.
        let none = responder
            .respond(VM, &request(MessageType::Solicit, vec![]))
            .unwrap();
        assert_eq!(status_of(&none.options), Some(Status::NoAddrsAvail as u16));
    }

    #[test]
    fn other_servers_clients_and_macs_are_ignored() {
        let responder = responder();
        let theirs = (code::SERVER_ID, vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 2]);
        for kind in [
            MessageType::Request,
            MessageType::Renew,
            MessageType::Release,
            MessageType::Decline,
        ] {
            let wrong = request(kind, vec![theirs.clone(), ia_na(1, &[])]);
            assert!(responder.respond(VM, &wrong).is_none(), "{kind:?}");
            let missing = request(kind, vec![ia_na(1, &[])]);
            assert!(responder.respond(VM, &missing).is_none(), "{kind:?}");
        }
        let solicit = request(MessageType::Solicit, vec![ia_na(1, &[])]);
        assert!(
            responder
                .respond(MacAddr([2, 0, 0, 0, 0, 1]), &solicit)
                .is_none()
        );
        let mut anonymous = solicit.clone();
        anonymous.options.remove(0);
        assert!(responder.respond(VM, &anonymous).is_none());
        let advertise = request(MessageType::Advertise, vec![]);
        assert!(responder.respond(VM, &advertise).is_none());
    }

    #[test]
    fn confirm_release_decline_information_request() {
        let responder = responder();
        let confirm = |address: &str| {
            let message = request(MessageType::Confirm, vec![ia_na(1, &[address])]);
            let reply = responder.respond(VM, &message).unwrap();
            assert_eq!(reply.message_type(), Some(MessageType::Reply));
            status_of(&reply.options)
        };
        assert_eq!(confirm("fd00:10:20::5"), Some(Status::Success as u16));
        assert_eq!(confirm("fd00:10:20::6"), Some(Status::NotOnLink as u16));
        let empty = request(MessageType::Confirm, vec![ia_na(1, &[])]);
        assert!(responder.respond(VM, &empty).is_none());

        let ours = (code::SERVER_ID, server_duid());
        for kind in [MessageType::Release, MessageType::Decline] {
            let message = request(kind, vec![ours.clone(), ia_na(1, &["fd00:10:20::5"])]);
            let reply = responder.respond(VM, &message).unwrap();
            assert_eq!(status_of(&reply.options), Some(Status::Success as u16));
            assert_eq!(reply.option(code::IA_NA), None);
        }

        let mut information = Message6::new(MessageType::InformationRequest, 9);
        let reply = responder.respond(VM, &information).unwrap();
        assert_eq!(reply.option(code::CLIENT_ID), None);
        assert!(reply.option(code::DNS_SERVERS).is_some());
        assert!(reply.option(code::DOMAIN_LIST).is_some());
        information
            .options
            .push((code::CLIENT_ID, CLIENT_ID.to_vec()));
        let reply = responder.respond(VM, &information).unwrap();
        assert_eq!(reply.option(code::CLIENT_ID), Some(&CLIENT_ID[..]));
        assert_eq!(reply.option(code::IA_NA), None);
    }
}
