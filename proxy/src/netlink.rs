//! Set-element changes sent to the kernel over netlink (nfnetlink, `NETLINK_NETFILTER`), one
//! batch = one nftables transaction, without running `nft`.
//!
//! Why: `nft -f -` first loads every chain and set of the ruleset into its userspace cache,
//! O(table size) per transaction (~90 ms at 10,000 Services on this machine), even to add
//! one element. An endpoint change is only element changes of the proxy's class maps and
//! sets (see [`crate::render`]), so the proxy encodes those itself and the cost stays
//! independent of the number of Services. Anything else (new chains, rules, verdict
//! elements) still goes through `nft -f -`.
//!
//! Only the element shapes the renderer makes are encoded ([`Element::parse`]: class maps,
//! big Services' interval maps, the masquerade/drop sets, the hairpin set); anything else
//! makes the caller fall back to `nft`. Each field is laid out as `nft` sends it (checked with `nft --debug=netlink`, and by
//! the kernel test in `tests/proxy.rs`, which compares the kernel's listing with a full
//! `nft` load of the same state): addresses as 4 bytes, the protocol as 1 byte and ports as
//! 2 big-endian bytes, each padded to 4; the `numgen` slot as a host-order 32-bit number.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::nft::ApplyError;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const AF_INET: u8 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// One element in kernel form: key, data (maps only), and whether it ends an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
    pub interval_end: bool,
}

/// The fields of a key or value, as the kernel lays them out: each padded to 4 bytes.
#[derive(Clone, Copy)]
enum Field {
    Ip,
    Proto,
    Port,
    /// `numgen` output: a host-order 32-bit number.
    Slot,
}

fn encode(fields: &[Field], text: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = text.split(" . ").map(str::trim).collect();
    if parts.len() != fields.len() {
        return None;
    }
    let mut v = vec![];
    for (f, p) in fields.iter().zip(parts) {
        match f {
            Field::Ip => v.extend(p.parse::<Ipv4Addr>().ok()?.octets()),
            Field::Proto => v.extend([
                match p {
                    "tcp" => 6,
                    "udp" => 17,
                    "sctp" => 132,
                    _ => return None,
                },
                0,
                0,
                0,
            ]),
            Field::Port => {
                v.extend(p.parse::<u16>().ok()?.to_be_bytes());
                v.extend([0, 0]);
            }
            Field::Slot => v.extend(p.parse::<u32>().ok()?.to_ne_bytes()),
        }
    }
    Some(v)
}

impl Element {
    /// The kernel form of one rendered element (`key`, `value`) of `map`; `None` if this
    /// is not a shape this module encodes. A range (`lo-hi`, in a big Service's interval
    /// map) is two elements, a start with the data and an end at `hi + 1`, with 32-bit
    /// big-endian keys (nft converts the host-order numgen value for interval lookups).
    pub fn parse(map: &str, key: &str, value: Option<&str>) -> Option<Vec<Element>> {
        use crate::render::*;
        use Field::*;
        if is_endpoints_map(map) {
            let (lo, hi) = key.split_once('-')?;
            let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
            if lo > hi {
                return None;
            }
            let data = match value {
                Some(v) => Some(encode(&[Ip, Port], v)?),
                None => None,
            };
            return Some(vec![
                Element { key: lo.to_be_bytes().to_vec(), data, interval_end: false },
                Element { key: hi.checked_add(1)?.to_be_bytes().to_vec(), data: None, interval_end: true },
            ]);
        }
        let key_fields: &[Field] = match map {
            HAIRPIN_SET => &[Ip, Ip],
            MASQUERADE_SERVICES | CLUSTER_IPS | DROP_SERVICES => &[Ip, Proto, Port],
            NODEPORT_MASQUERADE | NODEPORT_DROP => &[Proto, Port],
            _ => match class_of(map)? {
                (false, _) => &[Ip, Proto, Port, Slot],
                (true, _) => &[Proto, Port, Slot],
            },
        };
        let data = match (class_of(map), value) {
            (Some(_), Some(v)) => Some(encode(&[Ip, Port], v)?),
            (None, _) | (Some(_), None) => None,
        };
        Some(vec![Element { key: encode(key_fields, key)?, data, interval_end: false }])
    }
}

