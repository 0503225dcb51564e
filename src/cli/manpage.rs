//! Man pages and shell completions, generated from the clap definitions so they cannot
//! fall behind `--help`: `retrac-sync.1`, one page per subcommand (`retrac-sync-members-list.1`),
//! and `retrac-sync.toml.5` for the config file, rendered from `config.example.toml`, the
//! very text `retrac-sync config example` prints.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::config::{Config, EXAMPLE};

/// The program name, as installed and as the completions complete it.
const BIN: &str = "retrac-sync";

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), BIN, out);
}

/// The file name a completion script is installed under for `shell`: what bash-completion,
/// zsh's `fpath` and fish's `vendor_completions.d` look for.
pub fn completion_file_name(shell: Shell) -> String {
    match shell {
        Shell::Bash => BIN.to_string(),
        Shell::Zsh => format!("_{BIN}"),
        Shell::Fish => format!("{BIN}.fish"),
        Shell::Elvish => format!("{BIN}.elv"),
        Shell::PowerShell => format!("_{BIN}.ps1"),
        _ => format!("{BIN}.{shell}"),
    }
}

/// One man page: its file name (`retrac-sync-members-list.1`) and its roff text.
#[derive(Clone, Debug, PartialEq)]
pub struct ManPage {
    /// The file name, section included.
    pub file_name: String,
    /// The roff source.
    pub roff: String,
}

/// Every page: the command, each subcommand at every depth (not `help`), and the config file.
pub fn man_pages() -> Result<Vec<ManPage>, std::io::Error> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    command_pages(&cmd, &mut pages)?;
    pages.push(config_page());
    Ok(pages)
}

fn command_pages(cmd: &clap::Command, pages: &mut Vec<ManPage>) -> Result<(), std::io::Error> {
    let man = clap_mangen::Man::new(cmd.clone())
        .date(crate::version::BUILD_DATE)
        .source(format!("{BIN} {}", crate::version::VERSION))
        .manual("retrac-sync manual");
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    pages.push(ManPage {
        file_name: man.get_filename(),
        roff: String::from_utf8_lossy(&roff).into_owned(),
    });
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, pages)?;
    }
    Ok(())
}

/// Writes every page into `dir` (created if missing); returns the files written.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for page in man_pages()? {
        let path = dir.join(&page.file_name);
        std::fs::write(&path, page.roff.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Escapes text for roff: backslashes, and a leading `.` or `'` that would read as a request.
fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// One documented key of the example.
#[derive(Debug, Default)]
struct Entry {
    keys: Vec<String>,
    /// `key = value` as in the example; commented out when the key is unset by default.
    lines: Vec<String>,
    unset: bool,
    prose: Vec<String>,
}

/// A section of the example: its name and its keys.
#[derive(Debug, Default)]
struct Section {
    name: String,
    entries: Vec<Entry>,
}

/// Reads `config.example.toml` into its preamble and sections. A key is either a
/// `key = value` line or a commented-out `# key = value` line whose key the config knows
/// (an optional key, unset by default); every other comment is prose for the next key.
fn parse_example(text: &str) -> (Vec<String>, Vec<Section>) {
    let known = known_keys();
    let mut preamble = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut prose: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if sections.is_empty() {
                preamble.append(&mut prose);
            }
            sections.push(Section {
                name: name.to_string(),
                ..Section::default()
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            prose.push(line.trim_start_matches('#').trim().to_string());
            continue;
        };
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let key = body
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let is_key = match key {
            Some(k) => !commented || known.contains(&(section.name.clone(), k.to_string())),
            None => false,
        };
        if !is_key {
            if !body.is_empty() {
                prose.push(body.to_string());
            }
            continue;
        }
        let key = key.unwrap_or_default().to_string();
        // `groups = []   # e.g. [...]`: the trailing comment is prose too.
        let (setting, trailing) = match body.split_once(" #") {
            Some((s, t)) if !commented => (s.trim().to_string(), Some(t.trim().to_string())),
            _ => (body.to_string(), None),
        };
        let mut own = std::mem::take(&mut prose);
        own.extend(trailing);
        match section.entries.last_mut() {
            // A key with no prose of its own right after another: documented together.
            Some(prev) if own.is_empty() => {
                prev.keys.push(key);
                prev.lines.push(setting);
                prev.unset |= commented;
            }
            _ => {
                section.entries.push(Entry {
                    keys: vec![key],
                    lines: vec![setting],
                    unset: commented,
                    prose: own,
                });
            }
        }
    }
    (preamble, sections)
}

/// `(section, key)` of every key the config has.
fn known_keys() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(Config::default()) {
        for (section, body) in sections {
            if let serde_json::Value::Object(keys) = body {
                for (k, v) in keys {
                    match v {
                        // A table inside the section, as [console.oidc].
                        serde_json::Value::Object(sub) => {
                            for sk in sub.keys() {
                                out.push((format!("{section}.{k}"), sk.clone()));
                            }
                        }
                        _ => out.push((section.clone(), k.clone())),
                    }
                }
            }
        }
    }
    out
}

