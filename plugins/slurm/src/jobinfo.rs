//! What Slurm says about jobs: `squeue --json` (22.05's flat fields, tolerant of the
//! `{set, infinite, number}` objects and state arrays of newer releases) and
//! `scontrol -o show job N` for jobs that left the queue.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

/// One job, as much as the plugin needs of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobInfo {
    pub job_id: u64,
    /// Base state: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...
    pub state: String,
    /// Slurm's reason (`Priority`, `Resources`, `JobHeldUser`, `NonZeroExitCode`...).
    pub reason: String,
    /// Exit code and signal, when the job has ended.
    pub exit: Option<(i32, i32)>,
    /// Unix seconds.
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
}

const BASE_STATES: &[&str] = &[
    "PENDING",
    "RUNNING",
    "SUSPENDED",
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
];

impl JobInfo {
    /// Has the job ended (whatever the way)?
    pub fn is_finished(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING" | "RUNNING" | "SUSPENDED" | "CONFIGURING" | "REQUEUED" | ""
        )
    }
}

/// A number, or `{"set": true, "number": N}` (Slurm 23.02+); unset/infinite = None.
fn num(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) => {
            if o.get("set").and_then(Value::as_bool) == Some(false)
                || o.get("infinite").and_then(Value::as_bool) == Some(true)
            {
                return None;
            }
            o.get("number").and_then(num)
        }
        _ => None,
    }
}

