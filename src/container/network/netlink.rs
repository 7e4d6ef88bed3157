//! A small synchronous rtnetlink client (netlink-packet-route messages over a
//! netlink-sys socket): the few requests a bridge network needs. A socket belongs to the
//! network namespace it was opened in, so one opened by a thread that had just entered a
//! new namespace configures that namespace.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    DefaultNla, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO,
    NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridgePort, InfoData, InfoKind, InfoPortData,
    InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// One rtnetlink socket, in the namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Frames `message` with the next sequence number into `buf`; returns the number.
    fn frame(&mut self, message: RouteNetlinkMessage, flags: u16, buf: &mut Vec<u8>) -> u32 {
        let mut packet = NetlinkMessage::from(message);
        packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        self.seq = self.seq.wrapping_add(1);
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let start = buf.len();
        buf.resize(start + packet.buffer_len(), 0);
        packet.serialize(&mut buf[start..]);
        self.seq
    }

    /// Reads replies to the requests numbered `first..=last` until each is acknowledged
    /// (or a dump is done): calls `reply` with each message and returns every request's
    /// outcome, in order.
    fn collect(
        &mut self,
        first: u32,
        last: u32,
        mut reply: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<Vec<io::Result<()>>> {
        let count = last.wrapping_sub(first) as usize + 1;
        let mut outcomes: Vec<Option<io::Result<()>>> = (0..count).map(|_| None).collect();
        let mut pending = count;
        while pending > 0 {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = message.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                let n = message.header.sequence_number.wrapping_sub(first) as usize;
                if n >= count || outcomes[n].is_some() {
                    continue;
                }
                let outcome = match message.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        None => Ok(()),
                    },
                    NetlinkPayload::Done(_) => Ok(()),
                    NetlinkPayload::InnerMessage(m) => {
                        reply(m);
                        continue;
                    }
                    _ => continue,
                };
                outcomes[n] = Some(outcome);
                pending -= 1;
            }
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Sends one request and collects the replies until its acknowledgement.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut buf = Vec::new();
        let seq = self.frame(message, flags, &mut buf);
        self.socket.send(&buf, 0)?;
        let mut replies = Vec::new();
        let mut outcomes = self.collect(seq, seq, |m| replies.push(m))?;
        outcomes.pop().unwrap_or(Ok(())).map(|()| replies)
    }

    /// Sets the link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.request(up_message(index), 0)?;
        Ok(())
    }

    /// Sends `requests` in one message and waits for all their acknowledgements: one
    /// round trip instead of one each. The kernel handles them in order and goes on
    /// after a failure, so every one is answered; the first failure is returned with
    /// its position.
    pub fn batch(&mut self, requests: Vec<(RouteNetlinkMessage, u16)>) -> Result<(), BatchError> {
        if requests.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut seqs = requests
            .into_iter()
            .map(|(message, flags)| self.frame(message, flags, &mut buf));
        let first = seqs.next().expect("one request at least");
        let last = seqs.last().unwrap_or(first);
        let io = |error| BatchError { index: None, error };
        self.socket.send(&buf, 0).map_err(io)?;
        let outcomes = self.collect(first, last, |_| {}).map_err(io)?;
        for (index, outcome) in outcomes.into_iter().enumerate() {
            outcome.map_err(|error| BatchError {
                index: Some(index),
                error,
            })?;
        }
        Ok(())
    }

    /// The index of the link called `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The ports of the bridge `master`: for each, the id (as seen from here) of the
    /// namespace its other end lives in when that is another one (a veth's host end),
    /// negative when that namespace has none any more (it is being torn down).
    pub fn bridge_ports(&mut self, master: u32) -> io::Result<Vec<Option<i32>>> {
        let msg = LinkMessage::default();
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link.attributes),
                _ => None,
            })
            .filter(|attrs| {
                attrs
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Controller(m) if *m == master))
            })
            .map(|attrs| {
                attrs.iter().find_map(|a| match a {
                    LinkAttribute::LinkNetNsId(id) => Some(*id),
                    _ => None,
                })
            })
            .collect())
    }

    /// Whether the network namespace with id `nsid` (as seen from here) is alive: one
    /// being torn down keeps its id for a while, but can no longer be reached by it
    /// (`IFLA_TARGET_NETNSID` then fails with EINVAL).
    pub fn netns_alive(&mut self, nsid: i32) -> io::Result<bool> {
        const IFLA_TARGET_NETNSID: u16 = 46;
        let mut msg = LinkMessage::default();
        // Loopback: index 1 in every namespace.
        msg.header.index = 1;
        msg.attributes.push(LinkAttribute::Other(DefaultNla::new(
            IFLA_TARGET_NETNSID,
            nsid.to_ne_bytes().to_vec(),
        )));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge called `name`, up.
    pub fn create_bridge(&mut self, name: &str) -> io::Result<u32> {
        // A MAC of its own, as Docker gives its bridges: without one the kernel gives
        // the bridge its lowest port's, so the gateway's MAC changed whenever that
        // container left, and every other container's ARP entry for the gateway
        // pointed nowhere until it expired (pings to the gateway failed meanwhile).
        let mut mac = [0u8; 6];
        // SAFETY: getrandom writes at most mac.len() bytes into the buffer we own.
        let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
        if n != mac.len() as isize {
            return Err(io::Error::last_os_error());
        }
        // Unicast, locally administered.
        mac[0] = (mac[0] & 0xfe) | 0x02;
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)?;
        self.link_index(name)?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// Creates a veth pair in one request: `host` here, down and attached to the bridge
    /// `master` (the caller brings it up with [`Netlink::set_port_up`]); its peer `peer`
    /// (with `mac`, down) directly in the namespace `netns`. Returns the peer's index
    /// there when the kernel says it.
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        mac: [u8; 6],
        netns: RawFd,
    ) -> io::Result<Option<u32>> {
        // The peer cannot be brought up in the same request (the kernel opens it before
        // the pair is linked: ENOTCONN); the caller does it from inside.
        let mut inner = LinkMessage::default();
        inner
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        inner.attributes.push(LinkAttribute::Address(mac.to_vec()));
        inner.attributes.push(LinkAttribute::NetNsFd(netns));
        // One queue each way on both ends, asked for: without it the kernel makes one
        // per CPU, then cuts the pair down to one while registered, and each cut waits
        // out an expedited RCU grace period under the rtnl lock (two per run: the
        // largest part of the kernel's time in a bridge start on a busy host).
        let queues = [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)];
        inner.attributes.extend(queues.clone());
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.extend(queues);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(inner))),
        ]));
        // Echoed back (kernels since 6.3), the new host end names its peer's index in the
        // peer's namespace: returned, so the caller need not look it up from inside.
        let replies = self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )?;
        Ok(replies.into_iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => {
                link.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::Link(index) if index > 0 => Some(index),
                    _ => None,
                })
            }
            _ => None,
        }))
    }

    /// Attaches the link called `name` to the bridge `master`.
    pub fn set_master(&mut self, name: &str, master: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Controller(master));
        self.request(RouteNetlinkMessage::NewLink(msg), 0)?;
        Ok(())
    }

    /// Brings the bridge port `name` (a veth's host end) up with hairpin mode on and
    /// without IPv6 addresses, in one round trip. Hairpin: the bridge may send a frame
    /// back out of the port it came in by, as a container reaching its own published
    /// port through a host address needs once the DNAT sends it back. No IPv6 addresses
    /// (address generation "none", set while the port is still down): no link-local
    /// address, so no duplicate address detection, router solicitation or multicast
    /// reports when it comes up, and nothing to remove when it goes (the bridge forwards
    /// a container's IPv6 frames all the same). Not the `disable_ipv6` sysctl: the
    /// kernel takes the rtnl lock for it with a trylock and restarts the write while
    /// another holds it, so on a busy host (the namespace teardown of the previous run
    /// holds it) the write spun for tens of milliseconds, hundreds of times over.
    pub fn set_port_up(&mut self, name: &str) -> io::Result<()> {
        let mut no_v6 = LinkMessage::default();
        no_v6
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        no_v6
            .attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]));
        let mut up = LinkMessage::default();
        up.header.flags = LinkFlags::Up;
        up.header.change_mask = LinkFlags::Up;
        up.attributes.push(LinkAttribute::IfName(name.to_string()));
        up.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        let mut buf = Vec::new();
        let first = self.frame(RouteNetlinkMessage::NewLink(no_v6), 0, &mut buf);
        let last = self.frame(RouteNetlinkMessage::NewLink(up), 0, &mut buf);
        self.socket.send(&buf, 0)?;
        let mut outcomes = self.collect(first, last, |_| {})?.into_iter();
        match outcomes.next() {
            // A kernel without IPv6 has no addresses to turn off.
            Some(Err(e)) if e.raw_os_error() != Some(libc::EAFNOSUPPORT) => return Err(e),
            _ => {}
        }
        outcomes.next().unwrap_or(Ok(()))
    }

    /// Deletes the link called `name`; a missing one is not an error.
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Adds `addr/prefix` (with its broadcast address) to link `index`.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.request(
            address_message(index, addr, prefix),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }
}

