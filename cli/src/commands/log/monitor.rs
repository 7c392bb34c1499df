//! `quorate log monitor` (§18.13): fetches every node's head, holds it to the head kept last
//! time (append-only, by a consistency receipt), and cross-checks it against the heads other
//! nodes witnessed. Signed statements that cannot all be true become equivocation bundles
//! that `quorate verify` convicts offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use quorate_crypto::PublicKey;
use quorate_node::files::{read_limited, write_atomic};
use quorate_node::mesh::client::MeshClient;
use quorate_protocol::roster::Entry;
use quorate_protocol::tlog::{EquivocationBundle, MAX_SIGNED_DOC_LEN, TreeHead};
use quorate_verify::tlog::{Verdict, convict, verify_consistency, verify_tree_head};

use crate::commands::session::{MeshArgs, Session};

/// Arguments of `quorate log monitor`.
#[derive(clap::Args)]
#[command(
    after_help = "For each node the monitor keeps the latest head it verified in --state DIR\n\
(NODE.head) and, on the next run, requires a consistency receipt from that head to the new one\n\
(NODE.consistency): a log that shrank or whose old tree changed is reported. Heads that nodes\n\
witnessed of each other are compared with each node's own: two signed roots for one size, or\n\
a consistency receipt that contradicts a head, are written as DIR/evidence/*.equivocation,\n\
which `quorate verify DIR/evidence` convicts offline with the roster's keys.\n\n\
Exit status: 0 when every node answered and every check held, 1 otherwise.\n\n\
Example:\n  quorate log monitor --roster roster.cose --admin admin.pub --key monitor.key --state monitor/"
)]
pub struct MonitorArgs {
    /// Roster, roster authority and this monitor's key (a roster member).
    #[command(flatten)]
    mesh: MeshArgs,
    /// Directory holding the heads kept between runs and the evidence found.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Seconds each node may take to answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// A verified head of one log.
#[derive(Clone)]
struct Head {
    bytes: Vec<u8>,
    body: TreeHead,
}

fn verified(bytes: Vec<u8>, key: &PublicKey) -> anyhow::Result<Head> {
    let body = verify_tree_head(&bytes, key)?;
    Ok(Head { bytes, body })
}

/// What one sweep found, and what it says of it line by line.
#[derive(Default)]
pub struct Findings {
    /// The report, one line per finding.
    pub lines: Vec<String>,
    /// What is wrong, whether provable offline or not.
    pub problems: Vec<String>,
    /// Equivocation bundles written, each convicting its node (§18.8.5).
    pub evidence: Vec<PathBuf>,
}

impl Findings {
    fn say(&mut self, line: String) {
        self.lines.push(line);
    }