fn state_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let words: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            words
                .iter()
                .find(|w| BASE_STATES.contains(w))
                .or(words.first())
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// 22.05: a raw wait status; newer: `{"return_code": .., "signal": {"id": ..}}`.
fn exit_of(v: &Value) -> Option<(i32, i32)> {
    match v {
        Value::Number(_) => {
            let w = num(v)?;
            Some((((w >> 8) & 0xff) as i32, (w & 0x7f) as i32))
        }
        Value::Object(o) => {
            let code = o.get("return_code").and_then(num);
            let sig = o.get("signal").and_then(|s| match s {
                Value::Object(so) => so
                    .get("id")
                    .and_then(num)
                    .or_else(|| so.get("signal_id").and_then(num)),
                other => num(other),
            });
            if code.is_none() && sig.is_none() {
                return o
                    .get("number")
                    .and_then(num)
                    .map(|w| (((w >> 8) & 0xff) as i32, (w & 0x7f) as i32));
            }
            Some((code.unwrap_or(0) as i32, sig.unwrap_or(0) as i32))
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct RawJob {
    job_id: Value,
    #[serde(default)]
    job_state: Value,
    #[serde(default)]
    state_reason: Value,
    #[serde(default)]
    exit_code: Value,
    #[serde(default)]
    start_time: Value,
    #[serde(default)]
    end_time: Value,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    jobs: Vec<RawJob>,
    #[serde(default)]
    errors: Vec<Value>,
}

/// Parse `squeue --json` into jobs by id.
pub fn parse_squeue_json(bytes: &[u8]) -> Result<HashMap<u64, JobInfo>, String> {
    let doc: Doc = serde_json::from_slice(bytes)
        .map_err(|e| format!("squeue --json: unreadable answer: {e}"))?;
    if doc.jobs.is_empty()
        && let Some(e) = doc.errors.first()
    {
        let field = |k: &str| e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let msg = match (field("source"), field("description"), field("error")) {
            (src, Some(d), Some(er)) => format!(
                "{}{d} ({er})",
                src.map(|s| format!("{s}: ")).unwrap_or_default()
            ),
            (src, Some(m), None) | (src, None, Some(m)) => {
                format!("{}{m}", src.map(|s| format!("{s}: ")).unwrap_or_default())
            }
            _ => e.to_string(),
        };
        if !msg.is_empty() {
            return Err(format!("squeue --json: {msg}"));
        }
    }
    let mut out = HashMap::with_capacity(doc.jobs.len());
    for j in doc.jobs {
        let Some(id) = num(&j.job_id).and_then(|n| u64::try_from(n).ok()) else {
            continue;
        };
        let state = state_of(&j.job_state);
        let start = num(&j.start_time).filter(|t| *t > 0);
        let end = num(&j.end_time).filter(|t| *t > 0);
        let mut info = JobInfo {
            job_id: id,
            reason: j.state_reason.as_str().unwrap_or("").to_string(),
            exit: None,
            start_time: start,
            end_time: end,
            state,
        };
        if info.is_finished() {
            info.exit = exit_of(&j.exit_code);
        }
        out.insert(id, info);
    }
    Ok(out)
}

/// `Key=Value` pairs of one `scontrol -o` line (values may hold spaces).
pub fn parse_scontrol_line(line: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    for tok in line.split_whitespace() {
        match tok.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/:_".contains(c)) =>
            {
                out.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            _ => {
                if let Some(k) = &last
                    && let Some(v) = out.get_mut(k)
                {
                    v.push(' ');
                    v.push_str(tok);
                }
            }
        }
    }
    out
}

/// A time as scontrol prints it (the controller's local time), as Unix seconds.
fn scontrol_time(s: &str) -> Option<i64> {
    let dt: jiff::civil::DateTime = s.parse().ok()?;
    let z = dt.to_zoned(jiff::tz::TimeZone::system()).ok()?;
    Some(z.timestamp().as_second())
}

/// Parse `scontrol -o show job N`.
pub fn parse_scontrol_job(out: &str) -> Option<JobInfo> {
    let line = out.lines().find(|l| l.starts_with("JobId="))?;
    let kv = parse_scontrol_line(line);
    let job_id = kv.get("JobId")?.parse().ok()?;
    let state = kv.get("JobState").cloned().unwrap_or_default();
    let mut info = JobInfo {
        job_id,
        reason: kv.get("Reason").cloned().unwrap_or_default(),
        exit: None,
        start_time: kv.get("StartTime").and_then(|s| scontrol_time(s)),
        end_time: kv.get("EndTime").and_then(|s| scontrol_time(s)),
        state,
    };
    if info.is_finished() {
        info.exit = kv.get("ExitCode").and_then(|e| {
            let (c, s) = e.split_once(':')?;
            Some((c.parse().ok()?, s.parse().ok()?))
        });
    } else {
        info.end_time = None;
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUEUE_2205: &str = r#"{"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "errors": [], "jobs": [
      {"account": "", "job_id": 1, "job_state": "FAILED", "exit_code": 768, "state_reason": "NonZeroExitCode",
       "start_time": 1795333069, "end_time": 1795333071, "cpus_per_task": null, "array_task_id": null},
      {"job_id": 2, "job_state": "PENDING", "exit_code": 0, "state_reason": "Resources", "start_time": 0, "end_time": 0},
      {"job_id": 3, "job_state": "CANCELLED", "exit_code": 15, "state_reason": "None", "start_time": 1795333069, "end_time": 1795333080},
      {"job_id": 4, "job_state": "RUNNING", "exit_code": 0, "state_reason": "None", "start_time": 1795333069, "end_time": 1795336669}
    ]}"#;

    #[test]
    fn slurm_22_05() {
        let jobs = parse_squeue_json(SQUEUE_2205.as_bytes()).unwrap();
        assert_eq!(jobs.len(), 4);
        let j = &jobs[&1];
        assert_eq!(
            (j.state.as_str(), j.reason.as_str(), j.exit),
            ("FAILED", "NonZeroExitCode", Some((3, 0)))
        );
        assert_eq!(
            (j.start_time, j.end_time),
            (Some(1795333069), Some(1795333071))
        );
        assert_eq!(
            (jobs[&2].state.as_str(), jobs[&2].start_time, jobs[&2].exit),
            ("PENDING", None, None)
        );
        assert_eq!(jobs[&3].exit, Some((0, 15)));
        assert!(!jobs[&4].is_finished() && jobs[&4].exit.is_none());
    }

    #[test]
    fn newer_slurm_objects_and_arrays() {
        let doc = r#"{"meta": {}, "warnings": [], "errors": [], "jobs": [
          {"job_id": 7, "job_state": ["COMPLETED"], "state_reason": "None", "new_field": {"x": [1]},
           "exit_code": {"status": ["EXITED"], "return_code": {"set": true, "infinite": false, "number": 0},
                         "signal": {"id": {"set": false, "infinite": false, "number": 0}, "name": ""}},
           "start_time": {"set": true, "infinite": false, "number": 1795333069},
           "end_time": {"set": true, "infinite": false, "number": 1795333070}},
          {"job_id": 8, "job_state": ["RUNNING", "COMPLETING"], "state_reason": "None",
           "exit_code": {"status": ["PENDING"], "return_code": {"set": false, "number": 0}},
           "start_time": {"set": true, "number": 1795333069}, "end_time": {"set": false, "infinite": true, "number": 0}},
          {"job_id": 9, "job_state": ["TIMEOUT"], "state_reason": "None",
           "exit_code": {"status": ["SIGNALED"], "return_code": {"set": true, "number": 0}, "signal": {"id": {"set": true, "number": 9}, "name": "KILL"}}}
        ]}"#;
        let jobs = parse_squeue_json(doc.as_bytes()).unwrap();
        assert_eq!(
            (jobs[&7].state.as_str(), jobs[&7].exit, jobs[&7].start_time),
            ("COMPLETED", Some((0, 0)), Some(1795333069))
        );
        assert_eq!(
            (jobs[&8].state.as_str(), jobs[&8].end_time, jobs[&8].exit),
            ("RUNNING", None, None)
        );
        assert_eq!(jobs[&9].exit, Some((0, 9)));
    }

    #[test]
    fn errors_and_garbage() {
        let e = parse_squeue_json(br#"{"errors": [{"error": "Unable to contact slurm controller", "error_number": 1}], "jobs": []}"#)
            .unwrap_err();
        assert!(e.contains("Unable to contact"), "{e}");
        // what 22.05 says while slurmctld is down
        let e = parse_squeue_json(br#"{"errors": [{"description": "Failed while looking for jobs", "error_number": -1, "error": "Unspecified error", "source": "slurm_load_jobs"}], "jobs": []}"#)
            .unwrap_err();
        assert_eq!(
            e,
            "squeue --json: slurm_load_jobs: Failed while looking for jobs (Unspecified error)"
        );
        assert!(parse_squeue_json(b"not json").is_err());
        assert!(parse_squeue_json(br#"{"jobs": []}"#).unwrap().is_empty());
    }

    #[test]
    fn scontrol_one_line() {
        let out = "JobId=1 JobName=wrap UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:02 SubmitTime=2026-11-22T07:37:47 StartTime=2026-11-22T07:37:49 EndTime=2026-11-22T07:37:51 Command=/a b/job.sh WorkDir=/tmp\n";
        let j = parse_scontrol_job(out).unwrap();
        assert_eq!(
            (j.job_id, j.state.as_str(), j.reason.as_str(), j.exit),
            (1, "FAILED", "NonZeroExitCode", Some((3, 0)))
        );
        assert_eq!(j.end_time.unwrap() - j.start_time.unwrap(), 2);
        let kv = parse_scontrol_line(out.trim());
        assert_eq!(kv["Command"], "/a b/job.sh");
        let c = parse_scontrol_job("JobId=5 JobState=CANCELLED Reason=None ExitCode=0:15 StartTime=Unknown EndTime=Unknown").unwrap();
        assert_eq!((c.exit, c.start_time), (Some((0, 15)), None));
        assert!(parse_scontrol_job("slurm_load_jobs error: Invalid job id specified").is_none());
    }
}