/// A request's failure in a [`Netlink::batch`]: which one (none: the batch itself).
#[derive(Debug)]
pub struct BatchError {
    pub index: Option<usize>,
    pub error: io::Error,
}

/// Sets the link `index` up (RTM_SETLINK).
pub fn up_message(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    RouteNetlinkMessage::SetLink(msg)
}

/// Adds `addr/prefix` with its broadcast address to link `index` (RTM_NEWADDR; send with
/// NLM_F_CREATE | NLM_F_EXCL).
pub fn address_message(index: u32, addr: Ipv4Addr, prefix: u8) -> RouteNetlinkMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    let mask = super::ipam::mask(prefix);
    let broadcast = Ipv4Addr::from(u32::from(addr) | !mask);
    msg.attributes.push(AddressAttribute::Local(addr.into()));
    msg.attributes.push(AddressAttribute::Address(addr.into()));
    msg.attributes.push(AddressAttribute::Broadcast(broadcast));
    RouteNetlinkMessage::NewAddress(msg)
}

/// Adds the default route through `gateway` on link `index` (RTM_NEWROUTE; send with
/// NLM_F_CREATE | NLM_F_EXCL).
pub fn default_route_message(index: u32, gateway: Ipv4Addr) -> RouteNetlinkMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    msg.attributes.push(RouteAttribute::Oif(index));
    RouteNetlinkMessage::NewRoute(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own in a new network namespace (needs root).
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            f()
        })
        .join()
        .expect("the test thread")
    }

    // A batch answers every request: the failure of one is reported with its place, the
    // ones after it still take effect, and the socket is left clean for the next request.
    #[test]
    fn a_batch_reports_which_request_failed_and_leaves_the_socket_clean() {
        in_new_netns(|| {
            let mut nl = Netlink::open().unwrap();
            let addr = Ipv4Addr::new(10, 77, 0, 2);
            let err = nl
                .batch(vec![
                    (up_message(1), 0),
                    (up_message(9999), 0),
                    (address_message(1, addr, 24), NLM_F_CREATE | NLM_F_EXCL),
                ])
                .unwrap_err();
            assert_eq!(err.index, Some(1));
            assert_eq!(err.error.raw_os_error(), Some(libc::ENODEV));
            // The address after the failure was added: adding it again says so.
            let again = nl.add_address(1, addr, 24).unwrap_err();
            assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
            assert_eq!(nl.link_index("lo").unwrap(), Some(1));
            nl.batch(vec![(up_message(1), 0)]).unwrap();
        });
    }
}
