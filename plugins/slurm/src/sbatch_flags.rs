//! sbatch's own option syntax, so that a pod's `slurm-job.vk.io/flags` is read
//! exactly as sbatch would read it, and then written back in one canonical form.
//!
//! sbatch reads options with glibc's `getopt_long` (optstring `+...`): a long
//! option may be abbreviated to any unambiguous prefix (`--ui=0` is `--uid=0`),
//! its value follows `=` or is the next word (`--partition debug`); short options
//! cluster (`-Hpdebug` is `-H -p debug`) and take the rest of the word or the next
//! word as their value; the first word that is not an option ends the options.
//! [`parse`] follows those rules over the table of Slurm 22.05's sbatch options
//! ([`OPTIONS`], taken from `src/common/slurm_opt.c` of slurm-22-05-8-1 and
//! checked against the `sbatch` binary), so the allow-list is applied to the
//! option sbatch would really see. [`SbatchOpt::directive`] writes each option
//! back by its full long name with its value quoted for sbatch's `#SBATCH` line
//! reader (quotes, backslash escapes, `#` comments), so an abbreviation, a value
//! holding blanks or quotes, or a `#` can never turn into another option.
//! Control characters (newlines above all) are refused anywhere.

use std::fmt;

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// `--hold`: no value.
    No,
    /// `--time=5`, `--time 5`, `-t5`, `-t 5`.
    Required,
    /// `--nice[=N]`, `-k[VALUE]`: a value only when attached.
    Optional,
}
use Arg::{No, Optional, Required};

/// One sbatch option: its long name, value, short letter and, for an alias,
/// the option it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptSpec {
    pub name: &'static str,
    pub arg: Arg,
    pub short: Option<char>,
    /// The name of the option this one is an alias of (the same getopt value).
    pub canonical: &'static str,
}

const fn opt(name: &'static str, arg: Arg, short: Option<char>) -> OptSpec {
    OptSpec {
        name,
        arg,
        short,
        canonical: name,
    }
}

const fn alias(
    name: &'static str,
    arg: Arg,
    short: Option<char>,
    canonical: &'static str,
) -> OptSpec {
    OptSpec {
        name,
        arg,
        short,
        canonical,
    }
}

