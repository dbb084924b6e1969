//! A failed accept does not end the worker: out of file descriptors
//! (EMFILE), the accept loop logs, pauses and retries, and takes the
//! waiting CVM once a descriptor is free again.
//!
//! The only test in its binary: it lowers this process's descriptor limit.

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use talaria_gpu_worker::listen::accept_next;
use talaria_transport::TcpWorkerListener;

fn nofile() -> libc::rlimit {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r
}

fn set_nofile(r: libc::rlimit) {
    // SAFETY: setrlimit reads the struct we own; lowering the soft limit
    // (and restoring it, below the unchanged hard limit) is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn accept_survives_running_out_of_descriptors() {
    let listener = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (tx, rx) = mpsc::channel();

    let saved = nofile();
    set_nofile(libc::rlimit { rlim_cur: 0, ..saved });
    let emfile = std::fs::File::open("/dev/null").map(|_| ()).unwrap_err();
    let acceptor = std::thread::spawn(move || {
        let sock = accept_next(&listener, Duration::from_millis(20));
        tx.send(sock.peer_addr().unwrap()).unwrap();
    });
    // Every accept fails meanwhile; the loop must keep waiting.
    let early = rx.recv_timeout(Duration::from_millis(400));
    set_nofile(saved);
    assert_eq!(emfile.raw_os_error(), Some(libc::EMFILE), "the test could not exhaust descriptors: {emfile}");
    assert!(early.is_err(), "accepted with no descriptor free: {early:?}");

    let peer = rx.recv_timeout(Duration::from_secs(10)).expect("the accept loop gave up instead of retrying");
    assert_eq!(peer, client.local_addr().unwrap());
    acceptor.join().unwrap();
}
