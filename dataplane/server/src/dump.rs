//! `phlox dump`: every series, profile and stack of a data directory as
//! JSON, read through the metastore index and the block reader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use phlox_block::BlockReader;
use phlox_metastore::MetastoreNode;
use phlox_proto::metastore::v1::QueryBlocksRequest;
use serde_json::json;

use crate::cli::DumpArgs;

#[derive(Default)]
struct SeriesDump {
    labels: BTreeMap<String, String>,
    profiles: Vec<serde_json::Value>,
}

pub(crate) async fn run(dump: &DumpArgs) -> anyhow::Result<()> {
    let config = dump.storage.config()?;
    config.validate()?;
    let store = phlox_storage::build(&config.storage, &config.data_dir)?;
    let node = MetastoreNode::start(crate::app::metastore_config(&config, "127.0.0.1:0".into())?).await?;
    node.wait_for_leader(Duration::from_secs(60)).await?;
    let blocks = node
        .client()
        .query_blocks(QueryBlocksRequest {
            tenants: dump.tenants.clone(),
            start: i64::MIN,
            end: i64::MAX,
            matchers: vec![],
            rollups: false,
        })
        .await?
        .blocks;
    let mut series: BTreeMap<(String, String), SeriesDump> = BTreeMap::new();
    for meta in blocks {
        let reader = BlockReader::from_meta(Arc::clone(&store), meta)?;
        for i in 0..reader.meta().datasets.len() {
            if phlox_block::is_tenant_index(&reader.meta().datasets[i]) {
                continue;
            }
            let ds = reader.dataset(i).await?;
            let symbols = ds.symbols().await?;
            let all: Vec<u32> = (0..ds.series().len() as u32).collect();
            for row in ds.profiles(&all, i64::MIN, i64::MAX).await? {
                let info = &ds.series()[row.series as usize];
                let key = (ds.meta().tenant.clone(), info.labels.to_string());
                let entry = series.entry(key).or_default();
                entry.labels = info.labels.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
                let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
                for (s, v) in row.stack_ids.iter().zip(&row.values) {
                    *stacks.entry(symbols.function_names(*s).join(";")).or_default() += v;
                }
                entry.profiles.push(json!({
                    "id": row.id.to_string(),
                    "time_nanos": row.time_nanos,
                    "total": row.total,
                    "stacks": stacks,
                }));
            }
        }
    }
    node.shutdown().await;
    let out: Vec<_> = series
        .into_iter()
        .map(|((tenant, _), mut s)| {
            s.profiles.sort_by_key(|p| (p["time_nanos"].as_i64(), p["id"].as_str().map(str::to_owned)));
            json!({ "tenant": tenant, "labels": s.labels, "profiles": s.profiles })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&json!({ "series": out }))?);
    Ok(())
}
