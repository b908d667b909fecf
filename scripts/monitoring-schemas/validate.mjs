// Validates Prometheus Operator objects (PodMonitor, ServiceMonitor,
// PrometheusRule) against the schemas of the operator's CRDs, as generated
// by kubernetes-models (pinned in package.json / package-lock.json): types,
// required fields, enums and patterns (the CRDs' schemas, like the API
// server's, do not refuse unknown fields). Reads a JSON array of objects on
// stdin; prints one line per object; exits 1 if any is invalid.
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const kinds = { PodMonitor, ServiceMonitor, PrometheusRule };
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));
let failed = 0;
for (const o of objects) {
  const what = `${o.kind} ${o.metadata?.name}`;
  const Kind = kinds[o.kind];
  if (!Kind || o.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`invalid ${what}: not a monitoring.coreos.com/v1 PodMonitor, ServiceMonitor or PrometheusRule`);
    failed++;
    continue;
  }
  try {
    new Kind(o).validate();
    console.log(`valid ${what}`);
  } catch (e) {
    console.log(`invalid ${what}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