/// sbatch's options (Slurm 22.05), in sbatch's table order (which decides
/// between aliases, as getopt_long does).
pub const OPTIONS: &[OptSpec] = &[
    opt("account", Required, Some('A')),
    opt("acctg-freq", Required, None),
    opt("array", Required, Some('a')),
    opt("batch", Required, None),
    opt("begin", Required, Some('b')),
    opt("bb", Required, None),
    opt("bbf", Required, None),
    opt("cluster-constraint", Required, None),
    opt("chdir", Required, Some('D')),
    opt("cluster", Required, None),
    opt("clusters", Required, Some('M')),
    opt("comment", Required, None),
    opt("container", Required, None),
    opt("context", Required, None),
    opt("contiguous", No, None),
    opt("constraint", Required, Some('C')),
    opt("core-spec", Required, Some('S')),
    opt("cores-per-socket", Required, None),
    opt("cpu-freq", Required, None),
    opt("cpus-per-gpu", Required, None),
    opt("cpus-per-task", Required, Some('c')),
    opt("deadline", Required, None),
    opt("delay-boot", Required, None),
    opt("dependency", Required, Some('d')),
    opt("distribution", Required, Some('m')),
    opt("error", Required, Some('e')),
    opt("exclude", Required, Some('x')),
    opt("exclusive", Optional, None),
    opt("export", Required, None),
    opt("export-file", Required, None),
    opt("extra-node-info", Required, Some('B')),
    opt("get-user-env", Optional, None),
    opt("gid", Required, None),
    opt("gpu-bind", Required, None),
    opt("gpu-freq", Required, None),
    opt("gpus", Required, Some('G')),
    opt("gpus-per-node", Required, None),
    opt("gpus-per-socket", Required, None),
    opt("gpus-per-task", Required, None),
    opt("gres", Required, None),
    opt("gres-flags", Required, None),
    opt("help", No, Some('h')),
    opt("hint", Required, None),
    opt("hold", No, Some('H')),
    opt("ignore-pbs", No, None),
    opt("input", Required, Some('i')),
    opt("job-name", Required, Some('J')),
    opt("kill-on-invalid-dep", Required, None),
    opt("licenses", Required, Some('L')),
    opt("mail-type", Required, None),
    opt("mail-user", Required, None),
    opt("mcs-label", Required, None),
    opt("mem", Required, None),
    opt("mem-bind", Required, None),
    opt("mem-per-cpu", Required, None),
    opt("mem-per-gpu", Required, None),
    opt("mincpus", Required, None),
    opt("network", Required, None),
    opt("nice", Optional, None),
    opt("no-kill", Optional, Some('k')),
    opt("no-requeue", No, None),
    opt("nodefile", Required, Some('F')),
    opt("nodelist", Required, Some('w')),
    opt("nodes", Required, Some('N')),
    opt("ntasks", Required, Some('n')),
    opt("ntasks-per-core", Required, None),
    opt("ntasks-per-gpu", Required, None),
    opt("ntasks-per-node", Required, None),
    opt("ntasks-per-socket", Required, None),
    opt("ntasks-per-tres", Required, None),
    opt("open-mode", Required, None),
    opt("output", Required, Some('o')),
    opt("overcommit", No, Some('O')),
    opt("oversubscribe", No, Some('s')),
    opt("parsable", No, None),
    opt("partition", Required, Some('p')),
    opt("power", Required, None),
    opt("prefer", Required, None),
    opt("priority", Required, None),
    opt("profile", Required, None),
    opt("propagate", Optional, None),
    opt("qos", Required, Some('q')),
    opt("quiet", No, Some('Q')),
    opt("reboot", No, None),
    opt("requeue", No, None),
    opt("reservation", Required, None),
    opt("signal", Required, None),
    opt("sockets-per-node", Required, None),
    opt("spread-job", No, None),
    opt("switches", Required, None),
    alias("tasks-per-node", Required, None, "ntasks-per-node"),
    opt("test-only", No, None),
    opt("thread-spec", Required, None),
    opt("threads-per-core", Required, None),
    opt("time", Required, Some('t')),
    opt("time-min", Required, None),
    opt("tmp", Required, None),
    opt("uid", Required, None),
    opt("use-min-nodes", No, None),
    opt("verbose", No, Some('v')),
    opt("version", No, Some('V')),
    opt("usage", No, None),
    opt("wait", No, Some('W')),
    opt("wait-all-nodes", Required, None),
    opt("wckey", Required, None),
    opt("wrap", Required, None),
];

/// An option exactly as named (no abbreviation), with or without its `--`.
pub fn lookup(name: &str) -> Option<&'static OptSpec> {
    let name = name.strip_prefix("--").unwrap_or(name);
    OPTIONS.iter().find(|o| o.name == name)
}

fn by_short(c: char) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.short == Some(c))
}

/// Resolve a long option name as getopt_long does: an exact name wins; else the
/// options it is a prefix of, if they all are one option (aliases); else it is
/// ambiguous.
fn resolve_long(name: &str, given: &str) -> Result<&'static OptSpec, FlagError> {
    if let Some(o) = OPTIONS.iter().find(|o| o.name == name) {
        return Ok(o);
    }
    let matches: Vec<&'static OptSpec> = if name.is_empty() {
        Vec::new()
    } else {
        OPTIONS
            .iter()
            .filter(|o| o.name.starts_with(name))
            .collect()
    };
    match matches.as_slice() {
        [] => Err(FlagError::Unknown {
            given: given.to_string(),
        }),
        [first, rest @ ..]
            if rest
                .iter()
                .all(|o| o.canonical == first.canonical && o.arg == first.arg) =>
        {
            Ok(first)
        }
        _ => Err(FlagError::Ambiguous {
            given: given.to_string(),
            candidates: matches.iter().map(|o| format!("--{}", o.name)).collect(),
        }),
    }
}

