//! Parsing worker addresses.

use std::path::PathBuf;
use std::time::Duration;

use talaria_transport::{Connection, FrameKind, ShmRing, TransportError, WorkerAddress};

fn parse(s: &str) -> Result<WorkerAddress, TransportError> {
    s.parse()
}

#[test]
fn good_addresses_parse_and_print_back() {
    assert_eq!(parse("shm:/dev/shm/talaria-1.ring").unwrap(), WorkerAddress::Shm(PathBuf::from("/dev/shm/talaria-1.ring")));
    assert_eq!(parse("shm:///dev/shm/x").unwrap(), WorkerAddress::Shm(PathBuf::from("/dev/shm/x")));
    assert_eq!(parse("tcp://127.0.0.1:9000").unwrap(), WorkerAddress::Tcp { host: "127.0.0.1".into(), port: 9000 });
    assert_eq!(parse("tcp://gpu-box.internal:7001/").unwrap(), WorkerAddress::Tcp { host: "gpu-box.internal".into(), port: 7001 });
    assert_eq!(parse("tcp://[::1]:9000").unwrap(), WorkerAddress::Tcp { host: "[::1]".into(), port: 9000 });
    for s in ["shm:/dev/shm/a", "tcp://10.0.0.2:80", "tcp://[fe80::1]:1"] {
        assert_eq!(parse(s).unwrap().to_string(), s);
    }
}

#[test]
fn bad_addresses_say_why() {
    for s in [
        "",
        "shm:",
        "shm://relative/path",
        "tcp://",
        "tcp://host",
        "tcp://:9000",
        "tcp://host:0",
        "tcp://host:70000",
        "tcp://host:port",
        "tcp://::1:9000",
        "tcp://user@host:1",
        "tcp://host/path:1",
        "http://host:1",
        "/dev/shm/x",
    ] {
        match parse(s) {
            Err(TransportError::BadAddress { input, reason }) => {
                assert_eq!(input, s);
                assert!(!reason.is_empty());
            }
            other => panic!("{s:?} gave {other:?}"),
        }
    }
}

#[test]
fn connect_opens_a_shm_region() {
    let (mut creator, path) = ShmRing::create("talaria-addr", 16 * 1024).unwrap();
    let addr = parse(&format!("shm:{}", path.display())).unwrap();
    let mut conn = addr.connect(Duration::from_secs(1)).unwrap();
    conn.send(&talaria_transport::FrameHeader::new(FrameKind::Ping), &[]).unwrap();
    assert_eq!(creator.recv(Some(Duration::from_secs(5))).unwrap().kind, FrameKind::Ping);
}