    fn problem(&mut self, text: String) {
        self.say(format!("PROBLEM   {text}"));
        self.problems.push(text);
    }
}

/// Runs `quorate log monitor`.
pub fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.mesh)?;
    let found = session.rt.block_on(async {
        let client = session.client(Duration::from_secs(args.timeout))?;
        let found = sweep(&client, &args.state).await;
        client.close();
        found
    })?;
    for line in &found.lines {
        println!("{line}");
    }
    for e in &found.evidence {
        println!("evidence  {} (check it with `quorate verify`)", e.display());
    }
    Ok(if found.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One pass over every node of the client's roster (§18.13), keeping heads in `state`.
pub async fn sweep(client: &MeshClient, state: &Path) -> anyhow::Result<Findings> {
    std::fs::create_dir_all(state.join("evidence"))
        .with_context(|| format!("cannot create {}", state.display()))?;
    let nodes: Vec<Entry> = client.roster.nodes().cloned().collect();
    let mut found = Findings::default();
    let mut own: BTreeMap<String, Head> = BTreeMap::new();
    let mut witnessed: Vec<(String, Head)> = Vec::new();
    for node in &nodes {
        let (head, seen) = match client.log_head(node).await {
            Ok(h) => h,
            Err(e) => {
                found.problem(format!("{}: no head: {e:#}", node.name));
                continue;
            }
        };
        let head = match verified(head, &node.key) {
            Ok(h) => h,
            Err(e) => {
                found.problem(format!("{}: its head does not verify: {e}", node.name));
                continue;
            }
        };
        found.say(format!(
            "head      {}: {} leaves, root {}…, {} peer heads witnessed",
            node.name,
            head.body.size,
            &hex::encode(head.body.root)[..16],
            seen.len()
        ));
        against_kept(client, node, &head, state, &mut found).await?;
        for w in seen {
            let Some(peer) = nodes
                .iter()
                .find(|n| TreeHead::parse(&w).is_ok_and(|h| h.sign1.kid == n.key.key_id()))
            else {
                continue;
            };
            match verified(w, &peer.key) {
                Ok(h) => witnessed.push((peer.name.clone(), h)),
                Err(e) => found.problem(format!(
                    "{}: witnessed a head of {} that does not verify: {e}",
                    node.name, peer.name
                )),
            }
        }
        own.insert(node.name.clone(), head);
    }
    let mut compared = 0;
    for (name, w) in &witnessed {
        let (Some(node), Some(head)) = (nodes.iter().find(|n| &n.name == name), own.get(name))
        else {
            continue;
        };
        compared += 1;
        let what = "a head another node witnessed";
        compare(client, node, head, w, what, state, &mut found).await?;
    }
    found.say(format!(
        "monitor   {} nodes, {} witnessed heads compared, {} problems, {} evidence bundles",
        nodes.len(),
        compared,
        found.problems.len(),
        found.evidence.len()
    ));
    Ok(found)
}

fn kept_path(state: &Path, node: &str) -> PathBuf {
    state.join(format!("{node}.head"))
}

/// Holds the node's new head to the one kept last time, then keeps the new one if it is an
/// extension of it.
async fn against_kept(
    client: &MeshClient,
    node: &Entry,
    head: &Head,
    state: &Path,
    found: &mut Findings,
) -> anyhow::Result<()> {
    let path = kept_path(state, &node.name);
    let kept = match read_limited(&path, MAX_SIGNED_DOC_LEN as u64) {
        Ok(bytes) => Some(
            verified(bytes, &node.key)
                .with_context(|| format!("kept head {} no longer verifies", path.display()))?,
        ),
        Err(_) => None,
    };
    let holds = match &kept {
        None => true,
        Some(kept) => {
            compare(
                client,
                node,
                kept,
                head,
                "the head kept last time",
                state,
                found,
            )
            .await?
        }
    };
    if holds && kept.as_ref().is_none_or(|k| k.body.size <= head.body.size) {
        write_atomic(&path, &head.bytes, 0o644)?;
        if let Some(k) = kept.filter(|k| k.body.size < head.body.size) {
            found.say(format!(
                "append-only {}: {} → {} leaves, linked by its consistency receipt",
                node.name, k.body.size, head.body.size
            ));
        }
    }
    Ok(())
}

/// Compares two verified heads of one log: the same size must have the same root, and a
/// larger tree must extend the smaller by the node's consistency receipt. Returns whether
/// they agree; otherwise records the problem and, when the node's own statements
/// contradict each other, writes the bundle that proves it.
async fn compare(
    client: &MeshClient,
    node: &Entry,
    a: &Head,
    b: &Head,
    what: &str,
    state: &Path,
    found: &mut Findings,
) -> anyhow::Result<bool> {
    let (small, big) = if a.body.size <= b.body.size {
        (a, b)
    } else {
        (b, a)
    };
    if small.body.size == big.body.size {
        if small.body.root == big.body.root {
            return Ok(true);
        }
        found.problem(format!(
            "{}: two roots for {} leaves ({what}): a split view",
            node.name, small.body.size
        ));
        bundle(node, a, b, None, state, found)?;
        return Ok(false);
    }
    if small.body.size == 0 {
        return Ok(true);
    }
    let receipt = match client
        .log_consistency(node, small.body.size, big.body.size)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let shrank = b.body.size < a.body.size;
            found.problem(format!(
                "{}: no consistency proof from {} to {} leaves ({what}{}): {e:#}",
                node.name,
                small.body.size,
                big.body.size,
                if shrank { "; the log shrank" } else { "" }
            ));
            return Ok(false);
        }
    };
    match verify_consistency(&receipt, &small.bytes, &big.bytes, &node.key) {
        Ok(_) => {
            write_atomic(
                &state.join(format!("{}.consistency", node.name)),
                &receipt,
                0o644,
            )?;
            Ok(true)
        }
        Err(e) => {
            found.problem(format!(
                "{}: its log of {} leaves is not a prefix of its log of {} ({what}): {e}",
                node.name, small.body.size, big.body.size
            ));
            bundle(node, small, big, Some(receipt), state, found)?;
            Ok(false)
        }
    }
}

/// Writes the bundle of these documents if it convicts the node (§18.8.5).
fn bundle(
    node: &Entry,
    a: &Head,
    b: &Head,
    consistency: Option<Vec<u8>>,
    state: &Path,
    found: &mut Findings,
) -> anyhow::Result<()> {
    let bytes = EquivocationBundle {
        head_a: a.bytes.clone(),
        head_b: b.bytes.clone(),
        consistency,
    }
    .to_cbor()?;
    match convict(&bytes, &node.key) {
        Verdict::Equivocated(e) => {
            let path = state
                .join("evidence")
                .join(format!("{}-{}.equivocation", node.name, e.size));
            write_atomic(&path, &bytes, 0o644)?;
            found.say(format!(
                "EQUIVOCATION {}: two signed roots for {} leaves; bundle {}",
                node.name,
                e.size,
                path.display()
            ));
            found.evidence.push(path);
        }
        Verdict::NotProven(why) => found.say(format!(
            "note      {}: the documents do not prove equivocation offline ({why:?})",
            node.name
        )),
    }
    Ok(())
}
