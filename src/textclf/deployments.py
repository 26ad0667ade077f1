"""Names of the `retrain` flow and its deployments: declared once, used by the deployments
(flows/deploy.py), the skip rule (run_key.decide_skip) and the service health check (serve.py)."""

FLOW_NAME = "retrain"
SCHEDULED_DEPLOYMENT = "scheduled"
MANUAL_DEPLOYMENT = "manual"
DEPLOYMENTS = (f"{FLOW_NAME}/{SCHEDULED_DEPLOYMENT}", f"{FLOW_NAME}/{MANUAL_DEPLOYMENT}")
