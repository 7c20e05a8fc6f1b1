//! The deployment files configure ringchat through `RINGCHAT_<SECTION>__<KEY>` variables
//! and start its binaries by name. A typo in either shows only when a container starts (the
//! config refuses unknown keys), or never: a name without `__` is no override at all, and
//! the loader passes it by. These tests read `deploy/docker/Dockerfile`,
//! `deploy/docker/docker-compose.yml`, every `deploy/k8s/*.yaml` and `deploy/local/up` as
//! text, line by line (no YAML parser: the crate takes no dependency for this), and hold
//! every name they set to the real config loader and every command to the real binaries.
//! `deploy/check-deploy.sh` validates the same files against the compose and Kubernetes
//! schemas.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use im_gateway::config::{GatewayConfig, Settings};
use ringchat_core::Config;

/// The binaries of the image (deploy/docker/Dockerfile).
const BINARIES: [&str; 5] = ["ringchat", "im-gateway", "im-logic", "im-repo", "im-task"];

/// `RINGCHAT_*` names that are read as they are, not as `<SECTION>__<KEY>` overrides.
const NOT_OVERRIDES: [&str; 1] = ["RINGCHAT_CONFIG"];

/// A `RINGCHAT_*` variable a file sets.
#[derive(Debug)]
struct Setting {
    at: String,
    name: String,
    /// The value where the file spells it out; `None` where it comes from elsewhere
    /// (interpolation, the downward API, a secret, the host's environment).
    value: Option<String>,
}

/// The command line a file starts a ringchat process or container with.
#[derive(Debug)]
struct Command {
    at: String,
    words: Vec<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Dockerfile,
    Yaml,
    Shell,
}

struct File {
    path: String,
    kind: Kind,
    text: String,
}

fn deployment_files() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut paths = vec![
        ("deploy/docker/Dockerfile".to_string(), Kind::Dockerfile),
        ("deploy/docker/docker-compose.yml".to_string(), Kind::Yaml),
    ];
    let k8s = root.join("deploy/k8s");
    let mut manifests: Vec<String> = std::fs::read_dir(&k8s)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", k8s.display()))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    manifests.sort();
    assert!(!manifests.is_empty(), "no deploy/k8s/*.yaml");
    paths.extend(
        manifests
            .into_iter()
            .map(|m| (format!("deploy/k8s/{m}"), Kind::Yaml)),
    );
    paths.push(("deploy/local/up".to_string(), Kind::Shell));
    paths
        .into_iter()
        .map(|(path, kind)| {
            let text = std::fs::read_to_string(root.join(&path))
                .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
            File { path, kind, text }
        })
        .collect()
}

// --- reading the files --------------------------------------------------------------------

fn insignificant(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// A line without its indentation and list-item dashes: `- name: x` gives `name: x`.
fn item(line: &str) -> &str {
    let mut t = line.trim();
    while let Some(rest) = t.strip_prefix("- ") {
        t = rest.trim_start();
    }
    t
}

fn is_list_item(line: &str) -> bool {
    line.trim_start().starts_with("- ")
}

/// The column a line's content starts at, a list item's `- ` counted as indentation.
fn content_col(line: &str) -> usize {
    line.len() - item(line).len() - (line.len() - line.trim_end().len())
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A YAML scalar after `key:`: unquoted, its trailing comment dropped; `None` when empty.
fn scalar(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.starts_with('#') {
        return None;
    }
    for q in ['"', '\''] {
        if let Some(rest) = raw.strip_prefix(q) {
            return Some(rest.split(q).next().unwrap_or_default().to_string());
        }
    }
    Some(match raw.find(" #") {
        Some(i) => raw[..i].trim_end().to_string(),
        None => raw.to_string(),
    })
}

/// The shell word at the start of `raw`, its quotes removed.
fn shell_word(raw: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    for c in raw.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => break,
            None => out.push(c),
        }
    }
    out
}

/// Whether a value is spelled out, rather than filled in (`$VAR`, `${VAR}`, `$(...)`).
fn literal(value: &str) -> bool {
    !value.contains('$') && !value.contains('`')
}

