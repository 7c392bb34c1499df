//! The offline verifier for the browser page (`web/index.html`): `quorate_verify` behind three
//! C-ABI exports, with no JavaScript bindings generator and nothing fetched at run time.
//!
//! The page writes one request into the module's memory and reads one JSON response back:
//!
//! 1. `qv_input(len) -> ptr`: the module keeps a buffer of `len` bytes and returns its address;
//!    the page copies the request there.
//! 2. `qv_verify() -> len`: verifies the request; returns the length of the response.
//! 3. `qv_output() -> ptr`: the address of the response (UTF-8 JSON); `qv_output_len()` its
//!    length, also after a trap.
//!
//! A request is a little-endian `u32` header length, a JSON header, then the bytes of every
//! file in header order:
//!
//! ```json
//! {"now": 1767225600,
//!  "roster": {"name": "roster.cose", "len": 812}, "admin": {"name": "admin.pub", "len": 113},
//!  "trust": [{"name": "node-1.key.pub", "len": 113}],
//!  "files": [{"name": "receipts/mlp-node-1.cose", "len": 640}]}
//! ```
//!
//! `roster` with `admin`, or `trust`, or both, as `quorate verify --roster R --admin A` and
//! `--trust K`. `files` are the artefacts as `quorate verify` would be given them, directories
//! already expanded by the page into their `*.cose`, `*.qlog`, `*.qchain` and `*.bundle`
//! files, plus any `transcript.cbor` and `members/*.cose` kept beside an aggregate receipt
//! (a `transcript.cbor` is only looked up, never verified itself). The response is
//! `{"ok": bool, "report": …, "lines": […], "notes": […]}` where `report` is exactly what
//! `quorate verify --json` prints and `lines` what `quorate verify` prints, or
//! `{"ok": false, "error": "…"}` when the command would stop with that error.

use std::cell::RefCell;

use quorate_verify::named::{Artefact, Keys, beside_in, parse_public_key, verify_artefacts};
use serde_json::{Value, json};

/// Largest request accepted: 1 GiB, the largest audit log a verifier reads.
pub const MAX_REQUEST_LEN: usize = 1 << 30;
/// Largest JSON header of a request.
pub const MAX_HEADER_LEN: usize = 16 << 20;

thread_local! {
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Makes room for a request of `len` bytes and returns where the page must write it (null
/// when `len` is larger than [`MAX_REQUEST_LEN`]).
#[allow(unsafe_code)] // `no_mangle` is the only unsafe attribute: it exports the symbol.
#[unsafe(no_mangle)]
pub extern "C" fn qv_input(len: usize) -> *mut u8 {
    if len > MAX_REQUEST_LEN {
        return std::ptr::null_mut();
    }
    INPUT.with(|i| {
        let mut i = i.borrow_mut();
        *i = vec![0; len];
        i.as_mut_ptr()
    })
}

/// Verifies the request written at [`qv_input`]'s address; returns the response length.
#[allow(unsafe_code)] // `no_mangle` is the only unsafe attribute: it exports the symbol.
#[unsafe(no_mangle)]
pub extern "C" fn qv_verify() -> usize {
    // A panic aborts the module (wasm32 has no unwinding): leave its message as the response,
    // so the page can say what went wrong (see `qv_output_len`).
    std::panic::set_hook(Box::new(|info| {
        let response = json!({"ok": false, "error": format!("the verifier failed: {info}")});
        OUTPUT.with(|o| *o.borrow_mut() = response.to_string().into_bytes());
    }));
    let request = INPUT.with(|i| std::mem::take(&mut *i.borrow_mut()));
    let response = respond(&request).to_string().into_bytes();
    OUTPUT.with(|o| {
        let mut o = o.borrow_mut();
        *o = response;
        o.len()
    })
}

/// The length of the last response (also after a trap, when `qv_verify` returned nothing).
#[allow(unsafe_code)] // `no_mangle` is the only unsafe attribute: it exports the symbol.
#[unsafe(no_mangle)]
pub extern "C" fn qv_output_len() -> usize {
    OUTPUT.with(|o| o.borrow().len())
}

/// Where the last response is.
#[allow(unsafe_code)] // `no_mangle` is the only unsafe attribute: it exports the symbol.
#[unsafe(no_mangle)]
pub extern "C" fn qv_output() -> *const u8 {
    OUTPUT.with(|o| o.borrow().as_ptr())
}

/// The response to one request (see the crate documentation).
pub fn respond(request: &[u8]) -> Value {
    match verify_request(request) {
        Ok(v) => v,
        Err(e) => json!({"ok": false, "error": e}),
    }
}

struct Named<'a> {
    name: String,
    bytes: &'a [u8],
}

fn verify_request(request: &[u8]) -> Result<Value, String> {
    if request.len() > MAX_REQUEST_LEN {
        return Err(format!(
            "the request is {} bytes; the limit is {MAX_REQUEST_LEN}",
            request.len()
        ));
    }
    let (len, rest) = request
        .split_first_chunk::<4>()
        .ok_or("malformed request: shorter than its header length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_HEADER_LEN || len > rest.len() {
        return Err(format!(
            "malformed request: a header of {len} bytes does not fit"
        ));
    }
    let (header, mut blobs) = rest.split_at(len);
    let header: Value =
        serde_json::from_slice(header).map_err(|e| format!("malformed request header: {e}"))?;
    let mut take = |entry: &Value, what: &str| -> Result<Named<'_>, String> {
        let name = entry["name"]
            .as_str()
            .ok_or_else(|| format!("malformed request header: {what} has no name"))?;
        let n = entry["len"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n <= blobs.len())
            .ok_or_else(|| {
                format!("malformed request header: the length of {name} does not fit")
            })?;
        let (bytes, tail) = blobs.split_at(n);
        blobs = tail;
        Ok(Named {
            name: name.to_string(),
            bytes,
        })
    };
    let now = header["now"]
        .as_u64()
        .ok_or("malformed request header: no \"now\" (Unix seconds)")?;
    let roster = match &header["roster"] {
        Value::Null => None,
        v => Some(take(v, "the roster")?),
    };
    let admin = match &header["admin"] {
        Value::Null => None,
        v => Some(take(v, "the admin key")?),
    };
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match &header[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => Ok(a.clone()),
            _ => Err(format!("malformed request header: {key:?} is not a list")),
        }
    };
    let trust = list("trust")?
        .iter()
        .map(|v| take(v, "a trusted key"))
        .collect::<Result<Vec<_>, _>>()?;
    let files = list("files")?
        .iter()
        .map(|v| take(v, "a file"))
        .collect::<Result<Vec<_>, _>>()?;
    if !blobs.is_empty() {
        return Err(format!(
            "malformed request: {} bytes after the last file",
            blobs.len()
        ));
    }

    let mut keys = Keys::default();
    for k in &trust {
        keys.trust(parse_public_key(&k.name, k.bytes)?, &k.name);
    }
    match (roster, admin) {
        (Some(r), Some(a)) => {
            let admin = parse_public_key(&a.name, a.bytes)?;
            keys.add_roster(&r.name, r.bytes, &admin, now)?;
        }
        (Some(_), None) => return Err("a roster needs the roster authority's key (admin)".into()),
        (None, Some(_)) => return Err("the roster authority's key (admin) needs a roster".into()),
        (None, None) if trust.is_empty() => {
            return Err(
                "no trusted keys: give a roster and its authority's key, or node keys".into(),
            );
        }
        (None, None) => {}
    }
    let artefacts: Vec<Artefact> = files
        .iter()
        .filter(|f| !is_transcript(&f.name))
        .map(|f| Artefact {
            label: f.name.clone(),
            bytes: Ok(f.bytes.to_vec()),
        })
        .collect();
    let all = files.iter().map(|f| (f.name.as_str(), f.bytes));
    let beside = |label: &str| beside_in(all.clone(), label);
    let report = verify_artefacts(&artefacts, &keys, &beside)?;
    Ok(json!({
        "ok": report.ok,
        "report": report.json,
        "lines": report.lines,
        "notes": keys.notes,
    }))
}

