//! Fuzz targets (issue 13) for HTTP request decoding in the gateway, through
//! its public API only.
//!
//! * `decode_*`: the pure decoders (`request::*`, the query decoder, unseal
//!   key decoding) on arbitrary and hostile input: never a panic, errors are
//!   400s, and what decodes decodes right.
//! * `http_*`: raw HTTP/1.1 requests with hostile paths (`..`, `%2F`,
//!   `%00`, NUL, `//`, very long segments), methods and bodies (deep JSON,
//!   huge numbers, invalid UTF-8) sent over TCP to a real gateway whose
//!   services are unreachable: every request gets an answer, in Vault's
//!   shape, with the right status, and the process stays up.
//!
//! Cases per target: `BULWARK_FUZZ_CASES` (small by default; see FUZZING.md).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method};
use base64::Engine as _;
use bulwark_gateway::request::{self, client_token, json_object, operation, Fields, Operation};
use bulwark_gateway::{decode_path, decode_unseal_key, url_decode_pairs};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

/// `BULWARK_FUZZ_CASES` cases, else `default`; no failure files (failures
/// become explicit regression tests).
fn cfg(default: u32) -> Config {
    let cases = std::env::var("BULWARK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `f` on a thread with a tokio worker's stack (2 MiB), where the
/// gateway decodes bodies.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

// ---------------------------------------------------------------------------
// Pure decoders.
// ---------------------------------------------------------------------------

/// JSON values with the shapes request fields take, hostile ones included.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(
            &[
                "1h30m",
                "-1",
                "1e309",
                "9999999999999999999h",
                "18446744073709551615",
                "9223372036854775808",
                "true",
                "T",
                "yes",
                " 42 ",
                "a, b,,c ",
                "",
                "\u{0}",
            ][..]
        )
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Checks every `Fields` accessor on `{"k": value}` against what it
/// promises.
fn check_fields(value: Value) -> Result<(), TestCaseError> {
    let mut map = Map::new();
    map.insert("k".into(), value.clone());
    let f = Fields(&map);
    let is_400 = |e: &bulwark_gateway::error::ApiError| e.status == 400 && !e.errors.is_empty();

    match f.string("k") {
        Ok(s) => match &value {
            Value::Null => prop_assert_eq!(s, None),
            Value::String(v) => prop_assert_eq!(s.as_deref(), Some(v.as_str())),
            Value::Number(n) => prop_assert_eq!(s, Some(n.to_string())),
            Value::Bool(b) => prop_assert_eq!(s, Some(b.to_string())),
            _ => prop_assert!(false, "string() took {}", value),
        },
        Err(e) => prop_assert!(is_400(&e) && matches!(value, Value::Array(_) | Value::Object(_))),
    }

    let want_bool = match &value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => request::parse_bool(s),
        _ => None,
    };
    match f.bool("k") {
        Ok(b) => prop_assert_eq!(b, if value.is_null() { None } else { want_bool }),
        Err(e) => prop_assert!(is_400(&e) && want_bool.is_none()),
    }

    let want_u32 = match &value {
        Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
        Value::String(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    };
    match f.u32("k") {
        Ok(v) => prop_assert_eq!(v, if value.is_null() { None } else { want_u32 }),
        Err(e) => prop_assert!(is_400(&e) && want_u32.is_none()),
    }

    let want_secs = bulwark_shared::ttl::parse_duration_value(&value)
        .ok()
        .map(|d| d.map(|d| d.as_secs()));
    match f.duration_secs("k") {
        Ok(v) => prop_assert_eq!(Some(v), want_secs),
        Err(e) => prop_assert!(is_400(&e) && want_secs.is_none()),
    }
    match f.secs(&["nope", "k"]) {
        Ok(v) => {
            prop_assert_eq!(v.map(|s| s as u64), want_secs.flatten());
            prop_assert!(v.is_none_or(|s| s >= 0));
        }
        Err(e) => prop_assert!(
            is_400(&e)
                && (want_secs.is_none()
                    || want_secs.flatten().is_some_and(|s| s > i64::MAX as u64))
        ),
    }

    match f.string_list("k") {
        Ok(list) => match &value {
            Value::Null => prop_assert!(list.is_empty()),
            Value::String(s) => {
                prop_assert!(list.iter().all(|x| !x.is_empty() && x.trim() == x));
                prop_assert_eq!(
                    list.len(),
                    s.split(',').filter(|x| !x.trim().is_empty()).count()
                );
            }
            Value::Array(items) => prop_assert_eq!(list.len(), items.len()),
            _ => prop_assert!(false, "string_list() took {}", value),
        },
        Err(e) => prop_assert!(is_400(&e)),
    }
    if let Err(e) = f.string_map("k") {
        prop_assert!(is_400(&e));
    }
    prop_assert_eq!(f.present("k"), !value.is_null());
    Ok(())
}

/// Bodies: JSON objects, near-JSON, and raw bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::btree_map("[a-z]{1,3}", json_value(), 0..5).prop_map(|m| Value::Object(
            m.into_iter().collect()
        )
        .to_string()
        .into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(
            &[
                "{\"a\": 1e309}",
                "{\"a\": -1e309}",
                "{\"a\": 123456789012345678901234567890}",
                "{\"a\": 1, \"a\": 2}",
                "{\"a\": \"\\ud800\"}",
                "{\"a\": \"\u{0}\"}",
                "{\"a\" 1}",
                "{}  {}",
                "\u{feff}{}",
                "",
                "   ",
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
        (prop::collection::vec(any::<u8>(), 1..8), any::<usize>()).prop_map(|(junk, at)| {
            // Invalid UTF-8 inside an otherwise valid object.
            let mut b = b"{\"key\": \"value\"}".to_vec();
            let at = at % b.len();
            b.splice(at..at, junk.into_iter().map(|x| x | 0x80));
            b
        }),
    ]
}

