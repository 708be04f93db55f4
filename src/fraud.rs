//! Fraud detection, as in Flink's walkthrough: a small transaction (under 1.00) followed within
//! a minute by a large one (over 500.00) on the same account raises an alert. Transactions come
//! from a Kafka topic as JSON, alerts go to another.

use brisk::prelude::*;
use brisk_connectors::kafka::{DeliveryGuarantee, KafkaSink, KafkaSource, OffsetsInitializer, formats};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A card transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// The account charged.
    pub account: u64,
    /// The amount, in dollars.
    pub amount: f64,
    /// When it happened, in epoch milliseconds.
    pub timestamp: i64,
}

/// A suspected fraud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The account.
    pub account: u64,
    /// When the large transaction happened.
    pub timestamp: i64,
}

/// Below this a transaction is small.
pub const SMALL_AMOUNT: f64 = 1.00;
/// Above this a transaction is large.
pub const LARGE_AMOUNT: f64 = 500.00;
/// How long after a small transaction a large one is suspicious.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Per account: remembers a small transaction for a minute (a processing-time timer clears
/// it), and raises an alert when a large one follows meanwhile.
#[derive(Clone, Default)]
pub struct FraudDetector {
    flag: Option<ValueState<bool>>,
    timer: Option<ValueState<i64>>,
}

impl RichFunction for FraudDetector {
    fn open(&mut self, ctx: &mut RuntimeContext<'_>) -> Result<(), BoxError> {
        self.flag = Some(ctx.get_state(&ValueStateDescriptor::new("flag"))?);
        self.timer = Some(ctx.get_state(&ValueStateDescriptor::new("timer"))?);
        Ok(())
    }
}

impl KeyedProcessFunction<u64, Transaction, Alert> for FraudDetector {
    fn process_element(
        &mut self,
        transaction: Transaction,
        ctx: &mut KeyedProcessContext<'_, u64, Alert>,
        out: &mut Collector<'_, Alert>,
    ) -> Result<(), BoxError> {
        let (Some(flag), Some(timer)) = (&self.flag, &self.timer) else { return Err("not opened".into()) };
        if flag.value()?.is_some() {
            if transaction.amount > LARGE_AMOUNT {
                out.collect(Alert { account: transaction.account, timestamp: transaction.timestamp });
            }
            if let Some(at) = timer.value()? {
                ctx.timer_service().delete_processing_time_timer(at)?;
            }
            flag.clear()?;
            timer.clear()?;
        }
        if transaction.amount < SMALL_AMOUNT {
            flag.update(true)?;
            let at = ctx.timer_service().current_processing_time() + WINDOW.as_millis() as i64;
            ctx.timer_service().register_processing_time_timer(at)?;
            timer.update(at)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedProcessContext<'_, u64, Alert>,
        _out: &mut Collector<'_, Alert>,
    ) -> Result<(), BoxError> {
        let (Some(flag), Some(timer)) = (&self.flag, &self.timer) else { return Err("not opened".into()) };
        flag.clear()?;
        timer.clear()?;
        Ok(())
    }
}

/// `count` transactions over `accounts` accounts, one a second from `start`; amounts vary
/// pseudo-randomly, and every 97th transaction of an account is a small one followed by a
/// large one, so there are frauds to find.
pub fn generate(count: usize, accounts: u64, start: i64) -> Vec<Transaction> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut transactions = Vec::with_capacity(count);
    let mut i = 0;
    while transactions.len() < count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let account = 1 + state % accounts;
        let timestamp = start + i as i64 * 1000;
        if i % 97 == 3 {
            transactions.push(Transaction { account, amount: 0.5, timestamp });
            transactions.push(Transaction { account, amount: 700.0, timestamp: timestamp + 1 });
        } else {
            transactions.push(Transaction { account, amount: 2.0 + (state % 40_000) as f64 / 100.0, timestamp });
        }
        i += 1;
    }
    transactions.truncate(count);
    transactions
}

/// The alerts the walkthrough's rule raises for `transactions` in this order (the reference a
/// job is checked against; all within the minute, as the generator's pairs are).
pub fn expected_alerts(transactions: &[Transaction]) -> Vec<Alert> {
    let mut flagged = std::collections::HashSet::new();
    let mut alerts = Vec::new();
    for t in transactions {
        if flagged.remove(&t.account) && t.amount > LARGE_AMOUNT {
            alerts.push(Alert { account: t.account, timestamp: t.timestamp });
        }
        if t.amount < SMALL_AMOUNT {
            flagged.insert(t.account);
        }
    }
    alerts
}

/// Declares the job: transactions from `input` at `servers` (to their end when `bounded`),
/// keyed by account, alerts as JSON to `output`, exactly once (a Kafka transaction per
/// checkpoint).
pub fn fraud_detection(
    env: &StreamExecutionEnvironment,
    servers: &str,
    input: &str,
    output: &str,
    bounded: bool,
) -> Result<(), String> {
    let mut source = KafkaSource::builder()
        .bootstrap_servers(servers)
        .topics([input])
        .group_id("fraud-detection")
        .starting_offsets(OffsetsInitializer::committed_offsets(OffsetsInitializer::earliest()))
        .value_deserializer(formats::json::<Transaction>);
    if bounded {
        source = source.bounded(OffsetsInitializer::latest());
    }
    let sink = KafkaSink::builder()
        .bootstrap_servers(servers)
        .topic(output)
        .delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .transactional_id_prefix("fraud-detection-alerts")
        .serializer(|alert: &Alert| {
            (Some(alert.account.to_string().into_bytes()), serde_json::to_vec(alert).unwrap_or_default())
        })
        .build()?;
    env.from_source(source.build()?, WatermarkStrategy::no_watermarks(), "transactions")
        .uid("transactions")
        .key_by(|t: &Transaction| t.account)
        .process(FraudDetector::default())
        .name("fraud-detector")
        .uid("fraud-detector")
        .sink_to(sink)
        .name("alerts")
        .uid("alerts");
    Ok(())
}