/// The element changes of one set: what to delete (keys only), then what to add.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetChange {
    pub set: String,
    pub delete: Vec<Element>,
    pub add: Vec<Element>,
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn nested(buf: &mut Vec<u8>, ty: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    fill(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Appends one netlink message (header, nfgenmsg, attributes).
fn message(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]); // length, below
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    attrs(buf);
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn elements(buf: &mut Vec<u8>, els: &[Element]) {
    nested(buf, NFTA_SET_ELEM_LIST_ELEMENTS, |b| {
        for e in els {
            nested(b, NFTA_LIST_ELEM, |b| {
                nested(b, NFTA_SET_ELEM_KEY, |b| attr(b, NFTA_DATA_VALUE, &e.key));
                if let Some(d) = &e.data {
                    nested(b, NFTA_SET_ELEM_DATA, |b| attr(b, NFTA_DATA_VALUE, d));
                }
                if e.interval_end {
                    attr(b, NFTA_SET_ELEM_FLAGS, &NFT_SET_ELEM_INTERVAL_END.to_be_bytes());
                }
            });
        }
    });
}

/// One batch (one transaction): every deletion, then every addition. Returns the bytes and
/// the messages the kernel must acknowledge (sequence number, what it does).
/// Sequence numbers start after `first_seq`.
pub fn batch(table: &str, changes: &[SetChange], first_seq: u32) -> (Vec<u8>, Vec<(u32, String)>) {
    let mut buf = vec![];
    let mut seq = first_seq;
    let mut acked = vec![];
    message(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, |_| {});
    let ty = |m: u16| (NFNL_SUBSYS_NFTABLES << 8) | m;
    for (msg, flags, pick) in [
        (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK, (|c: &SetChange| &c.delete) as fn(&SetChange) -> &Vec<Element>),
        (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, |c: &SetChange| &c.add),
    ] {
        for c in changes {
            let els = pick(c);
            // Bounded messages: 256 elements each.
            for chunk in els.chunks(256) {
                seq += 1;
                let verb = if msg == NFT_MSG_DELSETELEM { "delete" } else { "add" };
                acked.push((seq, format!("{verb} {} elements of {}", chunk.len(), c.set)));
                message(&mut buf, ty(msg), flags, seq, AF_INET, 0, |b| {
                    attr(b, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
                    attr(b, NFTA_SET_ELEM_LIST_SET, &cstr(&c.set));
                    elements(b, chunk);
                });
            }
        }
    }
    seq += 1;
    message(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, |_| {});
    (buf, acked)
}

/// Runs `f` in network namespace `netns` (its `ip netns` name) on a thread of its own, or
/// here when `None`. What `f` opens (sockets, `/proc/sys/net` files) belongs to that
/// namespace.
pub fn in_netns<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> Result<T, ApplyError> + Send,
) -> Result<T, ApplyError> {
    let Some(ns) = netns else { return f() };
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).map_err(|e| failed(&path, e))?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| failed(&format!("setns {path}"), e))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(ApplyError::Rejected("netns thread panicked".into())))
    })
}

/// A `NETLINK_NETFILTER` socket, opened once (in a network namespace, if asked) and kept:
/// closing a netlink socket waits for an RCU grace period (~13 ms here), more than the
/// whole transaction costs.
#[derive(Debug)]
pub struct Socket {
    fd: rustix::fd::OwnedFd,
    seq: u32,
    /// Where answers are read (kept: zeroing 64 KiB per change is a measurable share).
    answers: Vec<u8>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Rejected(format!("netlink {what}: {e}"))
}

impl Socket {
    /// Opens the socket in network namespace `netns` (its `ip netns` name), or in the
    /// caller's. A socket stays in the namespace it was made in.
    pub fn open(netns: Option<&str>) -> Result<Self, ApplyError> {
        in_netns(netns, Self::open_here)
    }

