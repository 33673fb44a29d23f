//! Job kinds a worker declares (`[jobs.NAME]` in its configuration) and the checks every submitted
//! job passes before anything runs: the kind exists, every parameter is declared and well formed,
//! every input is declared and present. The command is the declared argument list with its
//! placeholders filled in; no shell ever sees it, and nothing the client sends becomes a program.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// One job kind, as declared in `[jobs.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    /// The program and its arguments; `{input.NAME}`, `{param.NAME}`, `{output}` and `{job}` are
    /// replaced by the input's path, the parameter's value, the output directory and the job id.
    pub command: Vec<String>,
    /// The input files a job of this kind takes, all required.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The parameters a job of this kind takes.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Jobs of this kind that may run at once on this worker.
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Seconds a job may run before it is stopped (none when absent).
    #[serde(default)]
    pub time_limit_secs: Option<u64>,
    /// Seconds between SIGINT and SIGTERM, and between SIGTERM and SIGKILL, when a job is stopped.
    #[serde(default = "ten")]
    pub grace_secs: u64,
    /// Environment variables set for the job (besides `PATH` and `HOME` of the worker).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn one() -> usize {
    1
}
fn ten() -> u64 {
    10
}

/// What a parameter's value may be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A whole number (within `min` / `max` if given).
    Int,
    /// A number (within `min` / `max` if given).
    Float,
    /// Letters, digits and `._-`, at most 256 of them.
    #[default]
    Word,
    /// One of `values`.
    Choice,
}

/// One declared parameter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// What its value may be.
    #[serde(rename = "type", default)]
    pub kind: ParamType,
    /// The value when the job gives none (without one, the parameter is required).
    #[serde(default)]
    pub default: Option<String>,
    /// The smallest number allowed (int, float).
    #[serde(default)]
    pub min: Option<f64>,
    /// The largest number allowed (int, float).
    #[serde(default)]
    pub max: Option<f64>,
    /// The allowed values (choice).
    #[serde(default)]
    pub values: Vec<String>,
}

/// Why a job was refused: the field at fault (`kind`, `param.NAME`, `input.NAME`, `worker`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The field at fault.
    pub field: String,
    /// Why, for a person.
    pub reason: String,
}

impl Rejection {
    /// A rejection of `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Whether `s` is a name of an input, a parameter or a kind: 1-64 of `[A-Za-z0-9_-]`.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ParamSpec {
    /// Checks `value` against the declaration.
    fn check(&self, value: &str) -> Result<(), String> {
        let number = |v: f64| match (self.min, self.max) {
            (Some(min), _) if v < min => Err(format!("{value} is below the minimum {min}")),
            (_, Some(max)) if v > max => Err(format!("{value} is above the maximum {max}")),
            _ => Ok(()),
        };
        match self.kind {
            ParamType::Int => {
                number(value.parse::<i64>().map_err(|_| format!("`{value}` is not a whole number"))? as f64)
            }
            ParamType::Float => {
                let v: f64 = value.parse().map_err(|_| format!("`{value}` is not a number"))?;
                if !v.is_finite() {
                    return Err(format!("`{value}` is not a finite number"));
                }
                number(v)
            }
            ParamType::Word if value.is_empty() || value.len() > 256 => Err("must be 1 to 256 characters".into()),
            ParamType::Word if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) => {
                Err(format!("`{value}` may hold only letters, digits and . _ -"))
            }
            ParamType::Word => Ok(()),
            ParamType::Choice if self.values.iter().any(|v| v == value) => Ok(()),
            ParamType::Choice => Err(format!("`{value}` is not one of {}", self.values.join(", "))),
        }
    }
}

/// The job kinds of one worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kinds(pub BTreeMap<String, KindSpec>);

impl Kinds {
    /// Parses the `[jobs]` section of a worker's configuration (`null` when absent) and checks
    /// each declaration: names, a command, placeholders that name declared inputs and parameters.
    pub fn from_section(section: &serde_json::Value) -> Result<Self, String> {
        if section.is_null() {
            return Ok(Self::default());
        }
        let kinds: BTreeMap<String, KindSpec> =
            serde_json::from_value(section.clone()).map_err(|e| format!("[jobs]: {e}"))?;
        for (name, kind) in &kinds {
            kind.validate().map_err(|e| format!("[jobs.{name}]: {e}"))?;
            if !valid_name(name) {
                return Err(format!("[jobs.{name}]: a kind's name is 1-64 of A-Z a-z 0-9 _ -"));
            }
        }
        Ok(Self(kinds))
    }

    /// Checks a submitted job: its kind, parameters (defaults filled in) and input names.
    pub fn check(
        &self,
        kind: &str,
        params: &BTreeMap<String, String>,
        inputs: &[String],
    ) -> Result<(&KindSpec, BTreeMap<String, String>), Rejection> {
        let spec = self.0.get(kind).ok_or_else(|| {
            let known: Vec<&str> = self.0.keys().map(String::as_str).collect();
            Rejection::new("kind", format!("no job kind `{kind}` on this worker (it runs: {})", known.join(", ")))
        })?;
        if let Some(name) = params.keys().find(|n| !spec.params.contains_key(*n)) {
            let known: Vec<&str> = spec.params.keys().map(String::as_str).collect();
            return Err(Rejection::new(
                format!("param.{name}"),
                format!("not a parameter of {kind} (it takes: {})", known.join(", ")),
            ));
        }
        let mut values = BTreeMap::new();
        for (name, p) in &spec.params {
            let field = format!("param.{name}");
            let value = params.get(name).or(p.default.as_ref()).ok_or_else(|| Rejection::new(&field, "required"))?;
            p.check(value).map_err(|why| Rejection::new(&field, why))?;
            values.insert(name.clone(), value.clone());
        }
        if let Some(name) = inputs.iter().find(|n| !spec.inputs.contains(n)) {
            return Err(Rejection::new(format!("input.{name}"), format!("not an input of {kind}")));
        }
        if let Some(name) = spec.inputs.iter().find(|n| !inputs.contains(n)) {
            return Err(Rejection::new(format!("input.{name}"), "required"));
        }
        Ok((spec, values))
    }
}

