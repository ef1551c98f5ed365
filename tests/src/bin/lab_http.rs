//! The lab's backend: a small HTTP/1.1 server that answers every request with
//! its own name, so a client can see which backend served it. Keep-alive is
//! supported, so one connection can make many requests.
//!
//! A request with a body (an upload) is read whole and answered with
//! "NAME received LENGTH".
//!
//! `/healthz` answers "healthy" unless the `--control` file (re-read on every
//! request) says otherwise: a status code such as `500`, `hang` (accept, read,
//! never answer), or `sick` (200 with a body lacking "healthy"). `slow N`
//! delays every answer (health and normal) by N milliseconds.
//!
//! Each listening address also answers UDP: any datagram gets the name back.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    thread,
};

fn main() {
    let mut name = String::from("backend");
    let mut listen = Vec::new();
    let mut control: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--name" => name = args.next().expect("--name NAME"),
            "--listen" => listen.push(args.next().expect("--listen ADDR:PORT")),
            "--control" => control = Some(args.next().expect("--control FILE")),
            _ => {
                eprintln!(
                    "usage: lab-http --name NAME --listen ADDR:PORT [--listen ...] [--control FILE]"
                );
                std::process::exit(2);
            }
        }
    }
    if listen.is_empty() {
        listen.push("0.0.0.0:80".into());
    }
    let mut handles = Vec::new();
    for addr in listen {
        let l = listen_on(&addr);
        let name = name.clone();
        let control = control.clone();
        eprintln!("lab-http {name}: listening on {addr}");
        let udp = udp_on(&addr);
        let udp_name = name.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((_, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(udp_name.as_bytes(), from);
            }
        });
        handles.push(thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let name = name.clone();
                let control = control.clone();
                thread::spawn(move || serve(conn, &name, control.as_deref()));
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

fn listen_on(addr: &str) -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let sa: std::net::SocketAddr = addr.parse().expect("ADDR:PORT");
    let s = Socket::new(Domain::for_address(sa), Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    if sa.is_ipv6() {
        // An IPv6 wildcard must not also claim IPv4, or it clashes with 0.0.0.0.
        s.set_only_v6(true).expect("IPV6_V6ONLY");
    }
    s.bind(&sa.into())
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    s.listen(1024).expect("listen");
    s.into()
}

/// A UDP socket on `addr` (an IPv6 wildcard only for IPv6, as for TCP).
fn udp_on(addr: &str) -> std::net::UdpSocket {
    use socket2::{Domain, Socket, Type};
    let sa: std::net::SocketAddr = addr.parse().expect("ADDR:PORT");
    let s = Socket::new(Domain::for_address(sa), Type::DGRAM, None).expect("socket");
    if sa.is_ipv6() {
        s.set_only_v6(true).expect("IPV6_V6ONLY");
    }
    s.bind(&sa.into())
        .unwrap_or_else(|e| panic!("bind udp {addr}: {e}"));
    s.into()
}

/// What /healthz should do now.
fn health_mode(control: Option<&str>) -> String {
    control
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn serve(conn: TcpStream, name: &str, control: Option<&str>) {
    let mut out = match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut close = line.contains("HTTP/1.0");
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                close = lower.contains("close");
            }
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        // An upload (POST with a body): read all of it and say how much.
        if length > 0 {
            let mut body = vec![0u8; length];
            if std::io::Read::read_exact(&mut r, &mut body).is_err() {
                return;
            }
        }
        let health = line.split_whitespace().nth(1) == Some("/healthz");
        let mode = health_mode(control);
        if let Some(ms) = mode
            .strip_prefix("slow ")
            .and_then(|m| m.trim().parse().ok())
        {
            thread::sleep(std::time::Duration::from_millis(ms));
        }
        let (status, body) = if health {
            match mode.as_str() {
                m if m.is_empty() || m == "ok" || m.starts_with("slow ") => {
                    ("200 OK".to_string(), "healthy\n".to_string())
                }
                "sick" => ("200 OK".into(), "sick\n".into()),
                "hang" => {
                    // Bounded, so a forgotten check never pins a thread forever.
                    thread::sleep(std::time::Duration::from_secs(120));
                    return;
                }
                code => (format!("{code} Lab"), "failing\n".into()),
            }
        } else if length > 0 {
            ("200 OK".into(), format!("{name} received {length}\n"))
        } else {
            ("200 OK".into(), format!("{name}\n"))
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        if out.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}
