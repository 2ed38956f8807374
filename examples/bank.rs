//! Bank: transfers between account entities, each in a critical section that locks its
//! two accounts (Durable Functions' `LockAsync`), on the embedded fjall store.
//!
//! ```text
//! cargo run --release --example bank -- --store DIR --accounts 100 --transfers 1000
//! ```
//!
//! Every account is an entity (`Account`, key `acct-N`) that opens with
//! [`OPENING_BALANCE`]. Transfer `i` is the orchestration `transfer-i`, which moves an amount
//! drawn from `i` between two accounts drawn from `i`: it locks both, reads both balances,
//! withdraws from one (refused when the funds are short: the transfer fails with
//! `InsufficientFunds`, as some do), deposits to the other, reads both again, and fails
//! if anything else touched them in between (which the lock rules out). All transfers run
//! at once.
//!
//! Killed at any moment (kill -9) and run again on the same `DIR`, it resumes: the
//! transfers already started go on from their last checkpoint, the others start. Then it
//! checks, from the accounts' committed states, that every account holds its opening
//! balance plus what the completed transfers moved, each exactly once, and that no
//! refused transfer moved anything. Its last line is
//! `bank: T transfers across A accounts, total balance unchanged` (exit 0), or what is
//! wrong (exit 1). A `DIR` from a run with other `--accounts`/`--transfers` is refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use durable_core::{
    EntityCallError, EntityId, Error, FjallStore, OrchestrationContext, Runtime, entity,
    orchestrator,
};
use serde::{Deserialize, Serialize};

/// What every account holds before its first operation.
const OPENING_BALANCE: i64 = 100;

/// How long the run waits for all transfers before calling it a failure.
const WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Parser)]
#[command(about = "Transfers between account entities, each under a lock of both accounts")]
struct Args {
    /// Directory of the store; made if absent, resumed if an earlier run left it.
    #[arg(long)]
    store: PathBuf,
    /// How many accounts.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..))]
    accounts: u64,
    /// How many transfers.
    #[arg(long, default_value_t = 1000)]
    transfers: u64,
}

/// An account: an entity whose state is its balance.
#[derive(Debug, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            balance: OPENING_BALANCE,
        }
    }
}

/// Why a withdrawal was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InsufficientFunds {
    balance: i64,
    amount: i64,
}

impl std::fmt::Display for InsufficientFunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "balance {} < {}", self.balance, self.amount)
    }
}

#[entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, InsufficientFunds> {
        if amount > self.balance {
            return Err(InsufficientFunds {
                balance: self.balance,
                amount,
            });
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    pub fn balance(&self) -> i64 {
        self.balance
    }
}

/// One transfer: `amount` from account `from` to account `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum TransferFailed {
    /// The source account could not cover the amount: nothing moved.
    InsufficientFunds(InsufficientFunds),
    /// Another operation changed an account inside the critical section.
    Interleaved(String),
    /// An entity call failed otherwise (a panic, a lock rule).
    Entity(String),
}

impl std::fmt::Display for TransferFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferFailed::InsufficientFunds(e) => write!(f, "insufficient funds: {e}"),
            TransferFailed::Interleaved(e) => write!(f, "interleaved: {e}"),
            TransferFailed::Entity(e) => write!(f, "entity call failed: {e}"),
        }
    }
}

impl std::error::Error for TransferFailed {}

fn failed<Er: std::fmt::Display>(e: EntityCallError<Er>) -> TransferFailed {
    TransferFailed::Entity(e.to_string())
}

#[orchestrator]
async fn transfer(ctx: OrchestrationContext, t: Transfer) -> Result<Transfer, TransferFailed> {
    let section = ctx
        .lock([
            EntityId::of::<Account>(t.from.as_str()),
            EntityId::of::<Account>(t.to.as_str()),
        ])
        .await
        .map_err(|e| TransferFailed::Entity(e.to_string()))?;
    let from_before = ctx
        .call_entity(Account::balance, &t.from, ())
        .await
        .map_err(failed)?;
    let to_before = ctx
        .call_entity(Account::balance, &t.to, ())
        .await
        .map_err(failed)?;
    let from_after = match ctx.call_entity(Account::withdraw, &t.from, t.amount).await {
        Ok(balance) => balance,
        // The section ends as `section` drops: both accounts are unlocked.
        Err(e) => match e.error() {
            Some(refused) => return Err(TransferFailed::InsufficientFunds(refused.clone())),
            None => return Err(failed(e)),
        },
    };
    let to_after = ctx
        .call_entity(Account::deposit, &t.to, t.amount)
        .await
        .map_err(failed)?;
    section.release();
    if from_after != from_before - t.amount || to_after != to_before + t.amount {
        return Err(TransferFailed::Interleaved(format!(
            "{}: {from_before} -> {from_after}, {}: {to_before} -> {to_after}, amount {}",
            t.from, t.to, t.amount
        )));
    }
    Ok(t)
}