fn deep_json(depth: usize, kind: u8) -> Vec<u8> {
    match kind % 4 {
        0 => "[".repeat(depth).into_bytes(),
        1 => format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
        2 => "{\"a\":".repeat(depth).into_bytes(),
        _ => format!(
            "{{\"k\":{}null{}}}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        )
        .into_bytes(),
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(cfg(2048))]

    #[test]
    fn decode_bodies(body in body()) {
        let parsed: Result<Value, _> = serde_json::from_slice(&body);
        match json_object(&body) {
            Ok(map) => {
                let blank = body.iter().all(u8::is_ascii_whitespace);
                prop_assert!(blank || matches!(parsed, Ok(Value::Object(ref m)) if *m == map));
            }
            Err(e) => {
                prop_assert_eq!(e.status, 400);
                prop_assert!(e.errors.iter().all(|m| m.starts_with("failed to parse JSON input")));
                prop_assert!(!matches!(parsed, Ok(Value::Object(_))));
            }
        }
    }

    #[test]
    fn decode_fields(value in json_value()) {
        check_fields(value)?;
    }

    #[test]
    fn decode_query_round_trips(pairs in prop::collection::vec((".{1,12}", ".{0,12}"), 0..6)) {
        let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        prop_assert_eq!(url_decode_pairs(&q.join("&")), pairs);
    }

    /// Request paths: escapes decode to exactly what was encoded (`/`
    /// included); `+` is not a space in a path.
    #[test]
    fn decode_path_round_trips(path in any::<String>()) {
        let encoded: String = path
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~/+".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        prop_assert_eq!(decode_path(&encoded), Some(path));
    }

    #[test]
    fn decode_path_survives_garbage(raw in prop_oneof![
        any::<String>(),
        "([a-z/.+]|%[0-9a-fA-FzZ]{0,2}|%[89a-fA-F][0-9a-fA-F]|%2[eEfF]|%00){0,40}",
    ]) {
        match decode_path(&raw) {
            Some(p) => prop_assert!(p.len() <= raw.len()),
            // Only escapes can make a `str` invalid UTF-8.
            None => prop_assert!(raw.contains('%')),
        }
    }

    #[test]
    fn decode_query_survives_garbage(q in prop_oneof![
        any::<String>(),
        "([a-z%=&+]|%[0-9a-fA-FzZ]{0,2}|%[89a-fA-F][0-9a-fA-F]){0,40}",
    ]) {
        for (k, v) in url_decode_pairs(&q) {
            // Decoding never grows the text (each escape is 3 bytes → ≤ 3).
            prop_assert!(k.len() + v.len() <= q.len() * 3);
        }
    }

    #[test]
    fn decode_operations(
        method in prop_oneof![
            prop::sample::select(&["GET", "LIST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "get"][..]).prop_map(String::from),
            "[A-Z!#$%&'*+.^_`|~-]{1,12}",
        ],
        list in prop::option::of(prop_oneof![
            prop::sample::select(&["true", "false", "1", "0", "t", "F", "TRUE", "True", "yes", ""][..]).prop_map(String::from),
            any::<String>(),
        ]),
    ) {
        let m = Method::from_bytes(method.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let query: Vec<(String, String)> = list.iter().map(|v| ("list".to_string(), v.clone())).collect();
        let got = operation(&m, &query);
        let flag = list.as_deref().map(request::parse_bool);
        match (m.as_str(), flag) {
            ("GET", None | Some(Some(false))) => prop_assert_eq!(got.ok(), Some(Operation::Read)),
            ("GET", Some(Some(true))) | ("LIST", _) => prop_assert_eq!(got.ok(), Some(Operation::List)),
            ("GET", Some(None)) => prop_assert_eq!(got.map_err(|e| e.status.as_u16()), Err(400)),
            ("POST" | "PUT", _) => prop_assert_eq!(got.ok(), Some(Operation::Write)),
            ("DELETE" | "PATCH" | "HEAD" | "OPTIONS", _) => prop_assert!(got.is_ok()),
            _ => prop_assert_eq!(got.map_err(|e| e.status.as_u16()), Err(405)),
        }
    }

    #[test]
    fn decode_client_tokens(
        vault in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        auth in prop::option::of(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            "(Bearer|bearer|BEARER|Basic) {0,3}[ -~]{0,20}".prop_map(String::into_bytes),
        ]),
    ) {
        let mut h = HeaderMap::new();
        for (name, v) in [("x-vault-token", vault), ("authorization", auth)] {
            if let Some(Ok(v)) = v.map(|v| HeaderValue::from_bytes(&v)) {
                h.insert(name, v);
            }
        }
        if let Some(t) = client_token(&h) {
            prop_assert!(!t.is_empty());
            prop_assert_eq!(t.trim(), t.as_str());
        }
    }

    /// Unseal keys (target 4, decoding half): hex when it decodes to 16–33
    /// bytes, else standard base64; anything else is refused.
    #[test]
    fn decode_unseal_keys(key in prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..70).prop_map(hex::encode),
        prop::collection::vec(any::<u8>(), 0..70).prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        "[0-9a-fA-F=+/]{0,80}",
    ]) {
        let hex = hex::decode(&key).ok().filter(|k| (16..=33).contains(&k.len()));
        let b64 = base64::engine::general_purpose::STANDARD.decode(&key).ok();
        let got = decode_unseal_key(&key).map(|k| k.to_vec());
        prop_assert_eq!(got, hex.or(b64));
    }

    #[test]
    fn decode_unseal_key_round_trips(raw in prop::collection::vec(any::<u8>(), 1..70)) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        prop_assert_eq!(decode_unseal_key(&b64).map(|k| k.to_vec()), Some(raw.clone()));
        if (16..=33).contains(&raw.len()) {
            prop_assert_eq!(decode_unseal_key(&hex::encode(&raw)).map(|k| k.to_vec()), Some(raw));
        }
    }
}