fn is_transcript(name: &str) -> bool {
    name.rsplit(['/', '\\']).next() == Some("transcript.cbor")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: &Value, blobs: &[&[u8]]) -> Vec<u8> {
        let h = header.to_string().into_bytes();
        let mut out = (h.len() as u32).to_le_bytes().to_vec();
        out.extend(h);
        for b in blobs {
            out.extend_from_slice(b);
        }
        out
    }

    fn error_of(v: &Value) -> &str {
        v["error"].as_str().unwrap_or("")
    }

    #[test]
    fn a_truncated_request_is_refused_with_a_reason() {
        assert!(error_of(&respond(&[1, 0])).contains("shorter than its header length"));
        assert!(error_of(&respond(&[200, 0, 0, 0, b'{'])).contains("does not fit"));
    }

    #[test]
    fn a_file_longer_than_the_request_is_refused() {
        let r = request(
            &json!({"now": 0, "trust": [], "files": [{"name": "a.cose", "len": 10}]}),
            &[b"abc"],
        );
        assert!(error_of(&respond(&r)).contains("the length of a.cose does not fit"));
    }

    #[test]
    fn a_request_without_keys_is_refused() {
        let r = request(
            &json!({"now": 0, "files": [{"name": "a.cose", "len": 3}]}),
            &[b"abc"],
        );
        assert!(error_of(&respond(&r)).contains("no trusted keys"));
    }

    #[test]
    fn a_key_that_is_neither_pem_nor_hex_is_refused_by_name() {
        let r = request(
            &json!({"now": 0, "trust": [{"name": "k.pub", "len": 5}],
                    "files": [{"name": "a.cose", "len": 3}]}),
            &[b"hello", b"abc"],
        );
        assert!(error_of(&respond(&r)).starts_with("public key k.pub"));
    }

    #[test]
    fn garbage_under_a_trusted_key_is_reported_malformed_like_the_cli() {
        let key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let r = request(
            &json!({"now": 0, "trust": [{"name": "keys/n.pub", "len": 64}],
                    "files": [{"name": "a.cose", "len": 3}]}),
            &[key.as_bytes(), b"abc"],
        );
        let v = respond(&r);
        assert_eq!(v["ok"], false);
        assert_eq!(v["report"]["receipts"][0]["path"], "a.cose");
        assert_eq!(v["report"]["receipts"][0]["error"], "malformed");
        assert_eq!(v["lines"][1], "0 of 1 receipts verified");
    }

    #[test]
    fn nothing_to_verify_is_the_clis_error() {
        let key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let r = request(
            &json!({"now": 0, "trust": [{"name": "n.pub", "len": 64}], "files": []}),
            &[key.as_bytes()],
        );
        assert!(error_of(&respond(&r)).starts_with("no receipt files found"));
    }
}