/// Every `RINGCHAT_*` variable `text` sets: `NAME=value` (shell, `ENV`, compose lists),
/// `NAME: value` (YAML maps: compose environments, ConfigMap and Secret data) and
/// `- name: NAME` with `value:` or `valueFrom:` on the next line (Kubernetes). References
/// (`$NAME`, `${NAME:-...}`) and comments set nothing.
fn settings(file: &str, text: &str) -> Vec<Setting> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if insignificant(line) {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        let entry = item(line);
        if let Some(name) = entry
            .strip_prefix("name:")
            .and_then(scalar)
            .filter(|n| n.starts_with("RINGCHAT_"))
        {
            let value = lines[i + 1..]
                .iter()
                .find(|l| !insignificant(l))
                .and_then(|l| item(l).strip_prefix("value:"))
                .and_then(scalar)
                .filter(|v| literal(v));
            out.push(Setting { at, name, value });
            continue;
        }
        let mut from = 0;
        while let Some(p) = line[from..].find("RINGCHAT_") {
            let start = from + p;
            let len = line[start..]
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(line.len() - start);
            let name = &line[start..start + len];
            let after = &line[start + len..];
            from = start + len;
            let before = line[..start].chars().next_back();
            if matches!(before, Some(c) if c == '$' || c == '{' || c == '_' || c.is_ascii_alphanumeric())
            {
                continue;
            }
            if let Some(v) = after.strip_prefix('=') {
                let v = shell_word(v);
                let value = literal(&v).then_some(v);
                out.push(Setting {
                    at: at.clone(),
                    name: name.into(),
                    value,
                });
            } else if let Some(v) = after.strip_prefix(':') {
                if entry.starts_with(name) && (v.is_empty() || v.starts_with(' ')) {
                    let value = scalar(v).filter(|v| literal(v));
                    out.push(Setting {
                        at: at.clone(),
                        name: name.into(),
                        value,
                    });
                }
            }
        }
    }
    out
}

/// The mapping a YAML key belongs to: the index of its first line, and its keys' lines.
fn siblings<'a>(lines: &[&'a str], k: usize) -> (usize, Vec<&'a str>) {
    let col = content_col(lines[k]);
    let mut first = k;
    let mut keys = vec![item(lines[k])];
    if !is_list_item(lines[k]) {
        for (i, &l) in lines[..k].iter().enumerate().rev() {
            if insignificant(l) {
                continue;
            }
            let c = content_col(l);
            if c < col {
                break;
            }
            if c == col {
                first = i;
                keys.push(item(l));
                if is_list_item(l) {
                    break;
                }
            }
        }
    }
    for &l in &lines[k + 1..] {
        if insignificant(l) {
            continue;
        }
        let c = content_col(l);
        if c < col || (c == col && is_list_item(l)) {
            break;
        }
        if c == col {
            keys.push(item(l));
        }
    }
    (first, keys)
}

/// The words of a YAML command: a flow list, a block list below the key, or a string.
fn yaml_words(lines: &[&str], k: usize, value: &str) -> Vec<String> {
    let value = value.trim();
    if value.is_empty() || value.starts_with('#') {
        let col = content_col(lines[k]);
        return lines[k + 1..]
            .iter()
            .filter(|l| !insignificant(l))
            .take_while(|l| is_list_item(l) && indent(l) >= col)
            .filter_map(|l| scalar(item(l)))
            .collect();
    }
    if let Some(flow) = value.strip_prefix('[') {
        let flow = flow.split(']').next().unwrap_or_default();
        return flow.split(',').filter_map(scalar).collect();
    }
    scalar(value)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The commands of the ringchat containers in a compose file or Kubernetes manifest:
/// `entrypoint`, `command` and `args` of one service or container, in that order. A
/// container is ringchat's when its image names ringchat (or merges the `*ringchat`
/// anchor); the engines' commands are theirs. `exec: command:` (a probe or a hook) runs
/// inside a container and is no container command.
fn yaml_commands(file: &str, text: &str) -> Vec<Command> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found: BTreeMap<usize, (String, [Vec<String>; 3])> = BTreeMap::new();
    let mut previous = "";
    for (k, line) in lines.iter().enumerate() {
        if insignificant(line) {
            continue;
        }
        let before = std::mem::replace(&mut previous, item(line));
        let Some((key, value)) = item(line).split_once(':') else {
            continue;
        };
        let slot = match key {
            "entrypoint" => 0,
            "command" => 1,
            "args" => 2,
            _ => continue,
        };
        if !(value.is_empty() || value.starts_with(' ')) || before == "exec:" {
            continue;
        }
        let (first, keys) = siblings(&lines, k);
        let ringchat = keys
            .iter()
            .any(|s| (s.starts_with("image:") || s.starts_with("<<:")) && s.contains("ringchat"));
        if !ringchat {
            continue;
        }
        let entry = found
            .entry(first)
            .or_insert_with(|| (format!("{file}:{}", k + 1), Default::default()));
        entry.1[slot] = yaml_words(&lines, k, value);
    }
    found
        .into_values()
        .map(|(at, [entrypoint, command, args])| Command {
            at,
            words: [entrypoint, command, args].concat(),
        })
        .collect()
}

