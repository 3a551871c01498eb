//! `retinaface-train <subcommand> --help`: every flag and argument says what it does, and every
//! optional flag that takes a value says its default.

use std::process::Command;

const SUBCOMMANDS: [&str; 9] = [
    "train",
    "bench",
    "eval",
    "export",
    "describe",
    "import",
    "detect",
    "torchscript",
    "rebatch",
];

/// One entry of a help text's `Options:` or `Arguments:` list.
#[derive(Debug)]
struct Entry {
    /// The flag as written (`--image-size <IMAGE_SIZE>`, `-h, --help`, `<IMAGES>...`).
    spec: String,
    /// Its description, lines joined.
    text: String,
}

/// The entries of a clap help text (short or long form).
fn entries(help: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut in_list = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_list = line == "Options:" || line == "Arguments:";
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if !in_list || trimmed.is_empty() {
            continue;
        }
        if indent < 8 && (trimmed.starts_with('-') || trimmed.starts_with(['<', '['])) {
            // The description may follow on the same line, after two spaces or more.
            let (spec, text) = match trimmed.find("  ") {
                Some(i) => (&trimmed[..i], trimmed[i..].trim()),
                None => (trimmed, ""),
            };
            out.push(Entry {
                spec: spec.to_string(),
                text: text.to_string(),
            });
        } else if let Some(entry) = out.last_mut() {
            entry.text = format!("{} {}", entry.text, trimmed).trim().to_string();
        }
    }
    out
}

/// The flags the usage line requires (those outside `[…]`), e.g. `--model` in
/// `Usage: retinaface-train export --model <MODEL> --output <OUTPUT>`.
fn required_flags(help: &str) -> Vec<String> {
    let usage = help
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .unwrap_or("");
    let mut depth = 0;
    let outside: String = usage
        .chars()
        .filter(|&c| {
            depth += i32::from(c == '[') - i32::from(c == ']');
            depth == 0 && c != ']'
        })
        .collect();
    outside
        .split(|c: char| c.is_whitespace() || c == '<' || c == '|')
        .filter(|w| w.starts_with("--"))
        .map(str::to_string)
        .collect()
}

/// What is wrong with a help text: entries without a description, and optional flags taking a
/// value whose description does not give its default.
fn problems(help: &str) -> Vec<String> {
    let required = required_flags(help);
    let entries = entries(help);
    let mut problems = Vec::new();
    if entries.is_empty() {
        problems.push("no options found".to_string());
    }
    for e in entries {
        let flag = e.spec.split(['[', ' ', '=']).next().unwrap_or("");
        if e.text.is_empty() {
            problems.push(format!("{}: no description", e.spec));
        } else if e.spec.starts_with("--")
            && e.spec.contains('<')
            && !required.iter().any(|r| r == flag)
            && !e.text.contains("default")
        {
            problems.push(format!("{}: no default in \"{}\"", e.spec, e.text));
        }
    }
    problems
}

fn help_of(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_retinaface-train"))
        .args([subcommand, "--help"])
        .output()
        .expect("retinaface-train runs");
    assert!(out.status.success(), "{subcommand} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

#[test]
fn every_flag_of_every_subcommand_says_what_it_does_and_its_default() {
    let mut all = Vec::new();
    for sub in SUBCOMMANDS {
        let help = help_of(sub);
        all.extend(problems(&help).into_iter().map(|p| format!("{sub}: {p}")));
        assert!(
            entries(&help).len() >= 3,
            "{sub}: too few entries parsed:\n{help}"
        );
    }
    assert!(all.is_empty(), "{all:#?}");
    // Defaults come from the configuration, the recipe's two say when which applies.
    let train = help_of("train");
    for expected in [
        "[default: 640]",
        "[default: 16,32;64,128;256,512]",
        "[default: 0.001; 0.0001 with --init (the fine-tune recipe)]",
        "[default: false; true with --init (the fine-tune recipe)]",
    ] {
        assert!(train.contains(expected), "{expected} missing:\n{train}");
    }
}

#[test]
fn the_check_finds_a_flag_without_a_description_or_default() {
    let help = "Do things

Usage: retinaface-train thing [OPTIONS] --model <MODEL>

Arguments:
  <IMAGES>...  Images

Options:
      --model <MODEL>
          Model file
      --size <SIZE>
          Side in pixels
      --quiet

      --mode <MODE>
          How [default: fast]
  -h, --help
          Print help
";
    assert_eq!(
        problems(help),
        [
            "--size <SIZE>: no default in \"Side in pixels\"",
            "--quiet: no description"
        ]
    );
    // Short form: descriptions on the flag's line.
    let short = "Usage: retinaface-train thing [OPTIONS]

Options:
      --size <SIZE>  Side in pixels [default: 640]
      --quiet
  -h, --help         Print help
";
    assert_eq!(problems(short), ["--quiet: no description"]);
}