proptest! {
    #![proptest_config(cfg(128))]

    /// serde_json stops at 128 levels: deep bodies are 400s, not a stack
    /// overflow of the worker thread.
    #[test]
    fn decode_deep_json(depth in 1..200_000usize, kind in any::<u8>()) {
        let body = deep_json(depth, kind);
        let status = on_worker_stack(move || json_object(&body).err().map(|e| e.status.as_u16()));
        if depth > 128 {
            prop_assert_eq!(status, Some(400));
        }
    }
}

// ---------------------------------------------------------------------------
// The HTTP listener, end to end (with every service unreachable).
// ---------------------------------------------------------------------------

/// A gateway on 127.0.0.1, with its services at a closed port: the seal
/// looks sealed, so requests are decoded and answered by the gateway alone.
fn gateway() -> SocketAddr {
    static GW: OnceLock<(tokio::runtime::Runtime, SocketAddr)> = OnceLock::new();
    GW.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let addr = rt.block_on(async {
            use bulwark_shared::grpc::connect;
            use bulwark_shared::tls::{InternalCa, ServiceIdentity};
            use bulwark_shared::ServiceName;
            let ca = InternalCa::generate().expect("ca");
            let leaf = ca
                .issue(ServiceName::Gateway, &["localhost".into()], 1)
                .expect("leaf");
            let id = ServiceIdentity::from_pem(
                ServiceName::Gateway,
                leaf.cert_pem,
                leaf.key_pem,
                ca.cert_pem().to_string(),
            );
            let ch = |s| connect(&id, s, "127.0.0.1:1").expect("channel");
            let db = bulwark_shared::storage::Database::connect(
                &bulwark_shared::storage::StorageConfig::SqliteMemory,
            )
            .await
            .expect("db");
            let gw = bulwark_gateway::Gateway::new(
                bulwark_gateway::Upstreams {
                    seal: ch(ServiceName::Seal),
                    auth: ch(ServiceName::Auth),
                    policy: ch(ServiceName::Policy),
                    kv: ch(ServiceName::Kv),
                    audit: ch(ServiceName::Audit),
                    dynamic_db: ch(ServiceName::DynamicDb),
                    pki: ch(ServiceName::Pki),
                    transit: ch(ServiceName::Transit),
                },
                &db,
            )
            .await
            .expect("gateway");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let _db = db;
                bulwark_gateway::serve(listener, gw, std::future::pending()).await
            });
            addr
        });
        (rt, addr)
    })
    .1
}

