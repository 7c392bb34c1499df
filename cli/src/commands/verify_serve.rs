//! `quorate verify --serve ADDR`: serves the verifier page (`web/dist/`, built by
//! `scripts/build-web`) over plain HTTP on a loopback address, so a browser can open it from
//! `http://127.0.0.1:PORT/`. The page verifies everything locally; this server only hands out
//! its few static files and answers nothing else.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

/// The files of the page, with their content types. Nothing else is served.
const FILES: &[(&str, &str)] = &[
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("verifier-wasm.js", "text/javascript; charset=utf-8"),
    ("quorate_verify.wasm", "application/wasm"),
];

/// Largest request head read from a browser.
const MAX_REQUEST_HEAD: usize = 16 << 10;

/// The page's folder when `--web-dir` is not given: `web/dist/` of the source tree.
pub fn default_web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist")
}

/// Serves the page on `addr` until the process is stopped. Refuses any address that is not
/// loopback: the server has no authentication and is meant for this machine only.
pub fn run(addr: &str, web_dir: &Path) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--serve takes IP:PORT, e.g. 127.0.0.1:8080, not {addr:?}"))?;
    if !addr.ip().is_loopback() {
        bail!(
            "--serve refuses {addr}: the page is served on a loopback address only (127.0.0.1 or [::1])"
        );
    }
    let mut pages = Vec::new();
    for (name, content_type) in FILES {
        let path = web_dir.join(name);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read {}: build the page first with scripts/build-web, or give --web-dir",
                path.display()
            )
        })?;
        pages.push((*name, *content_type, bytes));
    }
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    println!("serving the verifier page on http://{local}/ (Ctrl-C to stop)");
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if let Err(e) = answer(stream, &pages) {
            eprintln!("verify --serve: {e:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Answers one HTTP/1.1 request (`GET` or `HEAD` of one of the page's files) and closes.
fn answer(stream: TcpStream, pages: &[(&str, &str, Vec<u8>)]) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(MAX_REQUEST_HEAD as u64);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the rest of the head so the browser is not cut off mid-request.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let name = path.strip_prefix('/').unwrap_or(path);
    let name = if name.is_empty() { "index.html" } else { name };
    let found = pages.iter().find(|(n, _, _)| *n == name);
    let (status, content_type, body): (&str, &str, &[u8]) = match (method, found) {
        ("GET" | "HEAD", Some((_, t, b))) => ("200 OK", t, b),
        ("GET" | "HEAD", None) => ("404 Not Found", "text/plain", b"not found\n"),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        out.write_all(body)?;
    }
    out.flush()?;
    Ok(())
}