/// The image's command: `ENTRYPOINT` then `CMD` of the last stage. The shell form runs
/// the command under `/bin/sh -c`, and is reported as such.
fn dockerfile_commands(file: &str, text: &str) -> Vec<Command> {
    let last_stage = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .last()
        .map_or(0, |(i, _)| i);
    let mut parts: [Vec<String>; 2] = Default::default();
    let mut at = String::new();
    for (i, line) in text.lines().enumerate().skip(last_stage) {
        let Some((instruction, rest)) = line.trim().split_once(char::is_whitespace) else {
            continue;
        };
        let slot = match instruction.to_ascii_uppercase().as_str() {
            "ENTRYPOINT" => 0,
            "CMD" => 1,
            _ => continue,
        };
        at = format!("{file}:{}", i + 1);
        let rest = rest.trim();
        parts[slot] = match serde_json::from_str::<Vec<String>>(rest) {
            Ok(words) => words,
            Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.into()],
        };
    }
    if at.is_empty() {
        return Vec::new();
    }
    vec![Command {
        at,
        words: parts.concat(),
    }]
}

/// The binaries `deploy/local/up` starts (`start NAME PORT BINARY VAR=...`) and builds
/// (`--bin NAME`).
fn shell_commands(file: &str, text: &str) -> Vec<Command> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if insignificant(line) {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"start") && words.len() > 3 {
            out.push(Command {
                at: at.clone(),
                words: vec![words[3].to_string()],
            });
        }
        for pair in words.windows(2) {
            if pair[0] == "--bin" {
                out.push(Command {
                    at: at.clone(),
                    words: vec![pair[1].to_string()],
                });
            }
        }
    }
    out
}

fn commands(file: &File) -> Vec<Command> {
    match file.kind {
        Kind::Dockerfile => dockerfile_commands(&file.path, &file.text),
        Kind::Yaml => yaml_commands(&file.path, &file.text),
        Kind::Shell => shell_commands(&file.path, &file.text),
    }
}

// --- holding them to the config and the binaries ------------------------------------------

/// Every setting's default: the core's sections and the gateway's own.
fn defaults() -> toml::Value {
    let mut all = toml::Value::try_from(Config::default()).expect("the default config serialises");
    let gateway =
        toml::Value::try_from(GatewayConfig::default()).expect("the gateway's defaults serialise");
    all.as_table_mut()
        .expect("a table")
        .insert("gateway".into(), gateway);
    all
}

/// A value of the right type for a key whose value the file does not spell out: its
/// default, or a 16-byte string where that is empty (`auth.jwt_secret` needs 16 bytes).
fn stand_in(defaults: &toml::Value, name: &str) -> String {
    let path: Vec<String> = name["RINGCHAT_".len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    match path.iter().try_fold(defaults, |v, seg| v.get(seg.as_str())) {
        Some(toml::Value::String(s)) if s.is_empty() => "stand-in-0123456789abcdef".into(),
        Some(toml::Value::String(s)) => s.clone(),
        Some(toml::Value::Array(a)) => a
            .iter()
            .filter_map(toml::Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(toml::Value::Integer(i)) => i.to_string(),
        Some(toml::Value::Float(f)) => f.to_string(),
        Some(toml::Value::Boolean(b)) => b.to_string(),
        // a table or a date (none is set through the environment), or not a key at all,
        // which the loader refuses whatever its value
        _ => "x".into(),
    }
}

fn check_setting(s: &Setting, defaults: &toml::Value) -> Result<(), String> {
    if !s.name.contains("__") {
        if NOT_OVERRIDES.contains(&s.name.as_str()) {
            return Ok(());
        }
        return Err(format!(
            "{}: {} is no config override (RINGCHAT_<SECTION>__<KEY>, two underscores \
             between section and key): the config loader ignores it",
            s.at, s.name
        ));
    }
    let value = s
        .value
        .clone()
        .unwrap_or_else(|| stand_in(defaults, &s.name));
    let env = HashMap::from([(s.name.clone(), value.clone())]);
    Settings::from_toml_and_env("", &env)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{}: {}={value:?} is refused by the config loader: {e}",
                s.at, s.name
            )
        })
}