    fn open_here() -> Result<Self, ApplyError> {
        use rustix::net::{netlink, AddressFamily, SocketType};
        let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, Some(netlink::NETFILTER))
            .map_err(|e| failed("socket", e))?;
        rustix::net::connect(&fd, &netlink::SocketAddrNetlink::new(0, 0)).map_err(|e| failed("connect", e))?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(std::time::Duration::from_secs(5)),
        )
        .map_err(|e| failed("timeout", e))?;
        Ok(Self { fd, seq: 0, answers: vec![0; 64 * 1024] })
    }

    /// Sends `changes` of `table`'s sets as one transaction and waits for every
    /// acknowledgement. After an error the socket may hold stale answers: drop it.
    pub fn apply(&mut self, table: &str, changes: &[SetChange]) -> Result<(), ApplyError> {
        use rustix::net::{RecvFlags, SendFlags};
        let (buf, acked) = batch(table, changes, self.seq);
        self.seq = self.seq.wrapping_add(acked.len() as u32 + 2);
        if acked.is_empty() {
            return Ok(());
        }
        let sent = rustix::net::send(&self.fd, &buf, SendFlags::empty()).map_err(|e| failed("send", e))?;
        if sent != buf.len() {
            return Err(ApplyError::Rejected(format!("netlink send: {sent} of {} bytes", buf.len())));
        }
        let mut pending: BTreeMap<u32, &str> = acked.iter().map(|(s, what)| (*s, what.as_str())).collect();
        let mut failures = vec![];
        let rbuf = &mut self.answers;
        while !pending.is_empty() {
            let (_, n) =
                rustix::net::recv(&self.fd, &mut rbuf[..], RecvFlags::empty()).map_err(|e| failed("recv", e))?;
            let mut off = 0;
            while off + 16 <= n {
                let word = |at: usize| u32::from_ne_bytes(rbuf[at..at + 4].try_into().expect("4 bytes"));
                let (len, ty) = (word(off) as usize, word(off + 4) as u16);
                if len < 16 || off + len > n {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
                    let code = word(off + 16) as i32;
                    let seq = word(off + 28); // the acknowledged message's header
                                              // Answers to an earlier, failed batch have other sequence numbers.
                    if let Some(what) = pending.remove(&seq) {
                        if code != 0 {
                            failures.push(format!("{what}: {}", rustix::io::Errno::from_raw_os_error(-code)));
                            // The kernel aborts the whole batch; the other answers add nothing.
                            pending.clear();
                        }
                    }
                }
                off += len.next_multiple_of(4);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::Rejected(format!("netlink: the kernel refused the transaction: {}", failures.join("; "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_laid_out_as_nft_sends_them() {
        // As `nft --debug=netlink` shows them: fields padded to 4 bytes, ports big-endian,
        // the numgen slot in host order.
        let e = Element::parse("service-endpoints-2", "10.96.0.1 . tcp . 80 . 1", Some("10.1.0.5 . 8080")).unwrap();
        let e = &e[0];
        let mut key = vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0];
        key.extend(1u32.to_ne_bytes());
        assert_eq!(e.key, key);
        assert_eq!(e.data.as_deref(), Some(&[10, 1, 0, 5, 0x1f, 0x90, 0, 0][..]));
        let np = Element::parse("nodeport-endpoints-3", "udp . 30080 . 2", Some("10.1.0.5 . 53")).unwrap();
        assert_eq!(&np[0].key[..8], &[17, 0, 0, 0, 0x75, 0x80, 0, 0]);
        let h = Element::parse(crate::render::HAIRPIN_SET, "10.1.0.2 . 10.1.0.2", None).unwrap();
        assert_eq!(h[0].key, vec![10, 1, 0, 2, 10, 1, 0, 2]);
        let d = Element::parse(crate::render::NODEPORT_DROP, "sctp . 30001", None).unwrap();
        assert_eq!(d[0].key, vec![132, 0, 0, 0, 0x75, 0x31, 0, 0]);
        // A range of a big Service's interval map: start (with the data) and end.
        let r = Element::parse("endpoints-X-a/b/tcp/p", "32768-65535", Some("10.2.0.0 . 80")).unwrap();
        assert_eq!(r[0].key, vec![0, 0, 0x80, 0]);
        assert_eq!(r[0].data.as_deref(), Some(&[10, 2, 0, 0, 0, 80, 0, 0][..]));
        assert_eq!(r[1], Element { key: vec![0, 1, 0, 0], data: None, interval_end: true });
        assert!(Element::parse("endpoints-X", "9-3", Some("10.0.0.1 . 80")).is_none());
        assert!(Element::parse("service-ips", "10.96.0.1 . tcp . 80", Some("goto x")).is_none(), "verdicts: nft");
        assert!(Element::parse("service-endpoints-2", "10.96.0.1 . tcp . 80", Some("10.0.0.1 . 80")).is_none());
        assert!(Element::parse("service-endpoints-2", "10.96.0.1 . icmp . 80 . 0", Some("10.0.0.1 . 80")).is_none());
    }

    #[test]
    fn a_batch_is_framed_and_every_change_is_acknowledged() {
        let add = Element::parse("service-endpoints-1", "10.96.0.1 . tcp . 80 . 0", Some("10.0.0.1 . 80")).unwrap();
        let (buf, acked) =
            batch("skiff-proxy", &[SetChange { set: "service-endpoints-1".into(), delete: vec![], add }], 0);
        assert_eq!(acked, vec![(1, "add 1 elements of service-endpoints-1".to_string())], "one message, acknowledged");
        // Three messages: begin, the elements, end; each length-prefixed and 4-aligned.
        let mut off = 0;
        let mut types = vec![];
        while off < buf.len() {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            types.push(u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap()));
            assert_eq!(len % 4, 0);
            off += len;
        }
        assert_eq!(off, buf.len());
        assert_eq!(types, vec![NFNL_MSG_BATCH_BEGIN, (10 << 8) | NFT_MSG_NEWSETELEM, NFNL_MSG_BATCH_END]);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("skiff-proxy\0") && text.contains("service-endpoints-1\0"));
    }
}
