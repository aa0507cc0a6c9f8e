//! Validation must never reject what CPython 3.11 accepts: a corpus of real-world-shaped
//! scripts (tests/corpus), each checked against CPython itself and against the validator.
use super::*;
use std::path::PathBuf;

fn corpus() -> Vec<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/corpus")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("corpus file");
            (p, text)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus is missing files");
    files
}

#[test]
fn cpython_accepts_every_corpus_script() {
    // The ground truth: the corpus itself must be valid Python 3.11.
    for (path, _) in corpus() {
        let status = std::process::Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import sys; compile(open(sys.argv[1], encoding='utf-8').read(), sys.argv[1], 'exec')",
            ])
            .arg(&path)
            .status()
            .expect("run /usr/bin/python3");
        assert!(status.success(), "CPython rejects {}", path.display());
    }
}

#[test]
fn the_validator_accepts_every_corpus_script() {
    for (path, text) in corpus() {
        if let Err(e) = validate(&text) {
            panic!("{} rejected: {} {:?}", path.display(), e.message, e.fields);
        }
    }
}

/// Scripts at the edges of what rustpython and CPython agree on.
const EDGE_CASES: &[&str] = &[
    "def main():\n  \treturn 1\n",
    "def main():\n\t  return 1\n",
    "def main():\n        x = 1\n\treturn x\n",
    "if True:\n\tdef main():\n\t\treturn [1,\n  \t 2]\n",
    "def main():\n\tif 1:\n        \treturn 1\n",
    "def \u{ff4d}\u{ff41}\u{ff49}\u{ff4e}():\n    return 1\n",
    "def \u{1d52a}\u{1d51e}\u{1d526}\u{1d52b}():\n    return 1\n",
    "def m\u{ff41}in():\n    return 1\n",
    "def caf\u{e9}():\n    return 1\n",
    "def main():\n    return 1\n\x0c\n",
    "def main():\n    s = '''\n\t  text\n'''\n    return s\n",
    "class C:\n    def main(self): pass\n",
    "def main(:\n    pass\n",
    "def main():\n  return 1\n return 2\n",
];

/// What CPython 3.11 says of each script: whether it compiles, and whether it defines
/// `main` in module scope (by its own NFKC-normalised name).
fn cpython_verdicts(scripts: &[String]) -> Vec<(bool, bool)> {
    let judge = r#"
import ast, json, sys
def defs(body):
    for s in body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield s.name
        elif not isinstance(s, ast.ClassDef):
            for field in ("body", "orelse", "finalbody"):
                yield from defs(getattr(s, field, []))
            for part in getattr(s, "handlers", []) + getattr(s, "cases", []):
                yield from defs(part.body)
out = []
for src in json.load(sys.stdin):
    try:
        tree = compile(src, "<script>", "exec", ast.PyCF_ONLY_AST)
    except (SyntaxError, ValueError):
        out.append([False, False])
        continue
    out.append([True, "main" in set(defs(tree.body))])
json.dump(out, sys.stdout)
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", judge])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3");
    let input = serde_json::to_vec(scripts).expect("json");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write");
    let output = child.wait_with_output().expect("judge");
    assert!(output.status.success(), "the CPython judge failed");
    serde_json::from_slice(&output.stdout).expect("judge's verdicts")
}

#[test]
fn the_validator_agrees_with_cpython() {
    let mut scripts: Vec<String> = corpus().into_iter().map(|(_, text)| text).collect();
    scripts.extend(EDGE_CASES.iter().map(|s| s.to_string()));
    let verdicts = cpython_verdicts(&scripts);
    assert_eq!(verdicts.len(), scripts.len());
    for (script, (compiles, has_main)) in scripts.iter().zip(verdicts) {
        let ours = validate(script);
        let syntax_ok = !matches!(&ours, Err(e) if e.kind == ErrorKind::SyntaxError);
        assert_eq!(syntax_ok, compiles, "CPython and the validator disagree on:\n{script}");
        if compiles {
            let found_main = ours.is_ok();
            // Names it cannot normalise are left to the runner, never refused.
            assert!(
                found_main || !has_main,
                "main refused but CPython defines it:\n{script}"
            );
            if script.is_ascii() {
                assert_eq!(found_main, has_main, "main found differently:\n{script}");
            }
        }
    }
}

#[test]
fn the_validator_sees_the_data_imports_in_the_corpus() {
    for (path, text) in corpus() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let expected = name.starts_with("pandas") || name.starts_with("numpy");
        assert_eq!(validate(&text).unwrap().imports_data_libraries, expected, "{name}");
    }
}
