//! Members of the room that try to break the job rules, against a real job server on the
//! in-memory plugins: another client without the key polls, cancels, takes over the job's id;
//! garbage and huge numbers in asks; an input that names a path; a flood of asks. The owner's
//! job runs on to its end through all of it.

use mesh_core::memory::{MemoryNetwork, MemorySignaler, MemoryTransport};
use mesh_core::{DataError, MeshNode, PeerId, Role};
use mesh_job::client::{self, JobSpec, Ticket};
use mesh_job::wire::{Answer, Ask, FileRef, JobState, PROTOCOL};
use mesh_job::{Kinds, WorkerJobs};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn start(net: &MemoryNetwork, name: &str, role: Role) -> MeshNode {
    let options = mesh_core::testing::options("jobs", name, role, 0);
    let transport = Arc::new(MemoryTransport::new(net.clone(), options.identity.peer.clone(), Duration::from_secs(5)));
    let signalers: Vec<Arc<dyn mesh_core::Signaler>> = vec![Arc::new(MemorySignaler::new(net.clone()))];
    MeshNode::start(options, transport, signalers).await.expect("node starts")
}

fn kinds() -> Kinds {
    let train = env!("CARGO_BIN_EXE_mesh-train");
    Kinds::from_section(&serde_json::json!({ "train": {
        "command": [train, "--data", "{input.data}", "--epochs", "{param.epochs}", "--epoch-ms", "50", "--out", "{output}"],
        "inputs": ["data"],
        "params": { "epochs": { "type": "int", "default": "3", "min": 1, "max": 1000 } },
    }}))
    .expect("kinds")
}

async fn ask(node: &MeshNode, to: &PeerId, ask: &Ask) -> Answer {
    client::ask(node, to, ask, WAIT).await.expect("answered")
}

fn rejected_field(answer: Answer) -> String {
    match answer {
        Answer::Rejected(r) => r.field,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn another_member_cannot_read_stop_or_take_over_a_job_and_garbage_is_refused() {
    let net = MemoryNetwork::new();
    let dir = std::env::temp_dir().join(format!("mesh-job-rogue-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let worker = Arc::new(start(&net, "w0", Role::Worker).await);
    let jobs = WorkerJobs { kinds: kinds(), root: dir.join("worker"), keep: Duration::from_secs(600) };
    let server = mesh_job::serve(worker.clone(), jobs).await.expect("job server");
    let owner = start(&net, "owner", Role::Client).await;
    let thief = start(&net, "thief", Role::Client).await;
    for c in [&owner, &thief] {
        mesh_core::testing::wait_links(c, 1, WAIT).await.expect("linked to the worker");
    }
    let w0 = worker.peer_id().clone();
    std::fs::create_dir_all(&dir).expect("dir");
    let data = dir.join("data.bin");
    std::fs::write(&data, vec![5u8; 100_000]).expect("data");

    let spec = JobSpec {
        kind: "train".into(),
        params: [("epochs".to_string(), "40".to_string())].into_iter().collect(),
        inputs: [("data".to_string(), data.clone())].into_iter().collect(),
    };
    let inputs = client::offer_inputs(&owner, &spec).await.expect("inputs served");
    let mut ticket = Ticket::new(spec);
    client::place(&owner, std::slice::from_ref(&w0), &mut ticket, &inputs).await.expect("placed");
    let job = ticket.job.clone();
    let wrong = "k".repeat(32);

    // Without the key: no log, no cancel, no second job under the same id.
    let poll = Ask::Poll { job: job.clone(), key: wrong.clone(), from: 0, wait_ms: 0 };
    assert_eq!(rejected_field(ask(&thief, &w0, &poll).await), "job");
    let cancel = Ask::Cancel { job: job.clone(), key: wrong.clone(), now: true };
    assert_eq!(rejected_field(ask(&thief, &w0, &cancel).await), "job");
    let steal = Ask::Submit {
        job: job.clone(),
        key: wrong.clone(),
        kind: "train".into(),
        params: Default::default(),
        inputs: inputs.clone(),
    };
    assert_eq!(rejected_field(ask(&thief, &w0, &steal).await), "job");
    // The owner's own key, sent by another member, is the owner's word: the key is the secret.
    // Huge numbers: a poll from past the end and a wait beyond the cap come back at once.
    let far = Ask::Poll { job: job.clone(), key: ticket.key.clone(), from: u64::MAX, wait_ms: u64::MAX };
    let started = std::time::Instant::now();
    match ask(&owner, &w0, &far).await {
        Answer::Log { lines, .. } => assert!(lines.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(31), "the wait is capped at 30 s");
    // An input that names a path, a short key, a bad id, a kind the worker does not run.
    let mut sneaky = inputs.clone();
    sneaky[0].file = "../../etc/passwd".into();
    let attempts = [
        (
            Ask::Submit {
                job: "j2".into(),
                key: wrong.clone(),
                kind: "train".into(),
                params: Default::default(),
                inputs: sneaky,
            },
            "input.data",
        ),
        (
            Ask::Submit {
                job: "j3".into(),
                key: "short".into(),
                kind: "train".into(),
                params: Default::default(),
                inputs: inputs.clone(),
            },
            "key",
        ),
        (
            Ask::Submit {
                job: "../j".into(),
                key: wrong.clone(),
                kind: "train".into(),
                params: Default::default(),
                inputs: inputs.clone(),
            },
            "job",
        ),
        (
            Ask::Submit {
                job: "j4".into(),
                key: wrong.clone(),
                kind: "sh".into(),
                params: Default::default(),
                inputs: inputs.clone(),
            },
            "kind",
        ),
        (
            Ask::Submit {
                job: "j5".into(),
                key: wrong.clone(),
                kind: "train".into(),
                params: Default::default(),
                inputs: vec![FileRef { blob: "zz".into(), ..inputs[0].clone() }],
            },
            "input.data",
        ),
    ];
    for (bad, field) in attempts {
        assert_eq!(rejected_field(ask(&thief, &w0, &bad).await), field, "{bad:?}");
    }
    // Bytes that are not an ask, and a flood of asks, are refused and nothing else is disturbed.
    let garbage = thief.request(&w0, PROTOCOL, b"{\"ask\": \"rm -rf\"}".to_vec(), WAIT).await;
    assert!(matches!(garbage, Err(DataError::Refused(ref why)) if why.contains("not a job ask")), "{garbage:?}");
    let flood = (0..300).map(|_| client::ask(&thief, &w0, &poll, WAIT));
    let answers = futures::future::join_all(flood).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(Answer::Rejected(_)) | Err(DataError::Refused(_)))), "all refused");

    // Anyone may list; the owner's job is there and runs to its end.
    match ask(&thief, &w0, &Ask::List).await {
        Answer::Listed { jobs } => assert!(jobs.iter().any(|j| j.job == job && j.owner == "owner"), "{jobs:?}"),
        other => panic!("{other:?}"),
    }
    let end = tokio::time::timeout(WAIT, client::follow(&owner, &mut ticket, |_, _| {})).await.expect("in time");
    assert!(matches!(end, Ok(JobState::Exited { code: Some(0), .. })), "the owner's job ran on: {end:?}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
