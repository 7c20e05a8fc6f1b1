//! Regression tests for what fuzzing found (`deploy/fuzz.sh`, the targets in
//! `gateway/fuzz`): each test is the minimal input of one finding, through the public API
//! the fuzz target drove, asserting the fixed behaviour.

use std::collections::HashMap;

use im_gateway::http::percent_decode;
use im_gateway::http::request::{parse_head, Parsed, Request};
use ringchat_core::Config;

fn head(raw: &str) -> Request {
    match parse_head(raw.as_bytes(), 16 * 1024) {
        Parsed::Complete(req, n) => {
            assert_eq!(n, raw.len());
            req
        }
        _ => panic!("not a complete head: {raw:?}"),
    }
}

/// http_head: `%` followed by `+` and one hex digit was decoded as a byte, because
/// `u8::from_str_radix` takes a leading `+` sign: `%+1` read as byte 0x01, `%+E` as 0x0E.
/// A percent-escape is `%` and two hex digits (RFC 3986 2.1); anything else is literal,
/// and the `+` then reads as a space like any other `+`.
#[test]
fn percent_escapes_need_two_hex_digits() {
    assert_eq!(percent_decode("%+1"), "% 1");
    assert_eq!(percent_decode("a%+41b"), "a% 41b");
    assert_eq!(percent_decode("%+E%+f"), "% E% f");
    // what already worked keeps working
    assert_eq!(percent_decode("%41%e4%bd%a0+x"), "A你 x");
    assert_eq!(percent_decode("%4"), "%4");
    assert_eq!(percent_decode("%zz%"), "%zz%");
    assert_eq!(percent_decode("%-1"), "%-1");
    // through a query parameter, as `/ws?token=` is read
    let req = head("GET /ws?token=%+41&x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(req.query_param("token").as_deref(), Some("% 41"));
    assert_eq!(req.query_param("x").as_deref(), Some("1"));
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// config: an environment override is typed by guessing from its text (`env_value`:
/// integer, then boolean, then string), not by the setting it overrides, so a string
/// setting whose value looks like a number or a boolean cannot be set from the
/// environment: `RINGCHAT_NODE__ID=7` fails with "invalid type: integer `7`, expected a
/// string" though `[node] id = "7"` in the file is valid, and so does an all-digit
/// `RINGCHAT_AUTH__JWT_SECRET`. The same value must load from either place.
#[test]
fn string_settings_take_numeric_and_boolean_looking_values_from_the_environment() {
    let from_file = Config::from_toml_and_env("[node]\nid = \"7\"\n", &env(&[])).unwrap();
    assert_eq!(from_file.node.id, "7");
    let from_env = Config::from_toml_and_env("", &env(&[("RINGCHAT_NODE__ID", "7")]))
        .expect("RINGCHAT_NODE__ID=7 loads");
    assert_eq!(from_env.node.id, "7");

    let secret = "1234567890123456";
    let c = Config::from_toml_and_env("", &env(&[("RINGCHAT_AUTH__JWT_SECRET", secret)]))
        .expect("an all-digit secret loads");
    assert_eq!(c.auth.jwt_secret.expose(), secret);

    let c = Config::from_toml_and_env("", &env(&[("RINGCHAT_STORE__URL", "true")]))
        .expect("a string setting given as `true` loads as that string");
    assert_eq!(c.store.url, "true");

    // typed settings still read their types from the environment, in the core's sections
    // and in the gateway's own
    let s = im_gateway::config::Settings::from_toml_and_env(
        "",
        &env(&[
            ("RINGCHAT_BUS__PARTITIONS", "3"),
            ("RINGCHAT_GATEWAY__PIN_WORKERS", "true"),
            ("RINGCHAT_GATEWAY__CORS_ORIGINS", "http://a, http://b"),
            ("RINGCHAT_GATEWAY__LOGIC_URL", "http://7:9001"),
        ]),
    )
    .unwrap();
    assert_eq!(s.config.bus.partitions, 3);
    assert!(s.gateway.pin_workers);
    assert_eq!(s.gateway.cors_origins, vec!["http://a", "http://b"]);
    assert_eq!(s.gateway.logic_url, "http://7:9001");
}

/// config (found by the config target in a clean-clone run of 248ddff, input
/// `crash-12121d6d...`): the core does not know the `[gateway]` settings, so it guessed an
/// override's type from its text, and `RINGCHAT_GATEWAY__CORS_ORIGINS=012345` became the
/// number 12345, then the text "12345": not what `cors_origins = ["012345"]` in the file
/// gives. Such overrides now stay text until the gateway's section types them.
#[test]
fn gateway_overrides_keep_their_text_until_the_gateway_types_them() {
    let from_env = im_gateway::config::Settings::from_toml_and_env(
        "",
        &env(&[
            ("RINGCHAT_GATEWAY__CORS_ORIGINS", "012345"),
            ("RINGCHAT_GATEWAY__LISTEN", "127.0.0.1:08080"),
            ("RINGCHAT_GATEWAY__WORKERS", "02"),
        ]),
    )
    .unwrap();
    let from_file = im_gateway::config::Settings::from_toml_and_env(
        "[gateway]\ncors_origins = [\"012345\"]\nlisten = \"127.0.0.1:08080\"\nworkers = 2\n",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(from_env.gateway.cors_origins, vec!["012345"]);
    assert_eq!(
        from_env.gateway.cors_origins,
        from_file.gateway.cors_origins
    );
    assert_eq!(from_env.gateway.listen, from_file.gateway.listen);
    assert_eq!(from_env.gateway.workers, 2);
}