/// Sends raw bytes, returns (status, body). `None` when the server closed
/// the connection without an answer.
fn exchange(raw: &[u8]) -> Result<Option<(u16, Vec<u8>)>, TestCaseError> {
    let fail = |e: std::io::Error| TestCaseError::fail(format!("i/o: {e}"));
    let mut s = TcpStream::connect(gateway()).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(fail)?;
    // The server may answer (and close) before reading everything. No
    // half-close: hyper drops a connection whose client shut its write side.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(TestCaseError::fail(format!("no answer (hang?): {e}"))),
    }
    if out.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            TestCaseError::fail(format!("not HTTP: {:?}", &text[..text.len().min(80)]))
        })?;
    let body = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => out[p + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok(Some((status, body)))
}

/// Path segments, hostile ones included.
const SEGMENTS: [&str; 24] = [
    "sys",
    "seal-status",
    "unseal",
    "init",
    "secret",
    "data",
    "auth",
    "token",
    "..",
    ".",
    "%2e%2e",
    "%2F",
    "%00",
    "",
    "%",
    "%zz",
    "a+b",
    "%C3%A9",
    "%FF",
    "*",
    "%2e",
    "%2E.",
    "..%2F..",
    "%252e",
];

fn raw_path() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            prop_oneof![
                8 => prop::sample::select(&SEGMENTS[..]).prop_map(|s| s.as_bytes().to_vec()),
                1 => prop::collection::vec(any::<u8>(), 0..6),
                1 => (1..70_000usize).prop_map(|n| vec![b'a'; n]),
            ],
            0..6,
        ),
        prop::option::of(prop::sample::select(
            &["list=true", "list=maybe", "a=%00&b", "%%%"][..],
        )),
    )
        .prop_map(|(segs, query)| {
            let mut p = b"/v1/".to_vec();
            p.extend(segs.join(&b'/'));
            if let Some(q) = query {
                p.push(b'?');
                p.extend_from_slice(q.as_bytes());
            }
            p
        })
}