fn check_command(c: &Command) -> Result<(), String> {
    let Some((first, args)) = c.words.split_first() else {
        return Err(format!("{}: an empty command", c.at));
    };
    let binary = first.rsplit('/').next().unwrap_or(first);
    if !BINARIES.contains(&binary) {
        return Err(format!(
            "{}: {:?} runs {first:?}, none of {BINARIES:?} (a shell in front of the binary \
             would also keep SIGTERM, and so the drain, from it)",
            c.at, c.words
        ));
    }
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(path) if !path.is_empty() && !path.starts_with('-') => {}
                _ => return Err(format!("{}: {arg} needs a file: {:?}", c.at, c.words)),
            },
            other => {
                return Err(format!(
                    "{}: {binary} takes only `--config FILE` (or `-c FILE`), not {other:?}: {:?}",
                    c.at, c.words
                ))
            }
        }
    }
    Ok(())
}

fn failures<T>(items: &[T], check: impl Fn(&T) -> Result<(), String>) -> Vec<String> {
    items.iter().filter_map(|i| check(i).err()).collect()
}

// --- the tests ------------------------------------------------------------------------------

#[test]
fn every_ringchat_variable_the_deployment_files_set_is_a_config_key() {
    let defaults = defaults();
    let mut all = Vec::new();
    for file in deployment_files() {
        let found = settings(&file.path, &file.text);
        let sets_none = ["namespace.yaml", "kustomization.yaml"]
            .iter()
            .any(|f| file.path.ends_with(f));
        if !sets_none {
            assert!(
                !found.is_empty(),
                "{}: no RINGCHAT_* variable found: has the file changed its form?",
                file.path
            );
        }
        all.extend(found);
    }
    let bad = failures(&all, |s| check_setting(s, &defaults));
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

#[test]
fn compose_and_kubernetes_set_every_engine_the_secret_and_the_identities() {
    let files = deployment_files();
    let names = |prefix: &str| -> BTreeSet<String> {
        files
            .iter()
            .filter(|f| f.path.starts_with(prefix))
            .flat_map(|f| settings(&f.path, &f.text))
            .map(|s| s.name)
            .collect()
    };
    for (what, set) in [
        (
            "deploy/docker/docker-compose.yml",
            names("deploy/docker/docker-compose.yml"),
        ),
        ("deploy/k8s", names("deploy/k8s/")),
    ] {
        for needed in [
            "RINGCHAT_BUS__URL",
            "RINGCHAT_CACHE__URL",
            "RINGCHAT_DISCOVERY__URL",
            "RINGCHAT_STORE__URL",
            "RINGCHAT_AUTH__JWT_SECRET",
            "RINGCHAT_NODE__ID",
            "RINGCHAT_NODE__WORKER_ID",
            "RINGCHAT_NODE__ADVERTISE_HOST",
            "RINGCHAT_GATEWAY__ADMIN_LISTEN",
            "RINGCHAT_LOGIC__LISTEN",
            "RINGCHAT_REPO__LISTEN",
            "RINGCHAT_LOGIC__ADMIN_LISTEN",
            "RINGCHAT_REPO__ADMIN_LISTEN",
            "RINGCHAT_TASK__ADMIN_LISTEN",
        ] {
            assert!(set.contains(needed), "{what} does not set {needed}");
        }
    }
}

#[test]
fn every_command_the_deployment_files_run_is_a_ringchat_binary_with_known_flags() {
    let mut all = Vec::new();
    let mut started: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in deployment_files() {
        let found = commands(&file);
        let group = if file.path.starts_with("deploy/k8s/") {
            "deploy/k8s".to_string()
        } else {
            file.path.clone()
        };
        let binaries = started.entry(group).or_default();
        for c in &found {
            if let Some(first) = c.words.first() {
                binaries.insert(first.rsplit('/').next().unwrap_or(first).to_string());
            }
        }
        all.extend(found);
    }
    let bad = failures(&all, check_command);
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));

    let distributed: BTreeSet<String> = ["im-gateway", "im-logic", "im-repo", "im-task"]
        .map(String::from)
        .into();
    for group in [
        "deploy/docker/docker-compose.yml",
        "deploy/k8s",
        "deploy/local/up",
    ] {
        let binaries = started.get(group).cloned().unwrap_or_default();
        assert!(
            distributed.is_subset(&binaries),
            "{group} starts {binaries:?}, not all of {distributed:?}: has a command changed its form?"
        );
    }
    assert_eq!(
        started.get("deploy/docker/Dockerfile"),
        Some(&BTreeSet::from(["ringchat".to_string()])),
        "the image's default command is the embedded `ringchat`"
    );
}

