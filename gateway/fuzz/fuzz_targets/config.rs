//! Configuration: a TOML file overlaid with `RINGCHAT_*` environment overrides, as a
//! gateway process loads it (`Settings::from_toml_and_env`: the core's sections, then the
//! gateway's own `[gateway]` section, each validated).
//!
//! Input, in one of two forms (`corpus/config/seed-*` has both):
//! - a file and overrides: the TOML text, a NUL byte, then `KEY=VALUE` lines. Keys outside
//!   the `RINGCHAT_` namespace get the prefix, so every line is an override;
//! - one setting, both ways: byte 0x01, a byte that picks a setting, then its value as an
//!   operator would write it. The setting is loaded once from a file (`[section] key = ...`,
//!   the value as that setting's TOML type) and once from `RINGCHAT_SECTION__KEY=value`.
//!
//! Properties besides "no panic":
//! - a loaded config validates;
//! - it serializes and loads back to the same config;
//! - overriding any scalar setting through the environment with the value it already has
//!   (as an operator would write it: a string as is, a number in decimal, a list
//!   comma-separated) loads and changes nothing;
//! - a setting given in the file or in the environment loads the same (or fails both ways).
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use im_gateway::config::{GatewayConfig, Settings};
use ringchat_core::Config;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let [1, pick, value @ ..] = data {
        return one_setting_both_ways(*pick, value);
    }
    let (toml_part, env_part) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(toml_text) = std::str::from_utf8(toml_part) else {
        return;
    };
    let env: HashMap<String, String> = String::from_utf8_lossy(env_part)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let key = if k.starts_with("RINGCHAT_") {
                k.to_string()
            } else {
                format!("RINGCHAT_{k}")
            };
            (key, v.to_string())
        })
        .collect();

    let Ok(settings) = Settings::from_toml_and_env(toml_text, &env) else {
        return;
    };
    settings.config.validate().expect("a loaded config validates");
    settings.gateway.validate().expect("a loaded gateway section validates");
    let as_json = to_json(&settings);

    let value = toml::Value::try_from(&settings.config).expect("a config serializes to TOML");
    let back: Config = value.try_into().expect("a serialized config loads");
    let gateway = toml::Value::try_from(&settings.gateway).expect("the gateway's serialize");
    let back_gateway: GatewayConfig = gateway.try_into().expect("the gateway's load back");
    let back = Settings {
        config: back,
        gateway: back_gateway,
    };
    assert_eq!(to_json(&back), as_json);

    // all at once (one more load), then one by one to name the culprit
    let all = overrides(&as_json);
    let mut env2 = env.clone();
    env2.extend(all.iter().cloned());
    if let Ok(c) = Settings::from_toml_and_env(toml_text, &env2) {
        if to_json(&c) == as_json {
            return;
        }
    }
    for (key, value) in all {
        let mut env2 = env.clone();
        env2.insert(key.clone(), value.clone());
        match Settings::from_toml_and_env(toml_text, &env2) {
            Ok(c) => assert_eq!(
                to_json(&c),
                as_json,
                "{key}={value:?} changed the config"
            ),
            Err(e) => panic!("{key}={value:?}, the value it already has, is refused: {e}"),
        }
    }
    panic!("overriding every setting with its own value changes the config");
});

/// Every setting as JSON: the core's sections with the gateway's typed one.
fn to_json(s: &Settings) -> Value {
    let mut v = serde_json::to_value(&s.config).expect("a config serializes");
    v["gateway"] = serde_json::to_value(&s.gateway).expect("the gateway's serialize");
    v
}

/// `RINGCHAT_SECTION__KEY` and the current value as an operator writes it, for every
/// scalar and list setting.
fn overrides(config: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(sections) = config.as_object() else {
        return out;
    };
    for (section, fields) in sections {
        let Some(fields) = fields.as_object() else {
            continue;
        };
        for (key, v) in fields {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Array(items) => {
                    let items: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                    let Some(items) = items else { continue };
                    // only lists a comma-separated string can say
                    if items
                        .iter()
                        .any(|s| s.is_empty() || s.contains(',') || s.trim() != *s)
                    {
                        continue;
                    }
                    items.join(",")
                }
                _ => continue,
            };
            out.push((
                format!(
                    "RINGCHAT_{}__{}",
                    section.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                ),
                value,
            ));
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    Integer,
    Boolean,
    List,
}

/// Every scalar and list setting: (section, key, kind), from the defaults.
fn settings() -> &'static [(String, String, Kind)] {
    static SETTINGS: OnceLock<Vec<(String, String, Kind)>> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let defaults = to_json(&Settings::default());
        let mut out = Vec::new();
        for (section, fields) in defaults.as_object().unwrap() {
            for (key, v) in fields.as_object().unwrap() {
                let kind = match v {
                    Value::String(_) => Kind::Text,
                    Value::Number(_) => Kind::Integer,
                    Value::Bool(_) => Kind::Boolean,
                    Value::Array(_) => Kind::List,
                    _ => continue,
                };
                out.push((section.clone(), key.clone(), kind));
            }
        }
        out
    })
}

fn one_setting_both_ways(pick: u8, value: &[u8]) {
    let all = settings();
    let (section, key, kind) = &all[pick as usize % all.len()];
    let value = String::from_utf8_lossy(value);
    let literal = match kind {
        Kind::Text => toml_string(&value),
        Kind::Integer => match value.parse::<i64>() {
            Ok(n) => n.to_string(),
            Err(_) => return, // a file cannot say it either
        },
        Kind::Boolean if value == "true" || value == "false" => value.to_string(),
        Kind::Boolean => return,
        Kind::List => {
            let items: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(toml_string)
                .collect();
            format!("[{}]", items.join(", "))
        }
    };
    let file = format!("[{section}]\n{key} = {literal}\n");
    let from_file = Settings::from_toml_and_env(&file, &HashMap::new());
    let name = format!(
        "RINGCHAT_{}__{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    );
    let env = HashMap::from([(name.clone(), value.to_string())]);
    let from_env = Settings::from_toml_and_env("", &env);
    match (&from_file, &from_env) {
        (Ok(a), Ok(b)) => assert_eq!(
            to_json(a),
            to_json(b),
            "{name}={value:?} loads otherwise than {file:?}"
        ),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("{file:?} loads, {name}={value:?} is refused: {e}"),
        (Err(e), Ok(_)) => panic!("{name}={value:?} loads, {file:?} is refused: {e}"),
    }
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
