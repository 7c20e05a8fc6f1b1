//! Configuration: a TOML file overlaid with `RINGCHAT_*` environment overrides
//! (`Config::from_toml_and_env`, then `validate`).
//!
//! Input: the TOML text, a NUL byte, then `KEY=VALUE` lines. Keys outside the `RINGCHAT_`
//! namespace get the prefix, so every line is an override (`corpus/config/seed-*`).
//!
//! Properties besides "no panic":
//! - a loaded config validates;
//! - it serializes and loads back to the same config;
//! - overriding any scalar setting through the environment with the value it already has
//!   (as an operator would write it: a string as is, a number in decimal, a list
//!   comma-separated) loads and changes nothing.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use ringchat_core::Config;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
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

    let Ok(config) = Config::from_toml_and_env(toml_text, &env) else {
        return;
    };
    config.validate().expect("a loaded config validates");
    let as_json = serde_json::to_value(&config).expect("a config serializes");

    let value = toml::Value::try_from(&config).expect("a config serializes to TOML");
    let back: Config = value.try_into().expect("a serialized config loads");
    assert_eq!(serde_json::to_value(&back).unwrap(), as_json);

    // all at once (one more load), then one by one to name the culprit
    let all = overrides(&as_json);
    let mut env2 = env.clone();
    env2.extend(all.iter().cloned());
    if let Ok(c) = Config::from_toml_and_env(toml_text, &env2) {
        if serde_json::to_value(&c).unwrap() == as_json {
            return;
        }
    }
    for (key, value) in all {
        let mut env2 = env.clone();
        env2.insert(key.clone(), value.clone());
        match Config::from_toml_and_env(toml_text, &env2) {
            Ok(c) => assert_eq!(
                serde_json::to_value(&c).unwrap(),
                as_json,
                "{key}={value:?} changed the config"
            ),
            Err(e) => panic!("{key}={value:?}, the value it already has, is refused: {e}"),
        }
    }
    panic!("overriding every setting with its own value changes the config");
});

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