/// One option as sbatch would take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbatchOpt {
    /// The option's full long name, aliases resolved (`uid` for `--ui`).
    pub name: &'static str,
    pub value: Option<String>,
    /// How it was written (`-pdebug`, `--ui=0`, `--time 5`), for messages.
    pub given: String,
}

impl SbatchOpt {
    /// The option as one `#SBATCH` argument: `--name` or `--name=value`, the
    /// value quoted for sbatch's line reader when it is not plain.
    pub fn directive(&self) -> String {
        match &self.value {
            None => format!("--{}", self.name),
            Some(v) => format!("--{}={}", self.name, sbatch_quote(v)),
        }
    }

    /// `--ui=0 (--uid)` when abbreviated or short, else just `--uid=0`.
    pub fn describe(&self) -> String {
        let full = format!("--{}", self.name);
        if self.given == full || self.given.starts_with(&format!("{full}=")) {
            self.given.clone()
        } else {
            format!("{} ({full})", self.given)
        }
    }
}

/// Quote a value for sbatch's `#SBATCH` reader: double quotes, with `\` and `"`
/// escaped by a backslash (the reader honours escapes inside quotes too).
pub fn sbatch_quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,:/@%+=*^~[]!<>".contains(c))
    {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Why flags cannot be read; each names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("control character {ch:?} in {text:?}: flags must be one line of printable text")]
    Control { ch: char, text: String },
    #[error("unbalanced quote in {0:?}")]
    UnbalancedQuote(String),
    #[error(
        "{given:?} is not a flag (flags start with '-'; words after a flag's value would be the script's arguments)"
    )]
    NotAFlag { given: String },
    #[error("{given}: sbatch has no such option")]
    Unknown { given: String },
    #[error("{given}: ambiguous, it abbreviates {}", candidates.join(", "))]
    Ambiguous {
        given: String,
        candidates: Vec<String>,
    },
    #[error("{given}: --{name} needs a value")]
    MissingValue { given: String, name: &'static str },
    #[error("{given}: --{name} takes no value")]
    UnexpectedValue { given: String, name: &'static str },
}

/// Refuse control characters (a newline would start a new `#SBATCH` line).
pub fn check_printable(text: &str) -> Result<(), FlagError> {
    match text.chars().find(|c| c.is_control()) {
        Some(ch) => Err(FlagError::Control {
            ch,
            text: text.to_string(),
        }),
        None => Ok(()),
    }
}

/// Split a line into words at blanks; single or double quotes group words (and
/// are removed).
pub fn split_words(s: &str) -> Result<Vec<String>, FlagError> {
    check_printable(s)?;
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(FlagError::UnbalancedQuote(s.to_string()));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Read words as sbatch's getopt_long does; any word that is not an option (or
/// an option's value) is refused.
pub fn parse_words(words: &[String]) -> Result<Vec<SbatchOpt>, FlagError> {
    for w in words {
        check_printable(w)?;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        if let Some(body) = w.strip_prefix("--").filter(|b| !b.is_empty()) {
            let (name, attached) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let spec = resolve_long(name, w)?;
            let value = match (spec.arg, attached) {
                (No, Some(_)) => {
                    return Err(FlagError::UnexpectedValue {
                        given: w.clone(),
                        name: spec.name,
                    });
                }
                (No, None) => None,
                (Optional, v) => v,
                (Required, Some(v)) => Some(v),
                (Required, None) => {
                    let Some(v) = words.get(i) else {
                        return Err(FlagError::MissingValue {
                            given: w.clone(),
                            name: spec.name,
                        });
                    };
                    i += 1;
                    out.push(SbatchOpt {
                        name: spec.canonical,
                        value: Some(v.clone()),
                        given: format!("{w} {v}"),
                    });
                    continue;
                }
            };
            out.push(SbatchOpt {
                name: spec.canonical,
                value,
                given: w.clone(),
            });
        } else if let Some(cluster) = w.strip_prefix('-').filter(|c| !c.is_empty() && *c != "-") {
            for (at, c) in cluster.char_indices() {
                let letter = format!("-{c}");
                let spec = by_short(c).ok_or_else(|| FlagError::Unknown {
                    given: if cluster.len() == c.len_utf8() {
                        letter.clone()
                    } else {
                        format!("{letter} (in {w})")
                    },
                })?;
                let rest = &cluster[at + c.len_utf8()..];
                match spec.arg {
                    No => out.push(SbatchOpt {
                        name: spec.canonical,
                        value: None,
                        given: letter,
                    }),
                    Optional => {
                        out.push(SbatchOpt {
                            name: spec.canonical,
                            value: (!rest.is_empty()).then(|| rest.to_string()),
                            given: format!("{letter}{rest}"),
                        });
                        break;
                    }
                    Required if !rest.is_empty() => {
                        out.push(SbatchOpt {
                            name: spec.canonical,
                            value: Some(rest.to_string()),
                            given: format!("{letter}{rest}"),
                        });
                        break;
                    }
                    Required => {
                        let Some(v) = words.get(i) else {
                            return Err(FlagError::MissingValue {
                                given: w.clone(),
                                name: spec.name,
                            });
                        };
                        i += 1;
                        out.push(SbatchOpt {
                            name: spec.canonical,
                            value: Some(v.clone()),
                            given: format!("{letter} {v}"),
                        });
                    }
                }
            }
        } else {
            return Err(FlagError::NotAFlag { given: w.clone() });
        }
    }
    Ok(out)
}

/// Read a flags line (the `slurm-job.vk.io/flags` annotation).
pub fn parse(s: &str) -> Result<Vec<SbatchOpt>, FlagError> {
    parse_words(&split_words(s)?)
}

impl fmt::Display for SbatchOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.directive())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<(String, Option<String>)> {
        parse(s)
            .unwrap()
            .into_iter()
            .map(|o| (o.name.to_string(), o.value))
            .collect()
    }

    fn one(s: &str) -> (String, Option<String>) {
        let mut v = names(s);
        assert_eq!(v.len(), 1, "{s}: {v:?}");
        v.remove(0)
    }

    fn pair(n: &str, v: Option<&str>) -> (String, Option<String>) {
        (n.to_string(), v.map(str::to_string))
    }

    #[test]
    fn long_options_in_both_forms_and_abbreviated() {
        assert_eq!(one("--time=5"), pair("time", Some("5")));
        assert_eq!(one("--time 5"), pair("time", Some("5")));
        // a required value is the next word even when it looks like an option
        assert_eq!(one("--comment -x"), pair("comment", Some("-x")));
        assert_eq!(one("--comment="), pair("comment", Some("")));
        // unambiguous prefixes resolve as getopt_long resolves them
        assert_eq!(one("--ui=0"), pair("uid", Some("0")));
        assert_eq!(one("--ui 0"), pair("uid", Some("0")));
        assert_eq!(one("--export-=/x"), pair("export-file", Some("/x")));
        assert_eq!(one("--outp=/etc/x"), pair("output", Some("/etc/x")));
        assert_eq!(one("--constr=a&b"), pair("constraint", Some("a&b")));
        // an exact name wins over longer ones it is a prefix of
        assert_eq!(one("--time-min=1"), pair("time-min", Some("1")));
        assert_eq!(one("--gpus=1"), pair("gpus", Some("1")));
        // aliases become the option they stand for
        assert_eq!(
            one("--tasks-per-node=2"),
            pair("ntasks-per-node", Some("2"))
        );
        // optional values only when attached
        assert_eq!(one("--nice"), pair("nice", None));
        assert_eq!(one("--exclusive=user"), pair("exclusive", Some("user")));
        assert_eq!(one("--hold"), pair("hold", None));
    }

    #[test]
    fn short_options_cluster_as_in_getopt() {
        assert_eq!(one("-pdebug"), pair("partition", Some("debug")));
        assert_eq!(one("-p debug"), pair("partition", Some("debug")));
        assert_eq!(one("-N1"), pair("nodes", Some("1")));
        assert_eq!(
            names("-Hpdebug"),
            vec![pair("hold", None), pair("partition", Some("debug"))]
        );
        assert_eq!(
            names("-HQ -t 5"),
            vec![
                pair("hold", None),
                pair("quiet", None),
                pair("time", Some("5"))
            ]
        );
        // -k takes an optional value: the rest of the word
        assert_eq!(one("-kHx"), pair("no-kill", Some("Hx")));
        assert_eq!(
            names("-Hp x -N 2 --qos=a"),
            vec![
                pair("hold", None),
                pair("partition", Some("x")),
                pair("nodes", Some("2")),
                pair("qos", Some("a"))
            ]
        );
        let o = &parse("-Hpdebug").unwrap()[1];
        assert_eq!(o.describe(), "-pdebug (--partition)");
        assert_eq!(o.directive(), "--partition=debug");
    }

    #[test]
    fn refusals_name_the_flag() {
        let e = parse("--time=5 --bogus=1").unwrap_err();
        assert_eq!(
            e,
            FlagError::Unknown {
                given: "--bogus=1".into()
            }
        );
        assert!(e.to_string().contains("--bogus=1"), "{e}");
        // ambiguous abbreviations list what they could be
        let e = parse("--ti=5").unwrap_err().to_string();
        assert!(
            e.contains("--ti=5") && e.contains("--time") && e.contains("--time-min"),
            "{e}"
        );
        // as sbatch 22.05 answers: "option '--exp=ALL' is ambiguous;
        // possibilities: '--export' '--export-file'"
        assert_eq!(
            parse("--exp=ALL").unwrap_err(),
            FlagError::Ambiguous {
                given: "--exp=ALL".into(),
                candidates: vec!["--export".into(), "--export-file".into()]
            }
        );
        // "sbatch: unrecognized option '--ti-m=3'": prefixes are prefixes
        assert!(matches!(
            parse("--ti-m=3").unwrap_err(),
            FlagError::Unknown { .. }
        ));
        let e = parse("--mem-per=1").unwrap_err().to_string();
        assert!(
            e.contains("--mem-per-cpu") && e.contains("--mem-per-gpu"),
            "{e}"
        );
        let e = parse("-Hy").unwrap_err().to_string();
        assert!(e.contains("-y") && e.contains("-Hy"), "{e}");
        assert!(matches!(
            parse("--time").unwrap_err(),
            FlagError::MissingValue { name: "time", .. }
        ));
        assert!(matches!(
            parse("-p").unwrap_err(),
            FlagError::MissingValue {
                name: "partition",
                ..
            }
        ));
        let e = parse("--hold=yes").unwrap_err().to_string();
        assert!(e.contains("--hold=yes") && e.contains("no value"), "{e}");
        // a word that is neither an option nor a value
        for s in [
            "debug",
            "--hold debug",
            "--nice 5",
            "-",
            "--",
            "--hold -- x",
        ] {
            assert!(
                matches!(parse(s).unwrap_err(), FlagError::NotAFlag { .. }),
                "{s}"
            );
        }
        assert!(matches!(
            parse("--comment='open").unwrap_err(),
            FlagError::UnbalancedQuote(_)
        ));
    }

    #[test]
    fn no_control_character_anywhere() {
        for s in [
            "--time=5\n#SBATCH --uid=0",
            "--comment='a\nb'",
            "--time=5\r",
            "--comment=a\tb",
            "--comment=\u{0}",
            "--comment=\u{85}x",
        ] {
            assert!(
                matches!(parse(s).unwrap_err(), FlagError::Control { .. }),
                "{s:?}"
            );
        }
        // words given one by one are checked too
        let words = vec!["--comment".to_string(), "a\nb".to_string()];
        assert!(matches!(
            parse_words(&words).unwrap_err(),
            FlagError::Control { .. }
        ));
    }

    #[test]
    fn directives_cannot_smuggle_options() {
        // sbatch splits #SBATCH lines at blanks, honours quotes and backslashes,
        // and stops at '#': values are quoted so they stay one argument
        let d = |s: &str| {
            parse(s)
                .unwrap()
                .iter()
                .map(SbatchOpt::directive)
                .collect::<Vec<_>>()
        };
        assert_eq!(d("--comment='a --uid=0'"), [r#"--comment="a --uid=0""#]);
        assert_eq!(
            d(r#"--comment='say "hi" \o/'"#),
            [r#"--comment="say \"hi\" \\o/""#]
        );
        assert_eq!(d("--comment='x#y'"), [r#"--comment="x#y""#]);
        assert_eq!(d("--comment="), [r#"--comment="""#]);
        assert_eq!(d("--time-m 3"), ["--time-min=3"]);
        assert_eq!(
            d("-C 'a|b' --gres=gpu:1 -t 1-00:00"),
            ["--constraint=\"a|b\"", "--gres=gpu:1", "--time=1-00:00"]
        );
        assert_eq!(d("--hold"), ["--hold"]);
    }

    /// The same reading as sbatch's #SBATCH reader (src/sbatch/opt.c get_argument).
    fn sbatch_reads(line: &str) -> Vec<String> {
        let mut args = Vec::new();
        let mut it = line.chars().peekable();
        loop {
            while it.peek().is_some_and(|c| c.is_whitespace()) {
                it.next();
            }
            if it.peek().is_none() {
                return args;
            }
            let (mut arg, mut q, mut esc) = (String::new(), None, false);
            while let Some(&c) = it.peek() {
                if q.is_none() && c.is_whitespace() {
                    break;
                }
                it.next();
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                    continue;
                } else if let Some(qc) = q {
                    if c == qc {
                        q = None;
                        continue;
                    }
                } else if c == '"' || c == '\'' {
                    q = Some(c);
                    continue;
                } else if c == '#' {
                    return args;
                }
                arg.push(c);
            }
            args.push(arg);
        }
    }

    #[test]
    fn sbatch_reads_back_exactly_one_argument() {
        for v in [
            "a --uid=0",
            "x#y",
            r#"q"uo'te"#,
            r"back\slash\",
            "",
            "  lead",
            "hetjob",
        ] {
            let o = SbatchOpt {
                name: "comment",
                value: Some(v.to_string()),
                given: String::new(),
            };
            assert_eq!(
                sbatch_reads(&o.directive()),
                vec![format!("--comment={v}")],
                "{v:?}"
            );
        }
    }

    #[test]
    fn table_is_sbatchs() {
        // every long name is unique; aliases point at a real option with the same value
        for (i, o) in OPTIONS.iter().enumerate() {
            assert!(
                OPTIONS[..i].iter().all(|p| p.name != o.name),
                "{} twice",
                o.name
            );
            let c = lookup(o.canonical).unwrap();
            assert_eq!(c.canonical, c.name);
            assert_eq!(c.arg, o.arg);
        }
        let shorts: String = {
            let mut v: Vec<char> = OPTIONS.iter().filter_map(|o| o.short).collect();
            v.sort_unstable();
            v.into_iter().collect()
        };
        // sbatch 22.05's short options (`sbatch -X` for every letter)
        assert_eq!(shorts, "ABCDFGHJLMNOQSVWabcdehikmnopqstvwx");
        assert_eq!(lookup("--uid").unwrap().arg, Required);
        assert_eq!(lookup("nice").unwrap().arg, Optional);
        assert!(lookup("ui").is_none());
    }
}