impl KindSpec {
    fn validate(&self) -> Result<(), String> {
        if self.command.is_empty() {
            return Err("command is empty".into());
        }
        if self.concurrency == 0 {
            return Err("concurrency 0 would never run a job".into());
        }
        if let Some(bad) = self.inputs.iter().chain(self.params.keys()).find(|n| !valid_name(n)) {
            return Err(format!("`{bad}`: a name is 1-64 of A-Z a-z 0-9 _ -"));
        }
        for arg in &self.command {
            for hole in placeholders(arg) {
                let known = match hole.split_once('.') {
                    Some(("input", n)) => self.inputs.iter().any(|i| i == n),
                    Some(("param", n)) => self.params.contains_key(n),
                    _ => hole == "output" || hole == "job",
                };
                if !known {
                    return Err(format!("`{{{hole}}}` in command names no declared input or parameter"));
                }
            }
        }
        for (name, p) in &self.params {
            if p.kind == ParamType::Choice && p.values.is_empty() {
                return Err(format!("param {name}: a choice needs values"));
            }
            if let Some(d) = &p.default {
                p.check(d).map_err(|e| format!("param {name}: default {e}"))?;
            }
        }
        Ok(())
    }

    /// The time limit, if any.
    pub fn time_limit(&self) -> Option<Duration> {
        self.time_limit_secs.map(Duration::from_secs)
    }

    /// The argument list of one job: placeholders filled with `params`, input paths (by name),
    /// the output directory and the job id.
    pub fn argv(
        &self,
        params: &BTreeMap<String, String>,
        inputs: &BTreeMap<String, std::path::PathBuf>,
        output: &Path,
        job: &str,
    ) -> Vec<String> {
        self.command
            .iter()
            .map(|arg| {
                let mut out = arg.clone();
                for hole in placeholders(arg) {
                    let value = match hole.split_once('.') {
                        Some(("input", n)) => inputs.get(n).map(|p| p.to_string_lossy().into_owned()),
                        Some(("param", n)) => params.get(n).cloned(),
                        _ if hole == "output" => Some(output.to_string_lossy().into_owned()),
                        _ => Some(job.to_string()),
                    };
                    out = out.replace(&format!("{{{hole}}}"), &value.unwrap_or_default());
                }
                out
            })
            .collect()
    }
}

/// The `{...}` names in `arg`.
fn placeholders(arg: &str) -> Vec<&str> {
    let mut holes = Vec::new();
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else { break };
        holes.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    holes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds() -> Kinds {
        Kinds::from_section(&json!({ "train": {
            "command": ["mesh-train", "--data", "{input.data}", "--epochs", "{param.epochs}", "--out", "{output}"],
            "inputs": ["data"],
            "params": { "epochs": { "type": "int", "default": "3", "min": 1, "max": 100 },
                        "mode": { "type": "choice", "values": ["fast", "full"], "default": "fast" } },
        }}))
        .expect("valid kinds")
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_good_job_gets_its_defaults_and_a_filled_in_command() {
        let kinds = kinds();
        let (spec, values) = kinds.check("train", &params(&[("epochs", "7")]), &["data".into()]).expect("accepted");
        assert_eq!(values, params(&[("epochs", "7"), ("mode", "fast")]));
        let inputs = [("data".to_string(), std::path::PathBuf::from("/j/in/data/x.csv"))].into_iter().collect();
        let argv = spec.argv(&values, &inputs, Path::new("/j/out"), "j1");
        assert_eq!(argv, ["mesh-train", "--data", "/j/in/data/x.csv", "--epochs", "7", "--out", "/j/out"]);
    }

    #[test]
    fn each_bad_field_is_named_with_its_reason() {
        let kinds = kinds();
        let data = ["data".to_string()];
        let field = |kind: &str, p: &[(&str, &str)], inputs: &[String]| {
            kinds.check(kind, &params(p), inputs).err().map(|r| r.field).unwrap_or_default()
        };
        assert_eq!(field("mine", &[], &data), "kind");
        assert_eq!(field("train", &[("epochs", "abc")], &data), "param.epochs");
        assert_eq!(field("train", &[("epochs", "1000")], &data), "param.epochs");
        assert_eq!(field("train", &[("epochs", "2; rm -rf /")], &data), "param.epochs");
        assert_eq!(field("train", &[("mode", "fastest")], &data), "param.mode");
        assert_eq!(field("train", &[("shell", "sh")], &data), "param.shell");
        assert_eq!(field("train", &[], &[]), "input.data");
        assert_eq!(field("train", &[], &["data".into(), "extra".into()]), "input.extra");
        let why = kinds.check("train", &params(&[("epochs", "0")]), &data).expect_err("below min");
        assert!(why.reason.contains("minimum"), "{why}");
    }

    #[test]
    fn a_declaration_naming_an_undeclared_placeholder_is_refused_at_start() {
        let bad = Kinds::from_section(&json!({ "t": { "command": ["x", "{param.nope}"] } }));
        assert!(bad.expect_err("refused").contains("{param.nope}"));
        assert!(Kinds::from_section(&json!({ "t": { "command": [] } })).is_err());
        assert!(Kinds::from_section(&json!({ "t": { "command": ["x"], "shell": true } })).is_err());
        assert!(Kinds::from_section(&json!({ "bad name": { "command": ["x"] } })).is_err());
    }
}