/// Transfer `i` of a run over `accounts` accounts: two different accounts and an amount
/// of 1 to 60, drawn from `i` alone, so a resumed run starts the same transfers.
fn nth_transfer(i: u64, accounts: u64) -> Transfer {
    let mix = |x: u64| {
        let x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    let from = mix(i) % accounts;
    let to = (from + 1 + mix(i ^ 0xA5A5) % (accounts - 1)) % accounts;
    Transfer {
        from: account(from),
        to: account(to),
        amount: 1 + (mix(i ^ 0x5A5A) % 60) as i64,
    }
}

fn account(n: u64) -> String {
    format!("acct-{n}")
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(problems) if problems.is_empty() => {
            println!(
                "bank: {} transfers across {} accounts, total balance unchanged",
                args.transfers, args.accounts
            );
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            println!("bank: {} problems", problems.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("bank: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs (or resumes) the transfers and checks the accounts; returns what is wrong.
async fn run(args: &Args) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.store)?;
    check_shape(args)?;
    let store = FjallStore::open(args.store.join("durable"))?;
    let runtime = Runtime::builder(store)
        .orchestrator(transfer)
        .entity::<Account>()
        .start()
        .await?;
    let client = runtime.client();

    // Start every transfer at once (an id an earlier run started is left to go on).
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..args.transfers {
        let client = client.clone();
        let t = nth_transfer(i, args.accounts);
        starts.spawn(async move { client.start(transfer, format!("transfer-{i}"), t).await });
    }
    let mut instances = Vec::new();
    while let Some(started) = starts.join_next().await {
        instances.push(started??);
    }
    let resumed = instances.iter().filter(|i| !i.is_new()).count();
    if resumed > 0 {
        println!("{resumed} transfers were started by an earlier run");
    }

    // Wait for each, keeping what it did.
    let mut completed = Vec::new();
    let mut refused = 0u64;
    let mut problems = Vec::new();
    for instance in &instances {
        match instance.wait(WAIT).await {
            Ok(t) => completed.push(t),
            Err(e @ Error::Failed { .. }) => match e.orchestrator_error::<TransferFailed>() {
                Some(TransferFailed::InsufficientFunds(_)) => refused += 1,
                _ => problems.push(e.to_string()),
            },
            Err(e) => problems.push(format!("{}: {e}", instance.id())),
        }
    }
    println!(
        "{} transfers completed, {refused} refused for insufficient funds",
        completed.len()
    );

    // Every account: its opening balance plus what the completed transfers moved.
    let mut expected = vec![OPENING_BALANCE; args.accounts as usize];
    for t in &completed {
        expected[index(&t.from)] -= t.amount;
        expected[index(&t.to)] += t.amount;
    }
    let mut total = 0;
    for (n, want) in expected.iter().enumerate() {
        let key = account(n as u64);
        let balance = client
            .entity_state::<Account>(key.as_str())
            .await?
            .map_or(OPENING_BALANCE, |a| a.balance);
        total += balance;
        if balance != *want {
            problems.push(format!("{key}: balance {balance}, expected {want}"));
        }
        if balance < 0 {
            problems.push(format!("{key}: negative balance {balance}"));
        }
    }
    let opening = OPENING_BALANCE * args.accounts as i64;
    if total != opening {
        problems.push(format!("total balance {total}, opened with {opening}"));
    }
    runtime.shutdown().await;
    Ok(problems)
}

fn index(key: &str) -> usize {
    key.trim_start_matches("acct-")
        .parse()
        .expect("an account key")
}

/// Refuses a store made by a run with other sizes: its transfers would not match.
fn check_shape(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let shape = format!("accounts={} transfers={}\n", args.accounts, args.transfers);
    let path = args.store.join("bank-shape");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == shape => Ok(()),
        Ok(found) => Err(format!(
            "{} holds a run of {}; run with those sizes or another --store",
            args.store.display(),
            found.trim()
        )
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written beside and renamed, so a kill leaves the whole file or none.
            let staging = path.with_extension("writing");
            std::fs::write(&staging, shape)?;
            std::fs::rename(&staging, &path)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