#[test]
fn the_checks_catch_unknown_keys_misspelt_names_bad_values_and_foreign_commands() {
    let defaults = defaults();
    let compose = r#"
services:
  bad:
    image: ${RINGCHAT_IMAGE:-ringchat:local}
    command: ["im-logic", "--confg", "x.toml"]
    environment:
      RINGCHAT_NODE__IDD: gw-1
      RINGCHAT_NODE_ID: gw-1
      RINGCHAT_BUS__PARTITIONS: "0"
      MYSQL_PASSWORD: ${RINGCHAT_SECRET:?set it}
      # RINGCHAT_COMMENTED__OUT: 1
  good:
    <<: *ringchat
    command:
      - im-logic
      - --config
      - /etc/ringchat.toml
    environment:
      RINGCHAT_NODE__ID: logic-1
      RINGCHAT_AUTH__JWT_SECRET: ${RINGCHAT_JWT_SECRET:?set it}
  engine:
    image: mysql:8.4
    command: ["mysqld", "--skip-name-resolve"]
"#;
    let found = settings("compose", compose);
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "RINGCHAT_NODE__IDD",
            "RINGCHAT_NODE_ID",
            "RINGCHAT_BUS__PARTITIONS",
            "RINGCHAT_NODE__ID",
            "RINGCHAT_AUTH__JWT_SECRET"
        ],
        "references and comments set nothing"
    );
    let verdicts: Vec<bool> = found
        .iter()
        .map(|s| check_setting(s, &defaults).is_ok())
        .collect();
    assert_eq!(verdicts, [false, false, false, true, true]);
    let cmds = yaml_commands("compose", compose);
    let words: Vec<Vec<String>> = cmds.iter().map(|c| c.words.clone()).collect();
    assert_eq!(
        words,
        [
            vec!["im-logic", "--confg", "x.toml"],
            vec!["im-logic", "--config", "/etc/ringchat.toml"]
        ],
        "the engine's command is not ringchat's"
    );
    assert!(check_command(&cmds[0]).is_err());
    assert!(check_command(&cmds[1]).is_ok());

    let manifest = r#"
      containers:
        - name: im-repo
          image: ringchat
          command: ["sh", "-c"]
          args:
            - exec im-repo
          env:
            - name: RINGCHAT_NODE__WORKER_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
            - name: RINGCHAT_TASK__NOTIFIER
              value: carrier-pigeon
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "5"]
"#;
    let found = settings("manifest", manifest);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].value, None, "from the downward API");
    assert!(check_setting(&found[0], &defaults).is_ok());
    assert_eq!(found[1].value.as_deref(), Some("carrier-pigeon"));
    assert!(check_setting(&found[1], &defaults).is_err());
    let cmds = yaml_commands("manifest", manifest);
    assert_eq!(
        cmds.len(),
        1,
        "a hook's exec command is no container command"
    );
    assert_eq!(cmds[0].words, ["sh", "-c", "exec im-repo"]);
    assert!(
        check_command(&cmds[0]).is_err(),
        "a shell in front of the binary"
    );

    let dockerfile =
        "FROM rust AS build\nCMD [\"cargo\"]\nFROM debian\nENV RINGCHAT_X__Y=1\nCMD ringchat\n";
    let cmds = dockerfile_commands("Dockerfile", dockerfile);
    assert_eq!(cmds[0].words, ["/bin/sh", "-c", "ringchat"]);
    assert!(
        check_command(&cmds[0]).is_err(),
        "the shell form runs /bin/sh"
    );
    let found = settings("Dockerfile", dockerfile);
    assert_eq!(found[0].value.as_deref(), Some("1"));
    assert!(check_setting(&found[0], &defaults).is_err(), "no section x");
}