/// Checks an answer: Vault's error shape on the gateway's errors, and a
/// `.`/`..` segment never routed anywhere.
fn check_answer(path: &[u8], status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!((200..600).contains(&status), "status {}", status);
    if status >= 400 && !body.is_empty() {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| TestCaseError::fail(format!("{status}: body not JSON: {e}")))?;
        prop_assert!(v["errors"].is_array(), "{}: {}", status, v);
    }
    let p = String::from_utf8_lossy(path);
    // The path as the server sees it: no query, no fragment, escapes
    // decoded (so `%2e%2e` is `..`).
    let raw = p
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .strip_prefix("/v1/")
        .unwrap_or("");
    let Some(below) = decode_path(raw) else {
        // Escapes that are not UTF-8: refused (by hyper or the gateway).
        prop_assert!(matches!(status, 400 | 414), "{} on {:?}", status, p);
        return Ok(());
    };
    if below.split('/').any(|s| s == "." || s == "..") {
        // hyper may refuse the request line first (400, or 414 past 64 KiB
        // of URI); the gateway: 404.
        prop_assert!(matches!(status, 400 | 404 | 414), "{} on {:?}", status, p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn http_hostile_paths(
        path in raw_path(),
        method in prop::sample::select(&["GET", "PUT", "POST", "LIST", "DELETE", "PATCH", "HEAD", "BREW"][..]),
    ) {
        let mut raw = format!("{method} ").into_bytes();
        raw.extend_from_slice(&path);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nX-Vault-Token: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        if let Some((status, body)) = exchange(&raw)? {
            check_answer(&path, status, &body)?;
        }
        // The gateway is still up and answering.
        let alive = exchange(b"GET /v1/sys/seal-status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        prop_assert!(alive.as_ref().is_some_and(|(s, _)| *s >= 200), "{:?}", alive);
    }

    #[test]
    fn http_hostile_bodies(
        body in prop_oneof![
            body(),
            (129..100_000usize, any::<u8>()).prop_map(|(d, k)| deep_json(d, k)),
        ],
        path in prop::sample::select(&["/v1/sys/unseal", "/v1/sys/init", "/v1/secret/data/x", "/v1/sys/policies/acl/p"][..]),
    ) {
        let mut raw = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nX-Vault-Token: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let answer = exchange(&raw)?;
        let (status, resp) = answer.ok_or_else(|| TestCaseError::fail("no answer"))?;
        check_answer(path.as_bytes(), status, &resp)?;
        // A body that is not a JSON object is refused before anything else
        // where the gateway itself reads it.
        let object = matches!(serde_json::from_slice::<Value>(&body), Ok(Value::Object(_)))
            || body.iter().all(u8::is_ascii_whitespace);
        if path == "/v1/sys/unseal" && !object {
            prop_assert_eq!(status, 400, "{}", String::from_utf8_lossy(&resp));
        }
    }
}

/// Deep JSON to the one body the gateway reads before any service is asked:
/// a clean 400, and the gateway lives on.
#[test]
fn http_deep_json_is_a_400() {
    for body in [
        deep_json(100_000, 0),
        deep_json(129, 3),
        deep_json(5_000, 2),
    ] {
        let mut raw = format!(
            "PUT /v1/sys/unseal HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let (status, resp) = exchange(&raw).expect("i/o").expect("an answer");
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&resp));
        let v: Value = serde_json::from_slice(&resp).expect("json");
        assert!(
            v["errors"][0]
                .as_str()
                .is_some_and(|m| m.contains("recursion limit")),
            "{v}"
        );
    }
}
