//! Set-element changes sent to the kernel over netlink (nfnetlink, `NETLINK_NETFILTER`), one
//! batch = one nftables transaction, without running `nft`.
//!
//! Why: `nft -f -` first loads every chain and set of the ruleset into its userspace cache,
//! O(table size) per transaction (~90 ms at 10,000 Services on this machine), even to add
//! one element. An endpoint change is only element changes of the proxy's endpoint maps and
//! hairpin set (see [`crate::render`]), so the proxy encodes those itself and the cost stays
//! independent of the number of Services. Anything else (new chains, rules, verdict
//! elements) still goes through `nft -f -`.
//!
//! Only the element shapes the renderer makes are encoded ([`Element::parse`]); anything else
//! makes [`encode`] return `None` and the caller falls back to `nft`. Encodings, as `nft`
//! sends them (checked by `nft --debug=netlink`, and by the kernel test in
//! `tests/proxy.rs`, which compares the kernel's listing with `nft`'s):
//! - endpoints maps (`typeof numgen random mod 65536 : ip daddr . th dport; flags interval`):
//!   a range `lo-hi` is two elements, a start (key `lo`, with the data) and an end
//!   (key `hi + 1`, flag `NFT_SET_ELEM_INTERVAL_END`); keys are 32-bit big-endian (nft
//!   converts the host-order numgen value for interval lookups); the data `ip . port` is the
//!   address (4 bytes) and the port (2 bytes, big-endian) padded to 4;
//! - the hairpin set (`type ipv4_addr . ipv4_addr`): two addresses, 8 bytes.

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

/// One element in kernel form: key, data (maps only), flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub data: Option<Vec<u8>>,
    pub interval_end: bool,
}

fn ip_port(s: &str) -> Option<Vec<u8>> {
    let (ip, port) = s.split_once(" . ")?;
    let ip: Ipv4Addr = ip.trim().parse().ok()?;
    let port: u16 = port.trim().parse().ok()?;
    let mut v = ip.octets().to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    Some(v)
}

impl Element {
    /// The kernel elements for one rendered element (`key`, `value`) of `map`; `None` if
    /// this shape is not one this module encodes.
    pub fn parse(map: &str, key: &str, value: Option<&str>) -> Option<Vec<Element>> {
        if map == crate::render::HAIRPIN_SET {
            let (a, b) = key.split_once(" . ")?;
            let (a, b): (Ipv4Addr, Ipv4Addr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            let key = [a.octets(), b.octets()].concat();
            return Some(vec![Element { key, data: None, interval_end: false }]);
        }
        if !(map.starts_with("endpoints-") || map.starts_with("local-endpoints-")) {
            return None;
        }
        let (lo, hi) = key.split_once('-')?;
        let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
        let end = hi.checked_add(1)?;
        if lo > hi {
            return None;
        }
        let data = match value {
            Some(v) => Some(ip_port(v)?),
            None => None,
        };
        let start = Element { key: lo.to_be_bytes().to_vec(), data, interval_end: false };
        let end = Element { key: end.to_be_bytes().to_vec(), data: None, interval_end: true };
        Some(vec![start, end])
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

/// A `NETLINK_NETFILTER` socket, opened once (in a network namespace, if asked) and kept:
/// closing a netlink socket waits for an RCU grace period (~13 ms here), more than the
/// whole transaction costs.
#[derive(Debug)]
pub struct Socket {
    fd: rustix::fd::OwnedFd,
    seq: u32,
}

fn failed(what: &str, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Rejected(format!("netlink {what}: {e}"))
}

impl Socket {
    /// Opens the socket in network namespace `netns` (its `ip netns` name), or in the
    /// caller's. A socket stays in the namespace it was made in.
    pub fn open(netns: Option<&str>) -> Result<Self, ApplyError> {
        let Some(ns) = netns else { return Self::open_here() };
        let path = format!("/run/netns/{ns}");
        std::thread::scope(|s| {
            s.spawn(|| {
                let f = std::fs::File::open(&path).map_err(|e| failed(&path, e))?;
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&f),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| failed(&format!("setns {path}"), e))?;
                Self::open_here()
            })
            .join()
            .unwrap_or_else(|_| Err(ApplyError::Rejected("netlink thread panicked".into())))
        })
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
        Ok(Self { fd, seq: 0 })
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
        let mut rbuf = vec![0u8; 64 * 1024];
        let mut failures = vec![];
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
    fn ranges_become_start_and_end_elements_as_nft_sends_them() {
        let e = Element::parse("endpoints-X-a/b/tcp/p", "32768-65535", Some("10.2.0.0 . 80")).unwrap();
        assert_eq!(e[0].key, vec![0, 0, 0x80, 0]);
        assert_eq!(e[0].data.as_deref(), Some(&[10, 2, 0, 0, 0, 80, 0, 0][..]));
        assert_eq!(e[1], Element { key: vec![0, 1, 0, 0], data: None, interval_end: true });
        let h = Element::parse(crate::render::HAIRPIN_SET, "10.1.0.2 . 10.1.0.2", None).unwrap();
        assert_eq!(h[0].key, vec![10, 1, 0, 2, 10, 1, 0, 2]);
        assert!(Element::parse("service-ips", "10.96.0.1 . tcp . 80", Some("goto x")).is_none(), "not encoded here");
        assert!(Element::parse("endpoints-X", "9-3", Some("10.0.0.1 . 80")).is_none());
        assert!(Element::parse("endpoints-X", "0-1", Some("10.0.0.1:80")).is_none());
    }

    #[test]
    fn a_batch_is_framed_and_every_change_is_acknowledged() {
        let add = Element::parse("endpoints-X", "0-65535", Some("10.0.0.1 . 80")).unwrap();
        let (buf, acked) = batch("skiff-proxy", &[SetChange { set: "endpoints-X".into(), delete: vec![], add }], 0);
        assert_eq!(acked, vec![(1, "add 2 elements of endpoints-X".to_string())], "one message, acknowledged");
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
        assert!(text.contains("skiff-proxy\0") && text.contains("endpoints-X\0"));
    }
}
