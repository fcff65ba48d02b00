# pki: the PKI secrets engine.
# docker-compose.yml runs: bulwark server -config /etc/bulwark/pki.hcl --target=pki

storage "postgresql" {
  # The compose postgres service; the bulwark role and database are made by
  # ../postgres/init.sql. Every process of the cluster shares this database
  # (each service has tables of its own, sealed with its own key).
  connection_url  = "postgres://bulwark:bulwark-password@postgres:5432/bulwark?sslmode=disable"
  max_connections = 5
}

cluster {
  # ca.pem and <service>.pem / <service>-key.pem, from the certs service.
  cert_dir   = "/certs"
  # The gRPC address of every service. A process listens on the address given
  # for each service it runs, and calls the others there.
  seal       = "seal:8301"
  auth       = ["auth-a:8302", "auth-b:8302"]   # replicas: calls go to the first healthy one
  policy     = "policy:8303"
  kv         = "kv:8304"
  dynamic-db = "dynamic-db:8305"
  pki        = "pki:8306"
  audit      = "audit:8307"
  transit    = "transit:8308"
}

log_level  = "info"
log_format = "json"

telemetry {
  # Traces: OTLP/gRPC to the jaeger service (UI on http://localhost:16686).
  otlp_endpoint        = "http://jaeger:4317"
  trace_sampling_ratio = 1.0
  # Plain-HTTP GET /metrics of this process, scraped by prometheus (../prometheus.yml).
  metrics_address      = "0.0.0.0:9102"
}