/// `retrac-sync.toml(5)`, from the example config.
pub fn config_page() -> ManPage {
    let (preamble, sections) = parse_example(EXAMPLE);
    let mut r = String::new();
    r.push_str(&format!(
        ".TH RETRAC\\-SYNC.TOML 5 \"{}\" \"{BIN} {}\" \"retrac-sync manual\"\n",
        crate::version::BUILD_DATE,
        crate::version::VERSION
    ));
    r.push_str(
        ".SH NAME\nretrac\\-sync.toml \\- configuration of the retrac\\-sync daemon and CLI\n",
    );
    r.push_str(".SH SYNOPSIS\n/etc/retrac\\-sync/config.toml\n");
    r.push_str(".SH DESCRIPTION\n");
    for p in preamble
        .iter()
        .filter(|l| !l.is_empty() && !l.ends_with("configuration."))
    {
        r.push_str(&roff_escape(p));
        r.push('\n');
    }
    r.push_str(".PP\nThis page is generated from the same text \\fBretrac\\-sync config example\\fR prints.\n");
    for s in &sections {
        r.push_str(&format!(".SH [{}]\n", roff_escape(&s.name)));
        for e in &s.entries {
            let names: Vec<String> = e
                .keys
                .iter()
                .map(|k| format!("\\fB{}\\fR", roff_escape(k)))
                .collect();
            r.push_str(&format!(".TP\n{}\n", names.join(", ")));
            for (i, p) in e.prose.iter().enumerate() {
                // "... Example:" leads into the example line printed below.
                let last = i + 1 == e.prose.len();
                let p = if last && e.unset {
                    p.trim_end_matches("Example:").trim_end()
                } else {
                    p
                };
                if !p.is_empty() {
                    r.push_str(&roff_escape(p));
                    r.push('\n');
                }
            }
            r.push_str(if e.unset {
                ".br\nUnset by default. Example:\n"
            } else {
                ".br\nDefault:\n"
            });
            r.push_str(".RS\n.nf\n");
            for l in &e.lines {
                r.push_str(&roff_escape(l));
                r.push('\n');
            }
            r.push_str(".fi\n.RE\n");
        }
    }
    r.push_str(".SH ENVIRONMENT\n");
    r.push_str("Each key can be overridden by \\fBRETRAC_SYNC_\\fISECTION\\fB__\\fIKEY\\fR, e.g. \\fBRETRAC_SYNC_SYNC__MAX_DEACTIVATIONS=10\\fR. \\fBRETRAC_SYNC_CONFIG\\fR names the file.\n");
    r.push_str(".SH SEE ALSO\n\\fBretrac\\-sync\\fR(1), \\fBretrac\\-sync\\-config\\fR(1), \\fBretrac\\-sync\\-doctor\\fR(1)\n");
    ManPage {
        file_name: format!("{BIN}.toml.5"),
        roff: r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand path, at every depth, as `["members", "list"]`.
    fn command_paths() -> Vec<Vec<String>> {
        fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let mut p = prefix.to_vec();
                p.push(sub.get_name().to_string());
                out.push(p.clone());
                walk(sub, &p, out);
            }
        }
        let mut out = Vec::new();
        walk(&Cli::command(), &[], &mut out);
        out
    }

    #[test]
    fn every_subcommand_has_a_man_page() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        assert!(names.contains(&"retrac-sync.1"), "{names:?}");
        assert!(names.contains(&"retrac-sync.toml.5"), "{names:?}");
        let paths = command_paths();
        assert!(paths.len() > 20, "{paths:?}");
        for path in &paths {
            let file = format!("retrac-sync-{}.1", path.join("-"));
            let page = pages
                .iter()
                .find(|p| p.file_name == file)
                .unwrap_or_else(|| panic!("no man page {file}"));
            // The page documents that command: its NAME line names it.
            let name_line = format!("retrac\\-sync\\-{}", path.join("\\-"));
            assert!(page.roff.contains(&name_line), "{file} lacks {name_line}");
        }
        assert!(!names.iter().any(|n| n.contains("-help")), "{names:?}");
        // One page per command, nothing else besides the config page.
        assert_eq!(pages.len(), paths.len() + 2);
    }

    #[test]
    fn the_completions_list_every_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            for path in command_paths() {
                let name = path.last().unwrap();
                let parent = &path[..path.len() - 1];
                // What each generator writes for a subcommand `name` under `parent`.
                let expected = match shell {
                    Shell::Bash => {
                        let mut p = vec!["retrac__sync".to_string()];
                        p.extend(parent.iter().map(|s| s.replace('-', "__")));
                        format!("{},{name})", p.join("__subcmd__"))
                    }
                    Shell::Zsh => format!("'{name}:"),
                    Shell::Fish => {
                        if parent.is_empty() {
                            format!("__fish_retrac_sync_needs_command\" -f -a \"{name}\"")
                        } else {
                            format!("-f -a \"{name}\"")
                        }
                    }
                    _ => unreachable!(),
                };
                assert!(
                    script.contains(&expected),
                    "{shell}: no {expected:?} for {path:?}"
                );
            }
        }
    }

    #[test]
    fn the_config_page_documents_every_key_of_the_example() {
        let page = config_page();
        assert_eq!(page.file_name, "retrac-sync.toml.5");
        for (section, key) in known_keys() {
            assert!(
                page.roff.contains(&format!(".SH [{section}]")),
                "no section [{section}]"
            );
            assert!(
                page.roff
                    .contains(&format!("\\fB{}\\fR", roff_escape(&key))),
                "no entry for {section}.{key}"
            );
        }
        // The defaults come from the example text itself.
        assert!(page.roff.contains("schedule = \"0 */15 * * * *\""));
        assert!(page.roff.contains("Unset by default"));
        // Prose of the example, e.g. the schedule's, is carried over.
        assert!(page.roff.contains("WITH seconds"));
    }

    #[test]
    fn a_key_added_to_the_example_appears_in_the_page() {
        let text = format!("{EXAMPLE}\n[log]\n# A new knob.\nlevel = \"debug\"\n");
        let (_, sections) = parse_example(&text);
        let last = sections.last().unwrap();
        assert_eq!(last.name, "log");
        assert_eq!(last.entries[0].prose, vec!["A new knob.".to_string()]);
    }

    #[test]
    fn roff_special_lines_are_escaped() {
        assert_eq!(roff_escape(".hidden"), "\\&.hidden");
        assert_eq!(roff_escape("a\\b"), "a\\eb");
    }
}
